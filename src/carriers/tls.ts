/**
 * TLS stream carrier (node:tls) layered on the TCP carrier, so source
 * binding, happy eyeballs, keepalive and errno-preserving dial errors are the
 * same. TLS 1.3 is the minimum unless configured otherwise.
 *
 * The client verifies the server in one of two ways:
 * - **pinning** (`pinSha256`): the leaf certificate's SHA-256 must equal a
 *   configured pin; no CA, hostname or expiry check — the pin is the trust;
 * - **CA verification** (no pin): the usual chain + hostname check, against
 *   `ca` or Node's bundled roots.
 * Either way the check runs before the connection is handed to the caller,
 * so not one application byte is sent to an unverified server.
 */
import tls from 'node:tls';
import { timingSafeEqual } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import { ConfigError } from '../core/errors.js';
import type { StreamCapabilities } from '../core/stream-caps.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { fingerprintOfDer, spkiFingerprintOfDer } from './cert.js';
import { guardDial } from './dial.js';
import { CertificateError, DialError, errnoOf } from './errors.js';
import { TLS_HANDSHAKE_TIMEOUT_MS, dropTlsClient } from './preauth.js';
import { ServerListener, TcpCarrier, gateFor, listenServer, socketCapabilities, socketConn, type TcpCarrierInit } from './tcp.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from './types.js';

/**
 * TLS 1.3 suites in the order browsers offer them (Chrome, Firefox):
 * AES-128-GCM first. Our listeners use the same order, and OpenSSL 3 picks
 * by the server's order: so both ends of a polytun connection agree on
 * AES-128-GCM, the fastest here (4.1 GB/s against 3.2 for AES-256-GCM,
 * `openssl speed` with AES-NI), as large sites answer browsers. Node's
 * other defaults (the TLS 1.2 suites) follow unchanged.
 */
const TLS13_ORDER = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
export const TLS_CIPHERS = [...TLS13_ORDER, ...tls.DEFAULT_CIPHERS.split(':').filter((c) => !TLS13_ORDER.includes(c))].join(':');

type Pem = string | Buffer;

/** Options of {@link TlsCarrier}; server fields are needed only to listen. */
export interface TlsCarrierInit {
  /** Options of the TCP carrier underneath. */
  tcp?: TcpCarrierInit;
  /** Server: certificate chain, PEM. */
  cert?: Pem;
  /** Server: private key, PEM. */
  key?: Pem;
  /** ALPN: the protocols a client offers / a server accepts, in preference order. */
  alpn?: readonly string[];
  /** Client: SNI name (and the name checked in CA mode). @default the dialled host unless it is an IP */
  servername?: string;
  /** Client, CA mode: trusted roots, PEM. @default Node's bundled roots */
  ca?: Pem | readonly Pem[];
  /**
   * Client: base64url SHA-256 of the server's leaf certificate DER, or of its
   * public key (SPKI DER, which survives a renewal with the same key). When
   * set, CA verification is replaced by this exact match. Several pins allow
   * a certificate rotation.
   */
  pinSha256?: string | readonly string[];
  /** Lowest TLS version accepted. @default 'TLSv1.3' */
  minVersion?: tls.SecureVersion;
  /** Server: drop a client whose handshake takes longer than this, ms. @default TLS_HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** Where failed inbound handshakes are logged (debug). @default nullLogger */
  logger?: Logger;
}

/** TLS carrier. `meta`: `alpn`, `tlsVersion`; client side `fingerprint`; server side `sni`. */
export class TlsCarrier implements StreamCarrier {
  readonly kind = 'stream';
  readonly scheme = 'tls';
  private readonly init: TlsCarrierInit;
  private readonly tcp: TcpCarrier;
  private readonly pins: Buffer[];
  private readonly logger: Logger;

  constructor(init: TlsCarrierInit = {}) {
    this.init = init;
    this.tcp = new TcpCarrier(init.tcp);
    this.logger = init.logger ?? nullLogger;
    const pins = init.pinSha256 === undefined ? [] : typeof init.pinSha256 === 'string' ? [init.pinSha256] : init.pinSha256;
    this.pins = pins.map((p) => {
      const b = Buffer.from(p, 'base64url');
      if (b.length !== 32) throw new ConfigError('pinSha256', `expected a base64url SHA-256 (32 bytes), got ${b.length} bytes`);
      return b;
    });
  }

  /** TCP connect + TLS handshake + server verification, under one deadline. */
  async dial(to: Endpoint, opts?: DialOptions): Promise<StreamConn> {
    const target = formatEndpoint(to);
    const { socket, fingerprint } = await guardDial(
      `tls dial ${target}`,
      opts,
      async (signal) => this.handshake(to, await this.tcp.connectSocket(to, signal), signal),
      (late) => late.socket.destroy(),
    );
    const meta: Record<string, string> = { tlsVersion: socket.getProtocol() ?? '', fingerprint };
    if (socket.alpnProtocol) meta.alpn = socket.alpnProtocol;
    return socketConn(socket, meta, tlsCapabilities(socket));
  }

  private handshake(to: Endpoint, tcp: Socket, signal: AbortSignal): Promise<{ socket: tls.TLSSocket; fingerprint: string }> {
    const target = formatEndpoint(to);
    // Never an IP literal in SNI (RFC 6066 §3; Node warns): a link to an IP
    // address carries that address as its host, and no site sends it.
    const name = this.init.servername ?? to.host;
    const servername = isIP(name) ? undefined : name;
    const opts: tls.ConnectionOptions = {
      socket: tcp,
      host: to.host, // checked against the certificate in CA mode when no servername
      minVersion: this.init.minVersion ?? 'TLSv1.3',
      // We verify ourselves after the handshake (below), before releasing the
      // socket, so pin mode and CA mode share one code path and one error type.
      rejectUnauthorized: false,
      ciphers: TLS_CIPHERS,
    };
    if (servername !== undefined) opts.servername = servername;
    if (this.init.alpn) opts.ALPNProtocols = [...this.init.alpn];
    if (this.init.ca !== undefined) opts.ca = typeof this.init.ca === 'string' || Buffer.isBuffer(this.init.ca) ? this.init.ca : [...this.init.ca];
    return new Promise((resolve, reject) => {
      const socket = tls.connect(opts);
      const cleanup = (): void => {
        socket.off('secureConnect', onSecure);
        socket.off('error', onError);
        signal.removeEventListener('abort', onAbort);
      };
      const fail = (err: unknown): void => {
        cleanup();
        socket.destroy();
        reject(err);
      };
      const onSecure = (): void => {
        // Read the peer certificate once, here: Node 20 may not hand it out
        // again later (getPeerX509Certificate returned undefined on a second call).
        const raw = socket.getPeerX509Certificate()?.raw;
        const fingerprint = raw ? fingerprintOfDer(raw) : '';
        const spki = raw && this.pins.length > 0 ? spkiFingerprintOfDer(raw) : '';
        const err = this.verify(socket, target, fingerprint, spki);
        if (err) return fail(err);
        cleanup();
        resolve({ socket, fingerprint });
      };
      const onError = (err: Error): void => fail(new DialError(target, errnoOf(err), { cause: err }));
      const onAbort = (): void => fail(signal.reason);
      socket.once('secureConnect', onSecure);
      socket.once('error', onError);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Returns the reason to refuse this server, or undefined to accept it. */
  private verify(socket: tls.TLSSocket, target: string, fingerprint: string, spki: string): CertificateError | undefined {
    if (this.pins.length === 0) {
      if (socket.authorized) return undefined;
      const why = String(socket.authorizationError ?? 'unknown');
      return new CertificateError(why, `certificate verification failed for ${target}: ${why}`);
    }
    for (const value of [fingerprint, spki]) {
      const got = Buffer.from(value, 'base64url');
      if (got.length === 32 && this.pins.some((pin) => timingSafeEqual(pin, got))) return undefined;
    }
    return new CertificateError('pin-mismatch', `certificate fingerprint mismatch for ${target}`);
  }

  /** Accepts TLS connections; onConn runs after a completed handshake. */
  async listen(at: Endpoint, onConn: (conn: StreamConn) => void): Promise<Listener> {
    const { cert, key } = this.init;
    if (cert === undefined || key === undefined) throw new ConfigError('tls', 'a TLS listener needs cert and key');
    const keepAliveMs = this.init.tcp?.keepAliveInitialDelayMs ?? 30_000;
    const opts: tls.TlsOptions = {
      cert,
      key,
      minVersion: this.init.minVersion ?? 'TLSv1.3',
      ciphers: TLS_CIPHERS,
      handshakeTimeout: this.init.handshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: keepAliveMs,
    };
    if (this.init.alpn) opts.ALPNProtocols = [...this.init.alpn];
    const server = tls.createServer(opts);
    const gate = gateFor('tls', at, this.init.tcp, this.logger);
    server.on('connection', (raw: Socket) => void gate.admit(raw));
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      const meta: Record<string, string> = { tlsVersion: socket.getProtocol() ?? '' };
      if (socket.alpnProtocol) meta.alpn = socket.alpnProtocol;
      const sni = (socket as tls.TLSSocket & { servername?: string | false }).servername;
      if (sni) meta.sni = sni;
      onConn({ ...socketConn(socket, meta, tlsCapabilities(socket)), authenticated: () => gate.release(socket) });
    });
    server.on('tlsClientError', (err, socket) => dropTlsClient(this.logger, err, socket));
    await listenServer(server, at, this.init.tcp?.backlog);
    server.on('error', (err) => gate.listenerError(err));
    return new ServerListener(server, gate);
  }
}

/**
 * What a TLS socket can do: what any socket can (its write callbacks run once
 * OpenSSL has encrypted the bytes), plus the TLS binding and single writes.
 */
export function tlsCapabilities(socket: tls.TLSSocket): StreamCapabilities {
  return { ...socketCapabilities(socket), tlsBinding: () => tlsBindingOf(socket), singleWrites: () => singleWrites(socket) };
}

/**
 * Makes a TLS socket take queued writes one at a time. A net.Socket hands
 * several queued buffers to its handle in one writev; Node's TLS handle then
 * copies them into one fresh allocation before encrypting (external memory
 * the GC must chase, at bulk rates a full mark-compact every ~150 ms).
 * One buffer per write is encrypted in place. Writable treats `_writev` as
 * optional; without it, queued chunks go through `_write` in order.
 */
export function singleWrites(socket: tls.TLSSocket): void {
  (socket as unknown as { _writev: unknown })._writev = null;
}

/** Label of polytun's TLS exporter (RFC 5705; RFC 8446 §7.5). */
const BINDING_LABEL = 'EXPORTER-polytun-tls-binding';

/**
 * The TLS exporter value of a TLS socket's connection (16 bytes), declared
 * as the `tlsBinding` capability of the streams over it (TLS, wss). Both
 * ends of one TLS session get the same value; two sessions joined by a
 * TLS-terminating front get different ones. Undefined when `sock` is no
 * TLS 1.3 socket (or it is closed): a TLS 1.2 exporter
 * is only as unique as the session's master secret, which without the
 * extended master secret two sessions can share (the triple handshake).
 */
export function tlsBindingOf(sock: unknown): Buffer | undefined {
  if (!(sock instanceof tls.TLSSocket) || sock.destroyed || sock.getProtocol() !== 'TLSv1.3') return undefined;
  try {
    return sock.exportKeyingMaterial(16, BINDING_LABEL, Buffer.alloc(0));
  } catch {
    return undefined; // handshake not complete, or no exporter: no binding
  }
}
