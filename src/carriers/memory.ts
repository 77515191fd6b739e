/**
 * In-memory stream carrier for fast tests, faithful to what a TCP socket does
 * to its user:
 *
 * - **backpressure**: a write is acknowledged only once the peer's readable
 *   buffer accepted it; while the peer is not reading, its buffer fills to
 *   `highWaterMark`, our write callback waits, our writable buffer fills and
 *   `write()` returns false; the peer's `read()` releases us ('drain');
 * - **half-close**: `end()` delivers EOF to the peer, which can still write;
 * - **close like TCP**: `destroy()` with nothing unread is a FIN — the peer
 *   gets 'end', and its later writes fail with ConnectionResetError; a
 *   destroy that leaves data unread (in our read buffer or still in flight
 *   from the peer), or `resetAndDestroy()`, is a RST — the peer is destroyed
 *   with ConnectionResetError (errno ECONNRESET);
 * - written chunks are **copied**, since the kernel copies socket writes and
 *   callers may reuse their buffers once the write callback ran.
 */
import { Duplex } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { NO_CAPABILITIES, declareCapabilities } from '../core/stream-caps.js';
import { guardDial } from './dial.js';
import { ConnectionResetError } from './errors.js';
import type { MemoryNetwork } from './memory-network.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from './types.js';

/** Options of {@link memoryStreamPair}. */
export interface MemoryStreamInit {
  /** Readable and writable buffer bound of each side, bytes. @default 65536 */
  highWaterMark?: number;
}

class MemoryDuplex extends Duplex {
  peer: MemoryDuplex | undefined;
  /** We delivered EOF to the peer (our write side finished cleanly). */
  sentEof = false;
  /** A write the peer's full readable buffer has not taken yet: what is left of it, and its callback. */
  private held: { rest: Buffer; cb: (err?: Error | null) => void } | undefined;
  /** resetAndDestroy() was called. */
  private reset = false;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const peer = this.peer;
    if (!peer || peer.destroyed) return cb(new ConnectionResetError('memory stream'));
    this.pushOn(Buffer.from(chunk), cb);
  }

  /**
   * Hands `data` to the peer in pieces of at most its highWaterMark, so one
   * big write cannot overfill the reader; stops (and holds the rest with the
   * callback) as soon as the peer's buffer is full.
   */
  private pushOn(data: Buffer, cb: (err?: Error | null) => void): void {
    const peer = this.peer as MemoryDuplex;
    const piece = peer.readableHighWaterMark;
    for (let off = 0; off < data.length; ) {
      const end = Math.min(off + piece, data.length);
      const more = peer.push(data.subarray(off, end));
      off = end;
      if (!more) {
        this.held = { rest: data.subarray(off), cb };
        return;
      }
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.sentEof = true;
    this.peer?.push(null);
    cb();
  }

  override _read(): void {
    // The consumer wants more: resume the peer's held write, if any.
    const peer = this.peer;
    const held = peer?.held;
    if (peer && held) {
      peer.held = undefined;
      peer.pushOn(held.rest, held.cb);
    }
  }

  /** Closes with a reset, whatever is unread (net.Socket#resetAndDestroy). */
  resetAndDestroy(): this {
    this.reset = true;
    return this.destroy();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.held = undefined;
    const peer = this.peer;
    if (peer && !peer.destroyed) {
      // TCP sends RST instead of FIN when the closing socket leaves received
      // data unread; the peer then fails at once.
      const unread = this.readableLength > 0 || peer.writableLength > 0;
      if (this.reset || unread) peer.destroy(new ConnectionResetError('memory stream'));
      else if (!this.sentEof) {
        this.sentEof = true;
        peer.push(null);
      }
    }
    cb(err);
  }
}

/**
 * Two linked Duplexes: bytes written to one are read from the other.
 * Both are half-open capable (`allowHalfOpen: true`), like carrier sockets.
 */
export function memoryStreamPair(init: MemoryStreamInit = {}): [Duplex, Duplex] {
  const highWaterMark = init.highWaterMark ?? 65_536;
  const a = new MemoryDuplex({ highWaterMark, allowHalfOpen: true });
  const b = new MemoryDuplex({ highWaterMark, allowHalfOpen: true });
  a.peer = b;
  b.peer = a;
  // Declared, not left out: none. There is no socket to read into slabs and
  // no TLS; and although _write copies each chunk (its buffer is free by the
  // callback), memory pairs stay the fast stand-in for the plain path every
  // capability-less stream takes, which the session tests over memory cover.
  declareCapabilities(a, NO_CAPABILITIES);
  declareCapabilities(b, NO_CAPABILITIES);
  return [a, b];
}

/** Waits until `signal` fires (a dial into a black hole), then rejects with its reason. */
function never(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

/** Stream carrier over a {@link MemoryNetwork}: scheme `mem`. */
export class MemoryStreamCarrier implements StreamCarrier {
  readonly kind = 'stream';
  readonly scheme = 'mem';

  constructor(
    private readonly net: MemoryNetwork,
    private readonly init: MemoryStreamInit = {},
  ) {}

  /** Connects to a listener on the same network; DialError ECONNREFUSED when there is none. */
  async dial(to: Endpoint, opts?: DialOptions): Promise<StreamConn> {
    return guardDial(
      `mem dial ${formatEndpoint(to)}`,
      opts,
      async (signal) => {
        // Connecting takes a turn of the event loop, as a real connect does,
        // so a caller's abort or deadline can land while it is under way.
        await nextTurn(undefined, { signal });
        if (this.net.isBlackholed(to)) await never(signal);
        const accept = this.net.streams.get(to);
        const [client, server] = memoryStreamPair(this.init);
        const local = formatEndpoint({ host: to.host, port: this.net.allocatePort() });
        const remote = formatEndpoint(to);
        accept({ stream: server, remote: local, local: remote, meta: {} });
        return { stream: client, remote, local, meta: {} };
      },
      (late) => late.stream.destroy(),
    );
  }

  /** Registers a listener at `at` (port 0 → a free port). */
  async listen(at: Endpoint, onConn: (conn: StreamConn) => void): Promise<Listener> {
    const address = this.net.streams.bind(at, onConn);
    let closed = false;
    return {
      address,
      close: async () => {
        if (closed) return;
        closed = true;
        this.net.streams.unbind(address);
      },
    };
  }
}
