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
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { TLSSocket } from 'node:tls';
import { formatHost } from '../core/address.js';
import { Fifo } from '../core/fifo.js';
import { enableSlabReads, type SlabReadOptions, type SlabReader } from '../core/slab-reads.js';
import { declareCapabilities } from '../core/stream-caps.js';
import { ClosedError, ConfigError, PolytunError, ProtocolError, TimeoutError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Decoy } from './decoy.js';
import { guardDial } from './dial.js';
import { ConnectionResetError, DialError, errnoOf } from './errors.js';
import { TcpCarrier, socketConn, type TcpCarrierInit } from './tcp.js';
import { hasHeadroom } from '../core/headroom.js';
import { TlsCarrier, singleWrites, tlsBindingOf } from './tls.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from './types.js';
import { FrameReader, MAX_HEADER, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, acceptKey, frameHeader, headerLength, maskedCopy, writeHeader } from './ws-frames.js';
import { WsServer, exactPathRoute } from './ws-server.js';

/** Default bound on a received WebSocket message (our records are ≤ 64 KiB + 18). */
export const DEFAULT_WS_MAX_PAYLOAD = 1024 * 1024;

/** Stream behaviour shared by both ends of a WebSocket connection. */
export interface WsStreamInit {
  /** Largest frame we send; must not exceed the peer's maxPayloadBytes. @default 262144 */
  maxFrameBytes?: number;
  /** Ping interval; two silent intervals (no pong, no data) kill the connection. 0 disables. @default 30000 */
  keepaliveMs?: number;
  /** Readable and writable high-water mark of the Duplex, bytes. @default 65536 */
  highWaterMark?: number;
}

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

/** Options of one {@link WsStream}: which end it is, and how client frames are masked. */
export interface WsStreamRole {
  /** 'client' masks what it sends and expects unmasked frames; 'server' the reverse. */
  role: 'client' | 'server';
  /**
   * Client: 'zero' sends an all-zero masking key, which changes no byte; the
   * reader skips the XOR. Only where no one but our server reads the frames
   * (wss with a pinned certificate). @default 'random'
   */
  mask?: 'zero' | 'random';
  /** Bytes read past the upgrade's header block: the first frames. */
  head?: Buffer;
  /** Largest data frame accepted from the peer. @default 1 MiB */
  maxPayloadBytes?: number;
}

const ZERO_MASK = Buffer.alloc(4);
/** How long a sent Close may wait for the peer's before the socket is dropped. */
const CLOSE_WAIT_MS = 5000;

/**
 * A Node Duplex over an upgraded socket (TCP or TLS), speaking RFC 6455
 * frames itself (see ws-frames.ts): received payload is pushed as views of
 * the socket's reads, and each written chunk goes out behind its own header,
 * with backpressure both ways.
 *
 * A write's callback runs once the socket has taken the bytes (in the kernel,
 * or encrypted by TLS), as on a net.Socket: the stream declares
 * `buffersFreeOnWriteCallback` (core/stream-caps.ts), so a writer may reuse a
 * buffer from then on; also slab reads of its socket and, over TLS, the TLS
 * binding. A chunk written with headroom (core/headroom.ts) goes out with
 * its header in place: one buffer per frame.
 */
export class WsStream extends Duplex {
  /** The TLS socket underneath (wss terminated here, or dialled), for the TLS binding; undefined over plain ws. */
  get tlsSocket(): TLSSocket | undefined {
    return this.socket instanceof TLSSocket ? this.socket : undefined;
  }
  private readonly maxFrame: number;
  private readonly client: boolean;
  private readonly randomMask: boolean;
  private readonly reader: FrameReader;
  private localEnded = false;
  private remoteEnded = false;
  private closeSent = false;
  private closeReceived = false;
  /** We paused the socket because our reader is behind. */
  private held = false;
  private silentTicks = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Slab reads of the socket underneath, once a reader asked (see enableSlabReads). */
  private slabs: SlabReader | null = null;
  /** Per socket read since then, oldest first: payload slices pushed and released, and whether it was a slab read. */
  private readonly reads = new Fifo<{ slices: number; released: number; slab: boolean; done: boolean }>();
  /** A socket read is being parsed (slices may still come from it). */
  private parsing = false;

  constructor(
    private readonly socket: Socket,
    opts: WsStreamRole,
    init: WsStreamInit = {},
  ) {
    const hwm = init.highWaterMark ?? 65_536;
    super({ allowHalfOpen: true, readableHighWaterMark: hwm, writableHighWaterMark: hwm });
    this.maxFrame = init.maxFrameBytes ?? 256 * 1024;
    if (!(this.maxFrame >= 1)) throw new ConfigError('maxFrameBytes', `must be at least 1, got ${this.maxFrame}`);
    this.client = opts.role === 'client';
    this.randomMask = this.client && opts.mask !== 'zero';
    this.reader = new FrameReader(!this.client, { data: this.onPayload, messageEnd: this.onMessageEnd, control: this.onControl }, opts.maxPayloadBytes ?? DEFAULT_WS_MAX_PAYLOAD);
    socket.setTimeout(0);
    socket.setNoDelay(true);
    if (socket instanceof TLSSocket) singleWrites(socket);
    declareCapabilities(this, {
      buffersFreeOnWriteCallback: true,
      slabReads: (o) => this.enableSlabReads(o),
      ...(socket instanceof TLSSocket && { tlsBinding: () => tlsBindingOf(socket) }),
    });
    socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketGone);
    socket.on('close', this.onSocketGone);
    socket.on('error', this.onSocketError);
    if (opts.head && opts.head.length > 0) this.onSocketData(opts.head);
    const every = init.keepaliveMs ?? 30_000;
    if (every > 0) {
      this.timer = setInterval(this.tick, every);
      this.timer.unref();
    }
  }

  private readonly onSocketData = (chunk: Buffer): void => {
    if (this.destroyed) return;
    this.silentTicks = 0;
    if (this.slabs) this.reads.push({ slices: 0, released: 0, slab: true, done: false });
    this.parsing = true;
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
    }
    this.parsing = false;
    if (this.slabs) {
      (this.reads.last() as { done: boolean }).done = true;
      this.retireReads();
    }
  };

  private readonly onPayload = (slice: Buffer): void => {
    if (this.destroyed) return;
    if (this.remoteEnded) throw new ProtocolError('websocket: data after end');
    if (this.slabs) (this.reads.last() as { slices: number }).slices++;
    if (!this.push(slice) && !this.held) {
      this.held = true;
      this.socket.pause();
    }
  };

  private readonly onMessageEnd = (bytes: number): void => {
    if (bytes !== 0 || this.destroyed) return;
    // An empty binary message: the peer called end().
    if (this.remoteEnded) throw new ProtocolError('websocket: second end');
    this.remoteEnded = true;
    this.push(null);
    this.maybeClose();
  };

  private readonly onControl = (op: number, payload: Buffer): void => {
    if (op === OP_PING) {
      if (!this.closeSent) this.sendFrame(OP_PONG, payload);
      return;
    }
    if (op !== OP_CLOSE) return; // pong: its arrival already counted as life
    this.closeReceived = true;
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    if (!this.closeSent) {
      this.closeSent = true;
      this.sendFrame(OP_CLOSE, payload.subarray(0, 2));
    }
    this.socket.end();
    this.stopKeepalive();
    if (this.destroyed || (this.localEnded && this.remoteEnded)) return;
    // 1000/1005 without our in-band FIN (a non-polytun peer): read as EOF; later writes fail.
    if (code === 1000 || code === 1005) {
      if (!this.remoteEnded) {
        this.remoteEnded = true;
        this.push(null);
      }
      return;
    }
    this.destroy(new ConnectionResetError('websocket'));
  };

  private readonly onSocketGone = (): void => {
    this.stopKeepalive();
    if (this.destroyed || (this.localEnded && this.remoteEnded)) return;
    if (this.closeReceived) return;
    this.destroy(new ConnectionResetError('websocket'));
  };

  private readonly onSocketError = (err: NodeJS.ErrnoException): void => {
    if (this.destroyed) return;
    const reset = new ConnectionResetError('websocket');
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') (reset as { cause?: unknown }).cause = err;
    this.destroy(reset);
  };

  /**
   * Switches the socket underneath to slab reads with recycling (see
   * core/slab-reads.ts). The payload slices this stream emits as 'data' from
   * then on are views of the slabs; the caller releases each, in order, as
   * it is done with it, and a socket read goes back to its slab once every
   * slice cut from it is released. Slices emitted before the call (and the
   * rest of the read being parsed now) are not the caller's to release.
   */
  enableSlabReads(opts: Omit<SlabReadOptions, 'recycle'>): SlabReader | null {
    if (this.slabs || this.destroyed) return null;
    const inner = enableSlabReads(this.socket, { ...opts, recycle: true });
    if (!inner) return null;
    this.slabs = inner;
    // The read being parsed now (if any) is not a slab read; its later slices still count.
    if (this.parsing) this.reads.push({ slices: 0, released: 0, slab: false, done: false });
    return {
      release: () => {
        const r = this.reads.peek();
        if (r === undefined) return;
        r.released++;
        this.retireReads();
      },
      heldBytes: () => inner.heldBytes(),
    };
  }

  /** Gives the slab reader back every parsed read whose slices are all released. */
  private retireReads(): void {
    const inner = this.slabs as SlabReader;
    for (;;) {
      const r = this.reads.peek();
      if (r === undefined || !r.done || r.released < r.slices) break;
      this.reads.shift();
      if (r.slab) inner.release();
    }
  }

  private readonly tick = (): void => {
    // While we hold the socket (our reader is slow) the peer's pongs sit
    // unread in it: that says nothing about the peer, so it does not count.
    if (this.held) return;
    if (++this.silentTicks > 2) return void this.destroy(new TimeoutError('websocket keepalive'));
    if (!this.closeSent && this.socket.writable) this.sendFrame(OP_PING, EMPTY);
  };

  private stopKeepalive(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private mask(): Buffer | null {
    return this.client ? (this.randomMask ? randomBytes(4) : ZERO_MASK) : null;
  }

  /** One small frame of its own (control frames, and the empty message that ends our side). */
  private sendFrame(op: number, payload: Buffer, cb?: (err?: Error | null) => void): void {
    const mask = this.mask();
    const body = this.randomMask && payload.length > 0 ? maskedCopy(payload, mask as Buffer) : payload;
    if (body.length === 0) this.socket.write(frameHeader(op, true, 0, mask), cb);
    else {
      this.socket.cork();
      this.socket.write(frameHeader(op, true, body.length, mask));
      this.socket.write(body, cb);
      this.socket.uncork();
    }
  }

  /** Both sides ended: send Close 1000 (once), and give the peer a while to answer it. */
  private maybeClose(): void {
    if (!this.localEnded || !this.remoteEnded || this.closeSent || !this.socket.writable) return;
    this.closeSent = true;
    const code = Buffer.allocUnsafe(2);
    code.writeUInt16BE(1000, 0);
    this.sendFrame(OP_CLOSE, code);
    this.stopKeepalive();
    setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS).unref();
  }

  override _read(): void {
    if (this.held) {
      this.held = false;
      this.socket.resume();
    }
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
   * One frame per piece, all in one socket writev; `cb` runs when the socket
   * has taken the last of them (so a writer may reuse its buffers then, and
   * a slow peer's backpressure reaches our writer through the socket's).
   */
  private send(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.closeReceived || this.closeSent || !this.socket.writable) return cb(new ClosedError('websocket'));
    const pieces = framePieces(chunks, this.maxFrame);
    if (pieces.length === 0) return cb();
    const headers = Buffer.allocUnsafe(pieces.length * MAX_HEADER);
    let h = 0;
    this.socket.cork();
    for (let i = 0; i < pieces.length; i++) {
      let piece = pieces[i] as Buffer;
      const done = i === pieces.length - 1 ? (err?: Error | null) => cb(err) : undefined;
      const mask = this.mask();
      if (!this.randomMask && hasHeadroom(piece)) {
        // The header goes in the room the writer left: one contiguous frame.
        const hn = headerLength(piece.length, mask !== null);
        const frame = Buffer.from(piece.buffer, piece.byteOffset - hn, hn + piece.length);
        writeHeader(frame, 0, OP_BINARY, true, piece.length, mask);
        this.socket.write(frame, done);
        continue;
      }
      const n = writeHeader(headers, h, OP_BINARY, true, piece.length, mask);
      this.socket.write(headers.subarray(h, h + n));
      h += n;
      if (this.randomMask) piece = maskedCopy(piece, mask as Buffer);
      this.socket.write(piece, done);
    }
    this.socket.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.closeReceived || this.closeSent || !this.socket.writable) {
      // The peer closed cleanly first (Close 1000 read as EOF): nothing to flush.
      return cb(this.remoteEnded ? null : new ClosedError('websocket'));
    }
    this.localEnded = true;
    this.sendFrame(OP_BINARY, EMPTY, (err?: Error | null) => {
      if (err) return cb(err);
      this.maybeClose();
      cb();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stopKeepalive();
    if (!err && this.localEnded && this.remoteEnded) this.maybeClose();
    else this.socket.destroy();
    cb(err);
  }
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
