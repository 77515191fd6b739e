/**
 * The WebSocket byte stream: a Node Duplex over an upgraded socket, both
 * ends of a ws:// or wss:// connection (the carrier is ws.ts, the
 * multi-user server ws-server.ts).
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
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { enableSlabReads, type SlabReadOptions, type SlabReader } from '../core/slab-reads.js';
import { declareCapabilities } from '../core/stream-caps.js';
import { ClosedError, ConfigError, ProtocolError, TimeoutError } from '../core/errors.js';
import { ConnectionResetError } from './errors.js';
import { singleWrites, tlsBindingOf } from './tls.js';
import { FrameReader, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG } from './ws-frames.js';
import { writeFrame, writeMessages, type Masking } from './ws-writer.js';
import { SlabSlices } from './ws-slab-slices.js';

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

const EMPTY = Buffer.alloc(0);
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
  /** The TLS socket underneath (wss terminated here, or dialled), for diagnostics; undefined over plain ws. */
  get tlsSocket(): TLSSocket | undefined {
    return this.socket instanceof TLSSocket ? this.socket : undefined;
  }
  private readonly maxFrame: number;
  private readonly masking: Masking;
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
  private slabs: SlabSlices | null = null;
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
    const client = opts.role === 'client';
    this.masking = !client ? 'none' : opts.mask === 'zero' ? 'zero' : 'random';
    this.reader = new FrameReader(!client, { data: this.onPayload, messageEnd: this.onMessageEnd, control: this.onControl }, opts.maxPayloadBytes ?? DEFAULT_WS_MAX_PAYLOAD);
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
    if (this.slabs) this.slabs.readStarted();
    this.parsing = true;
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
    }
    this.parsing = false;
    // Read again: a reader may have asked for slab reads during the parse.
    if (this.slabs) this.slabs.readDone();
  };

  private readonly onPayload = (slice: Buffer): void => {
    if (this.destroyed) return;
    if (this.remoteEnded) throw new ProtocolError('websocket: data after end');
    if (this.slabs) this.slabs.sliced();
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
    // The read being parsed now (if any) is not a slab read; its later slices still count.
    this.slabs = new SlabSlices(inner, this.parsing);
    return this.slabs;
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

  /** One small frame of its own (control frames, and the empty message that ends our side). */
  private sendFrame(op: number, payload: Buffer, cb?: (err?: Error | null) => void): void {
    writeFrame(this.socket, op, payload, this.masking, cb);
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

  /** Our chunks as binary messages (ws-writer.ts), unless a Close was sent or received. */
  private send(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.closeReceived || this.closeSent || !this.socket.writable) return cb(new ClosedError('websocket'));
    writeMessages(this.socket, chunks, this.maxFrame, this.masking, cb);
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
