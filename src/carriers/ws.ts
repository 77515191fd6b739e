/**
 * WebSocket stream carrier (ws:// and wss://), layered on the TCP and TLS
 * carriers so source binding, happy eyeballs, certificate pinning and
 * errno-preserving dial errors are theirs.
 *
 * The byte stream rides in binary messages. WebSocket has no half-close (a
 * Close frame ends both directions), so `end()` is carried in-band as an
 * empty binary message, and the Close handshake follows once both sides
 * have ended:
 *
 *   ┌──────────────────────────────┐
 *   │ binary message, 1..N bytes   │ stream data; N ≤ maxFrameBytes
 *   ├──────────────────────────────┤
 *   │ binary message, 0 bytes      │ FIN: this side called end()
 *   ├──────────────────────────────┤
 *   │ Close 1000                   │ sent when our FIN is out and theirs is in
 *   └──────────────────────────────┘
 *
 * `destroy()` before both FINs drops the TCP connection (no Close frame), so
 * the peer sees ECONNRESET as it would on TCP. A Close 1000 without a FIN
 * (or with no code, 1005; not something a polytun peer sends) reads as EOF;
 * later writes fail. Any other close mid-stream is a reset.
 *
 * wss: the TLS handshake and pin check complete before the HTTP upgrade is
 * written, so an unverified server never sees the path (the user's route).
 */
import type { IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import type tls from 'node:tls';
import WebSocket from 'ws';
import { ClosedError, ConfigError, PolytunError, ProtocolError, TimeoutError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Decoy } from './decoy.js';
import { guardDial } from './dial.js';
import { ConnectionResetError, DialError, errnoOf } from './errors.js';
import { TcpCarrier, socketConn, type TcpCarrierInit } from './tcp.js';
import { TlsCarrier } from './tls.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from './types.js';
import { WsServer, exactPathRoute } from './ws-server.js';

/** Default bound on a received WebSocket message (our records are ≤ 64 KiB + 18). */
export const DEFAULT_WS_MAX_PAYLOAD = 1024 * 1024;

/** Stream behaviour shared by both ends of a WebSocket connection. */
export interface WsStreamInit {
  /** Largest message we send; must not exceed the peer's maxPayload. @default 262144 */
  maxFrameBytes?: number;
  /** Ping interval; two silent intervals (no pong, no data) kill the connection. 0 disables. @default 30000 */
  keepaliveMs?: number;
  /** Readable and writable high-water mark of the Duplex, bytes. @default 65536 */
  highWaterMark?: number;
}

const SEND = { binary: true } as const;
const EMPTY = Buffer.alloc(0);
/** Chunks smaller than this are merged into one message (a frame header each would cost more). */
const COALESCE_BELOW = 16 * 1024;

/**
 * Splits/merges written chunks into WebSocket message payloads: chunks
 * larger than `max` are sliced (no copy), runs of small chunks are merged,
 * empty chunks dropped (an empty message means FIN).
 */
export function framePieces(chunks: readonly Buffer[], max: number): Buffer[] {
  const out: Buffer[] = [];
  let group: Buffer[] = [];
  let groupBytes = 0;
  const flush = (): void => {
    if (group.length === 1) out.push(group[0] as Buffer);
    else if (group.length > 1) out.push(Buffer.concat(group, groupBytes));
    group = [];
    groupBytes = 0;
  };
  for (const c of chunks) {
    if (c.length === 0) continue;
    if (c.length >= COALESCE_BELOW) {
      flush();
      for (let off = 0; off < c.length; off += max) out.push(c.subarray(off, off + max));
      continue;
    }
    if (groupBytes + c.length > max) flush();
    group.push(c);
    groupBytes += c.length;
  }
  flush();
  return out;
}

/** Maps a `ws` error (bad frame, oversized message…) to a typed error. */
function wsError(err: Error): PolytunError {
  return new ProtocolError(`websocket: ${err.message}`, { cause: err });
}

/** A Node Duplex over one open WebSocket, honouring backpressure both ways. */
export class WsStream extends Duplex {
  private readonly maxFrame: number;
  /** JS-side socket bytes above which a write waits for the socket to flush. */
  private readonly sendBuffer: number;
  private localEnded = false;
  private remoteEnded = false;
  private silentTicks = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ws: WebSocket,
    init: WsStreamInit = {},
  ) {
    const hwm = init.highWaterMark ?? 65_536;
    super({ allowHalfOpen: true, readableHighWaterMark: hwm, writableHighWaterMark: hwm });
    this.maxFrame = init.maxFrameBytes ?? 256 * 1024;
    if (!(this.maxFrame >= 1)) throw new ConfigError('maxFrameBytes', `must be at least 1, got ${this.maxFrame}`);
    this.sendBuffer = hwm;
    ws.on('message', this.onMessage);
    ws.on('close', this.onClose);
    ws.on('error', this.onError);
    ws.on('pong', this.onPong);
    const every = init.keepaliveMs ?? 30_000;
    if (every > 0) {
      this.timer = setInterval(this.tick, every);
      this.timer.unref();
    }
  }

  private readonly onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
    if (this.destroyed) return;
    this.silentTicks = 0;
    if (!isBinary || !Buffer.isBuffer(data)) return void this.destroy(new ProtocolError('websocket: text message on a byte stream'));
    if (this.remoteEnded) return void this.destroy(new ProtocolError('websocket: data after end'));
    if (data.length === 0) {
      this.remoteEnded = true;
      this.push(null);
      this.maybeClose();
      return;
    }
    if (!this.push(data)) this.ws.pause();
  };

  private readonly onClose = (code: number): void => {
    this.stopKeepalive();
    if (this.destroyed || (this.localEnded && this.remoteEnded)) return;
    // 1000/1005: the peer closed on purpose (a non-polytun peer, no FIN): read as EOF.
    if (code === 1000 || code === 1005) {
      if (!this.remoteEnded) {
        this.remoteEnded = true;
        this.push(null);
      }
      return;
    }
    this.destroy(new ConnectionResetError('websocket'));
  };

  private readonly onError = (err: Error): void => {
    if (!this.destroyed) this.destroy(wsError(err));
  };

  private readonly onPong = (): void => {
    this.silentTicks = 0;
  };

  private readonly tick = (): void => {
    // While we are paused (our reader is slow) the peer's pongs sit unread
    // in the socket: that says nothing about the peer, so it does not count.
    if (this.ws.isPaused) return;
    if (++this.silentTicks > 2) return void this.destroy(new TimeoutError('websocket keepalive'));
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  };

  private stopKeepalive(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private maybeClose(): void {
    if (this.localEnded && this.remoteEnded && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.send([chunk], cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.send(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  /**
   * Sends the pieces in order. Each write completes at once while the
   * socket's JS-side buffer is under `sendBuffer`; past it, we wait for a
   * piece to reach the kernel, so memory stays bounded for a slow peer.
   */
  private send(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    const pieces = framePieces(chunks, this.maxFrame);
    let i = 0;
    const pump = (err?: Error): void => {
      if (err) return cb(err);
      while (i < pieces.length) {
        if (this.ws.readyState !== WebSocket.OPEN) return cb(new ClosedError('websocket'));
        const piece = pieces[i++] as Buffer;
        if (this.ws.bufferedAmount >= this.sendBuffer) return this.ws.send(piece, SEND, pump);
        this.ws.send(piece, SEND);
      }
      cb();
    };
    pump();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      // The peer closed cleanly first (Close 1000 read as EOF): nothing to flush.
      return cb(this.remoteEnded ? null : new ClosedError('websocket'));
    }
    this.localEnded = true;
    this.ws.send(EMPTY, SEND, (err) => {
      if (err) return cb(err);
      this.maybeClose();
      cb();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stopKeepalive();
    if (!err && this.localEnded && this.remoteEnded) this.maybeClose();
    else this.ws.terminate();
    cb(err);
  }
}

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

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
  /** Largest message accepted from the peer. @default 1 MiB */
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

  private upgrade(to: Endpoint, base: StreamConn, signal: AbortSignal): Promise<StreamConn> {
    const target = formatEndpoint(to);
    const socket = base.stream;
    const headers: Record<string, string> = { ...this.init.headers };
    const host = this.init.hostHeader ?? this.init.servername;
    if (host !== undefined) headers.Host = host;
    const ws = new WebSocket(`${this.scheme}://${target}${this.init.path}`, {
      // The connection is already made (and verified): hand it to the HTTP client.
      createConnection: () => socket as ReturnType<NonNullable<WebSocket.ClientOptions['createConnection']>>,
      perMessageDeflate: false,
      maxPayload: this.init.maxPayloadBytes ?? DEFAULT_WS_MAX_PAYLOAD,
      skipUTF8Validation: true,
      followRedirects: false,
      headers,
      // Masking (RFC 6455 §5.3) keeps attacker-chosen browser bytes from
      // poisoning caches on the path. Our payload is ciphertext nobody can
      // choose, and over wss with a pinned certificate no one but our server
      // sees the frames at all, so we send a zero mask, which ws skips: no
      // copy and XOR of every byte. Without a pin (a TLS front or CDN that
      // reads the frames, or plain ws) masks stay random: an all-zero mask
      // would be a fingerprint there.
      ...(this.init.tls && this.init.pinSha256 !== undefined && { generateMask: zeroMask }),
    });
    return new Promise((resolve, reject) => {
      let refused: WsUpgradeError | undefined;
      const cleanup = (): void => {
        ws.off('open', onOpen);
        ws.off('error', onError);
        ws.off('unexpected-response', onResponse);
        signal.removeEventListener('abort', onAbort);
      };
      const fail = (err: unknown): void => {
        cleanup();
        ws.on('error', () => undefined); // terminate() below may still report; we already have the reason
        ws.terminate();
        socket.destroy();
        reject(err);
      };
      const onOpen = (): void => {
        cleanup();
        const stream = new WsStream(ws, this.init.stream);
        resolve({ stream, remote: base.remote, local: base.local, meta: { ...base.meta, path: this.init.path } });
      };
      const onResponse = (_req: unknown, res: IncomingMessage): void => {
        refused = new WsUpgradeError(target, res.statusCode ?? 0);
        res.resume();
        fail(refused);
      };
      const onError = (err: Error): void => {
        const code = errnoOf(err);
        fail(refused ?? (/^E[A-Z]+$/.test(code) ? new DialError(target, code, { cause: err }) : wsError(err)));
      };
      const onAbort = (): void => fail(signal.reason);
      ws.once('open', onOpen);
      ws.once('error', onError);
      ws.once('unexpected-response', onResponse);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
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
