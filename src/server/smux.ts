/**
 * The server side of xtaci/smux protocol version 1, the multiplexer
 * mtt-client's `-mux` speaks inside its WebSocket connection. Written from
 * the protocol's description; every frame is an 8-byte header and a body:
 *
 *   0        1        2                 4                                  8
 *   +--------+--------+--------+--------+--------+--------+--------+--------+
 *   |  ver   |  cmd   |  length (u16 LE) |        stream id (u32 LE)        |
 *   +--------+--------+--------+--------+--------+--------+--------+--------+
 *   |                    body: `length` bytes (PSH only)                    |
 *
 *   cmd 0 SYN  open stream `sid` (the client's ids are odd: 1, 3, 5, …)
 *   cmd 1 FIN  the sender closed `sid` (EOF)
 *   cmd 2 PSH  data for `sid`
 *   cmd 3 NOP  keepalive, stream id 0
 *
 * Version 1 has no flow control: smux's receiver stops reading the whole
 * connection while more than MaxReceiveBuffer (mtt: 256 KiB) sits unread in
 * its streams; here, while more than that waits to be written to the
 * destinations (the caller pauses its input: {@link SmuxSessionIo.pause}).
 * Keepalive as mtt configures smux: a NOP every 30 s, and the session dies
 * when nothing at all arrived in a 70 s window. mtt's server allows 16
 * streams per session; a 17th gets a FIN at once (mtt drops the whole
 * connection instead: one stream too many should not cut the others).
 * Frames we send carry at most 16 KiB (mtt's MaxFrameSize); frames we
 * accept, like smux, anything the 16-bit length can say.
 *
 * Each stream is its own TCP connection to the user's dst, closed the way
 * mtt's openTunnel closes: EOF either way ends both directions, and so does
 * `idleMs` without a byte either way.
 */
import type { Socket } from 'node:net';
import { ProtocolError } from '../core/errors.js';

export const SMUX_VERSION = 1;
export const SMUX_HEADER = 8;
export const CMD_SYN = 0;
export const CMD_FIN = 1;
export const CMD_PSH = 2;
export const CMD_NOP = 3;

/** mtt's smux settings (defaultSmuxConfig, defaultSmuxMaxStream). */
export const SMUX_DEFAULTS = {
  keepaliveMs: 30_000,
  keepaliveTimeoutMs: 70_000,
  maxFrameBytes: 16 * 1024,
  maxReceiveBytes: 256 * 1024,
  maxStreams: 16,
} as const;

/** What the parser found. PSH bodies come as slices (views of the input), possibly several per frame. */
export interface SmuxSink {
  syn(sid: number): void;
  fin(sid: number): void;
  data(sid: number, slice: Buffer): void;
  nop(): void;
}

/** One frame header. */
export function smuxHeader(cmd: number, sid: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(SMUX_HEADER);
  h[0] = SMUX_VERSION;
  h[1] = cmd;
  h.writeUInt16LE(length, 2);
  h.writeUInt32LE(sid, 4);
  return h;
}

/**
 * Incremental smux v1 parser: feed it the byte stream in any pieces. A
 * wrong version or an unknown command is a ProtocolError (smux ends the
 * session on both); the parser is then unusable.
 */
export class SmuxParser {
  private readonly hdr = Buffer.alloc(SMUX_HEADER);
  private have = 0;
  /** Body bytes still to come of the current PSH frame. */
  private left = 0;
  private sid = 0;

  constructor(private readonly sink: SmuxSink) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.left > 0) {
        const end = Math.min(chunk.length, at + this.left);
        this.left -= end - at;
        this.sink.data(this.sid, chunk.subarray(at, end));
        at = end;
        continue;
      }
      const take = Math.min(SMUX_HEADER - this.have, chunk.length - at);
      chunk.copy(this.hdr, this.have, at, at + take);
      this.have += take;
      at += take;
      if (this.have < SMUX_HEADER) return;
      this.have = 0;
      this.frame();
    }
  }

  private frame(): void {
    const h = this.hdr;
    if (h[0] !== SMUX_VERSION) throw new ProtocolError(`smux: version ${h[0]} (only 1 is spoken)`);
    const len = h.readUInt16LE(2);
    const sid = h.readUInt32LE(4);
    switch (h[1]) {
      case CMD_SYN:
        return this.sink.syn(sid);
      case CMD_FIN:
        return this.sink.fin(sid);
      case CMD_PSH:
        this.sid = sid;
        this.left = len;
        return;
      case CMD_NOP:
        return this.sink.nop();
      default:
        throw new ProtocolError(`smux: unknown command ${h[1]}`);
    }
  }
}

/** What a session needs from its connection and the outside world. */
export interface SmuxSessionIo {
  /** Sends bytes to the client (frames, whole); false when the connection is full (call `drained` later). */
  send(chunks: readonly Buffer[]): boolean;
  /** Stop / restart reading from the client (too much is waiting for the destinations). */
  pause(): void;
  resume(): void;
  /** A new connection to the user's dst. */
  dial(): Socket;
  /** The session is over (keepalive timeout, protocol error); the caller closes the connection. */
  fail(err: Error): void;
  /** Stream events, for logs. */
  log?(msg: string, fields: Record<string, unknown>): void;
}

/** Options of {@link SmuxSession}. */
export interface SmuxSessionInit {
  /** A stream without a byte either way for this long is closed, ms; 0 = never. @default 60000 */
  idleMs?: number;
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
  maxFrameBytes?: number;
  maxReceiveBytes?: number;
  maxStreams?: number;
}

interface MuxStream {
  readonly sid: number;
  readonly dst: Socket;
  lastActive: number;
  closed: boolean;
}

/** One smux session, server side: each stream a TCP connection made with `io.dial()`. */
export class SmuxSession implements SmuxSink {
  private readonly parser = new SmuxParser(this);
  private readonly streams = new Map<number, MuxStream>();
  private readonly opts: Required<SmuxSessionInit>;
  private heardFrom = false;
  private paused = false;
  private blocked = false;
  private closed = false;
  private readonly pingTimer: NodeJS.Timeout;
  private readonly deadTimer: NodeJS.Timeout;
  private readonly idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly io: SmuxSessionIo,
    init: SmuxSessionInit = {},
  ) {
    this.opts = {
      idleMs: init.idleMs ?? 60_000,
      keepaliveMs: init.keepaliveMs ?? SMUX_DEFAULTS.keepaliveMs,
      keepaliveTimeoutMs: init.keepaliveTimeoutMs ?? SMUX_DEFAULTS.keepaliveTimeoutMs,
      maxFrameBytes: Math.min(65535, init.maxFrameBytes ?? SMUX_DEFAULTS.maxFrameBytes),
      maxReceiveBytes: init.maxReceiveBytes ?? SMUX_DEFAULTS.maxReceiveBytes,
      maxStreams: init.maxStreams ?? SMUX_DEFAULTS.maxStreams,
    };
    this.pingTimer = setInterval(() => this.io.send([smuxHeader(CMD_NOP, 0, 0)]), this.opts.keepaliveMs);
    this.deadTimer = setInterval(() => {
      if (this.heardFrom) this.heardFrom = false;
      else this.fail(new ProtocolError(`smux: nothing received for ${this.opts.keepaliveTimeoutMs} ms`));
    }, this.opts.keepaliveTimeoutMs);
    if (this.opts.idleMs > 0) this.idleTimer = setInterval(() => this.closeIdle(), Math.max(50, Math.min(1000, this.opts.idleMs / 4)));
    for (const t of [this.pingTimer, this.deadTimer, this.idleTimer]) t?.unref();
  }

  /** Open streams. */
  get size(): number {
    return this.streams.size;
  }

  /**
   * Streams written to since the event loop last went round: corked until
   * it has handled this turn's reads, so each gets one writev per turn
   * (TLS hands every record up as a read of its own; see mtt-passthrough.ts).
   */
  private readonly corked = new Set<Socket>();
  private flushScheduled = false;

  /** Feeds bytes from the client. */
  push(chunk: Buffer): void {
    if (this.closed) return;
    this.heardFrom = true;
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.fail(err as Error);
    }
    if (this.corked.size > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    for (const s of this.corked) s.uncork();
    this.corked.clear();
  };

  /** The connection to the client can take more again. */
  drained(): void {
    if (!this.blocked) return;
    this.blocked = false;
    for (const s of this.streams.values()) s.dst.resume();
  }

  /** Ends every stream (the connection to the client is gone). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    clearInterval(this.deadTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    for (const s of this.streams.values()) {
      s.closed = true;
      s.dst.destroy();
    }
    this.streams.clear();
  }

  private fail(err: Error): void {
    this.close();
    this.io.fail(err);
  }

  nop(): void {
    // Its arrival already counted as life.
  }

  syn(sid: number): void {
    if (this.streams.has(sid)) return; // smux ignores a SYN for an open stream
    if (this.streams.size >= this.opts.maxStreams) {
      this.io.log?.('smux: stream limit reached; refusing a stream', { streams: this.streams.size });
      this.io.send([smuxHeader(CMD_FIN, sid, 0)]);
      return;
    }
    const dst = this.io.dial();
    const s: MuxStream = { sid, dst, lastActive: Date.now(), closed: false };
    this.streams.set(sid, s);
    dst.setNoDelay(true);
    dst.on('data', (b: Buffer) => this.fromDst(s, b));
    dst.on('drain', () => this.maybeResume());
    // EOF from dst ends both directions (openTunnel); so does an error (a failed dial included).
    dst.on('end', () => this.endStream(s, true));
    dst.on('close', () => this.endStream(s, true));
    dst.on('error', (err: NodeJS.ErrnoException) => {
      this.io.log?.('smux: stream destination error', { sid, code: err.code });
      this.endStream(s, true);
    });
    if (this.blocked) dst.pause();
  }

  fin(sid: number): void {
    const s = this.streams.get(sid);
    // The client's EOF: what it sent is flushed to dst, then both are closed, our FIN included.
    if (s !== undefined) this.endStream(s, true, true);
  }

  data(sid: number, slice: Buffer): void {
    const s = this.streams.get(sid);
    if (s === undefined || s.closed) return; // data for an unknown or closed stream is dropped (smux)
    s.lastActive = Date.now();
    if (!this.corked.has(s.dst)) {
      s.dst.cork();
      this.corked.add(s.dst);
    }
    s.dst.write(slice);
    if (!this.paused && this.pending() > this.opts.maxReceiveBytes) {
      this.paused = true;
      this.io.pause();
    }
  }

  /** Bytes waiting to be written to the destinations. */
  private pending(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.dst.writableLength;
    return n;
  }

  private maybeResume(): void {
    if (this.paused && this.pending() <= this.opts.maxReceiveBytes / 2) {
      this.paused = false;
      this.io.resume();
    }
  }

  private fromDst(s: MuxStream, b: Buffer): void {
    if (s.closed) return;
    s.lastActive = Date.now();
    const max = this.opts.maxFrameBytes;
    const out: Buffer[] = [];
    for (let off = 0; off < b.length; off += max) {
      const piece = b.subarray(off, off + max);
      out.push(smuxHeader(CMD_PSH, s.sid, piece.length), piece);
    }
    if (!this.io.send(out) && !this.blocked) {
      this.blocked = true;
      for (const x of this.streams.values()) x.dst.pause();
    }
  }

  /** Closes one stream: our FIN to the client, dst ended gracefully (client EOF) or at once. */
  private endStream(s: MuxStream, sendFin: boolean, graceful = false): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.sid);
    if (sendFin && !this.closed) this.io.send([smuxHeader(CMD_FIN, s.sid, 0)]);
    if (graceful) {
      s.dst.end();
      s.dst.once('finish', () => s.dst.destroy());
      // A destination that never takes the rest is not waited for forever.
      setTimeout(() => s.dst.destroy(), this.opts.idleMs > 0 ? this.opts.idleMs : 60_000).unref();
    } else {
      s.dst.destroy();
    }
    this.maybeResume();
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const s of [...this.streams.values()]) {
      if (now - s.lastActive >= this.opts.idleMs) {
        this.io.log?.('smux: stream idle; closing it', { sid: s.sid, idleMs: this.opts.idleMs });
        this.endStream(s, true);
      }
    }
  }
}
