/**
 * WebSocket stream carrier (ws:// and wss://), layered on the TCP and TLS
 * carriers so source binding, happy eyeballs, certificate pinning and
 * errno-preserving dial errors are theirs. The stream it yields (and how it
 * carries end() and close) is ws-stream.ts.
 *
 * wss: the TLS handshake and pin check complete before the HTTP upgrade is
 * written, so an unverified server never sees the path (the user's route).
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { formatHost } from '../core/address.js';
import { ConfigError, PolytunError, ProtocolError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Decoy } from './decoy.js';
import { guardDial } from './dial.js';
import { DialError, errnoOf } from './errors.js';
import { TcpCarrier, socketConn, type TcpCarrierInit } from './tcp.js';
import { TlsCarrier } from './tls.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from './types.js';
import { acceptKey } from './ws-frames.js';
import { WsServer, exactPathRoute } from './ws-server.js';
import { DEFAULT_WS_MAX_PAYLOAD, WsStream, type WsStreamInit } from './ws-stream.js';

/** The server answered the upgrade with something other than 101 (e.g. the decoy's 404). */
export class WsUpgradeError extends PolytunError {
  /** The HTTP status the server sent. */
  readonly status: number;
  constructor(target: string, status: number) {
    super('ERR_WS_UPGRADE', `${target} refused the WebSocket upgrade (HTTP ${status})`);
    this.status = status;
  }
}

/** Options of {@link WsCarrier}. Listen-side fields are needed only to listen. */
export interface WsCarrierInit {
  /** wss:// (TLS) or ws://. */
  tls: boolean;
  /** Request path, with optional query, e.g. `/u/3f9c…`. It selects the user on a multi-user server. */
  path: string;
  /** Client: SNI name. @default the dialled host unless it is an IP */
  servername?: string;
  /** Client: base64url SHA-256 of the server's leaf certificate (see TlsCarrier). */
  pinSha256?: string | readonly string[];
  /** Client, CA mode: trusted roots. @default Node's bundled roots */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Lowest TLS version. @default 'TLSv1.3' for the client, 'TLSv1.2' for a listener */
  minVersion?: tls.SecureVersion;
  /** Extra upgrade request headers (User-Agent, Origin, a token…). */
  headers?: Readonly<Record<string, string>>;
  /** Host header. @default servername, else host:port dialled */
  hostHeader?: string;
  /** Options of the TCP carrier underneath. */
  tcp?: TcpCarrierInit;
  /** Largest data frame accepted from the peer (payload is streamed, never gathered). @default 1 MiB */
  maxPayloadBytes?: number;
  /** Stream behaviour (frame size, keepalive, buffers). */
  stream?: WsStreamInit;
  /** Listen: certificate chain and key, PEM (wss only). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Listen: what every non-matching request gets. @default nginx-style 404 */
  decoy?: Decoy;
  /** Listen: where listener errors go. */
  logger?: Logger;
}

/**
 * WebSocket carrier. `dial` opens ws(s)://host:port/path; `listen` serves
 * one path (anything else gets the decoy) — a multi-user server uses
 * WsServer with its own route. `meta.path` on both sides; client side also
 * carries the TLS carrier's meta (`fingerprint`, `tlsVersion`).
 */
export class WsCarrier implements StreamCarrier {
  readonly kind = 'stream';
  readonly scheme: 'ws' | 'wss';
  private readonly init: WsCarrierInit;
  private readonly tcp: TcpCarrier;
  private readonly tlsCarrier: TlsCarrier | undefined;

  constructor(init: WsCarrierInit) {
    if (!init.path.startsWith('/')) throw new ConfigError('path', `a WebSocket path must start with "/", got "${init.path}"`);
    this.init = init;
    this.scheme = init.tls ? 'wss' : 'ws';
    this.tcp = new TcpCarrier(init.tcp);
    if (init.tls) {
      this.tlsCarrier = new TlsCarrier({
        ...(init.tcp && { tcp: init.tcp }),
        ...(init.servername !== undefined && { servername: init.servername }),
        ...(init.pinSha256 !== undefined && { pinSha256: init.pinSha256 }),
        ...(init.ca !== undefined && { ca: init.ca }),
        ...(init.minVersion !== undefined && { minVersion: init.minVersion }),
        // Only HTTP/1.1 carries a classic WebSocket upgrade; offering h2
        // would let a front pick it and then refuse the upgrade.
        alpn: ['http/1.1'],
      });
    }
  }

  /** Connects (TCP, TLS + pin check for wss), then upgrades; one deadline for all. */
  async dial(to: Endpoint, opts?: DialOptions): Promise<StreamConn> {
    return guardDial(
      `${this.scheme} dial ${formatEndpoint(to)}`,
      opts,
      async (signal) => {
        const base = this.tlsCarrier
          ? await this.tlsCarrier.dial(to, { signal, ...(opts?.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }) })
          : socketConn(await this.tcp.connectSocket(to, signal));
        return this.upgrade(to, base, signal);
      },
      (late) => late.stream.destroy(),
    );
  }

  /**
   * Sends the upgrade request on a connected (and, for wss, verified) socket
   * and checks the answer (RFC 6455 §4.1): 101, `Upgrade: websocket`, the
   * right Sec-WebSocket-Accept, and no extension or subprotocol we did not
   * ask for. Anything but a 101 is a WsUpgradeError carrying its status.
   */
  private upgrade(to: Endpoint, base: StreamConn, signal: AbortSignal): Promise<StreamConn> {
    const target = formatEndpoint(to);
    const socket = base.stream as Socket;
    const key = randomBytes(16).toString('base64');
    const defaultPort = this.init.tls ? 443 : 80;
    const host = this.init.hostHeader ?? this.init.servername ?? (to.port === defaultPort ? formatHost(to.host) : formatEndpoint(to));
    const req = http.request({
      // The connection is already made (and verified): the request rides on it.
      createConnection: () => socket,
      method: 'GET',
      path: this.init.path,
      setHost: false,
      headers: {
        Host: host,
        ...this.init.headers,
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': key,
      },
    });
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        req.off('upgrade', onUpgrade);
        req.off('response', onResponse);
        req.off('error', onError);
        signal.removeEventListener('abort', onAbort);
      };
      const fail = (err: unknown): void => {
        cleanup();
        req.on('error', () => undefined); // destroying may still report; we already have the reason
        req.destroy();
        socket.destroy();
        reject(err);
      };
      const onUpgrade = (res: IncomingMessage, upgraded: Duplex, head: Buffer): void => {
        const h = res.headers;
        const why =
          h.upgrade?.toLowerCase() !== 'websocket'
            ? 'no "Upgrade: websocket" in the 101'
            : h['sec-websocket-accept'] !== acceptKey(key)
              ? 'wrong Sec-WebSocket-Accept'
              : h['sec-websocket-extensions'] !== undefined || h['sec-websocket-protocol'] !== undefined
                ? 'an extension or subprotocol we did not offer'
                : undefined;
        if (why !== undefined) return fail(new ProtocolError(`websocket upgrade to ${target}: ${why}`));
        cleanup();
        const stream = new WsStream(
          upgraded as Socket,
          {
            role: 'client',
            // Masking (RFC 6455 §5.3) keeps attacker-chosen browser bytes from
            // poisoning caches on the path. Our payload is ciphertext nobody can
            // choose, and over wss with a pinned certificate no one but our server
            // sees the frames at all, so we send a zero mask: no copy and XOR of
            // every byte on either side. Without a pin (a TLS front or CDN that
            // reads the frames, or plain ws) masks stay random: an all-zero mask
            // would be a fingerprint there.
            mask: this.init.tls && this.init.pinSha256 !== undefined ? 'zero' : 'random',
            head,
            maxPayloadBytes: this.init.maxPayloadBytes ?? DEFAULT_WS_MAX_PAYLOAD,
          },
          this.init.stream,
        );
        resolve({ stream, remote: base.remote, local: base.local, meta: { ...base.meta, path: this.init.path } });
      };
      const onResponse = (res: IncomingMessage): void => {
        res.resume();
        fail(new WsUpgradeError(target, res.statusCode ?? 0));
      };
      const onError = (err: Error): void => {
        const code = errnoOf(err);
        fail(/^E[A-Z]+$/.test(code) ? new DialError(target, code, { cause: err }) : new ProtocolError(`websocket upgrade to ${target}: ${err.message}`, { cause: err }));
      };
      const onAbort = (): void => fail(signal.reason);
      req.once('upgrade', onUpgrade);
      req.once('response', onResponse);
      req.once('error', onError);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        req.end();
      }
    });
  }

  /** Serves `path` on at (wss needs cert and key); everything else gets the decoy. */
  async listen(at: Endpoint, onConn: (conn: StreamConn) => void): Promise<Listener> {
    const { cert, key } = this.init;
    if (this.init.tls && (cert === undefined || key === undefined)) throw new ConfigError('wss', 'a wss listener needs cert and key');
    const server = new WsServer({
      route: exactPathRoute(this.init.path),
      ...(this.init.tls && cert !== undefined && key !== undefined && { tls: { cert, key, ...(this.init.minVersion && { minVersion: this.init.minVersion }) } }),
      ...(this.init.decoy && { decoy: this.init.decoy }),
      ...(this.init.maxPayloadBytes !== undefined && { maxPayloadBytes: this.init.maxPayloadBytes }),
      ...(this.init.stream && { stream: this.init.stream }),
      ...(this.init.tcp && { tcp: this.init.tcp }),
      ...(this.init.logger && { logger: this.init.logger }),
    });
    return server.listen(at, onConn);
  }
}
