/**
 * Record plaintext buffers that outlive their write. A record's DATA frames
 * must be kept until the peer acknowledges them (they are sent again after a
 * carrier or path loss). Keeping them as slices of the record they were
 * copied into, instead of as the application's chunks, means a chunk is
 * free once taken (relays then reuse their read slabs, core/slab-reads.ts)
 * and these buffers are recycled. Fresh buffers at bulk rates make V8 run a
 * full mark-compact every few dozen milliseconds (each new ArrayBuffer
 * counts towards the old-generation limit until swept): 25-48 per 3 s run
 * before, 3-4 with the pool and reused slabs together.
 *
 * One pool per process (the event loop is single-threaded). It holds as many
 * as were in flight at once, up to {@link RECORD_POOL_MAX}, and gives back to
 * the GC, every {@link RECORD_POOL_TRIM_MS}, the buffers that sat unused for
 * that whole interval: an idle process keeps none.
 */
import { allocWithHeadroom } from '../core/headroom.js';
import { MAX_RECORD_PLAINTEXT, RECORD_OVERHEAD } from './record.js';
import { RECORD_POOL_MAX } from '../core/limits.js';

/** Free buffers kept for reuse per pool, at most (64 KiB each: 32 MiB); in core/limits.ts. */
export { RECORD_POOL_MAX };
/** Interval of the idle trim. */
export const RECORD_POOL_TRIM_MS = 2000;

/**
 * Same-size buffers, reused: holds as many as were in flight at once (up to
 * RECORD_POOL_MAX) and gives back to the GC, every RECORD_POOL_TRIM_MS, the
 * ones that sat unused for that whole interval.
 */
class BufferPool {
  private readonly free: Buffer[] = [];
  /** The fewest free buffers since the last trim: that many were not needed. */
  private lowWater = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Taken and not given back. */
  out = 0;
  /** Buffers given back and kept for reuse, ever (monotonic: tests and stats). */
  recycled = 0;

  constructor(
    readonly size: number,
    private readonly alloc: (size: number) => Buffer,
  ) {}

  take(): Buffer {
    this.out++;
    const b = this.free.pop();
    if (this.free.length < this.lowWater) this.lowWater = this.free.length;
    return b ?? this.alloc(this.size);
  }

  release(buf: Buffer): void {
    if (buf.length !== this.size) return;
    this.out--;
    if (this.free.length >= RECORD_POOL_MAX) return;
    this.free.push(buf);
    this.recycled++;
    if (!this.timer) {
      this.lowWater = this.free.length;
      this.timer = setInterval(() => this.trim(), RECORD_POOL_TRIM_MS);
      this.timer.unref();
    }
  }

  trim(): void {
    this.free.length -= Math.min(this.lowWater, this.free.length);
    this.lowWater = this.free.length;
    if (this.free.length === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  get pooled(): number {
    return this.free.length;
  }
}

/** Received record plaintexts (and the session's outgoing ones). */
const plaintexts = new BufferPool(MAX_RECORD_PLAINTEXT, (n) => Buffer.allocUnsafeSlow(n));

/**
 * Sealed records on their way out (header, body, tag), each with HEADROOM in
 * front for a framing carrier (core/headroom.ts); a channel takes one per
 * large record and gives it back from the carrier's write callback.
 */
const sealed = new BufferPool(MAX_RECORD_PLAINTEXT + RECORD_OVERHEAD, allocWithHeadroom);

/** The periodic trim of both pools: drops the buffers no take needed since the last one. Exported for tests. */
export function trimRecordPool(): void {
  plaintexts.trim();
  sealed.trim();
}

/** A buffer of MAX_RECORD_PLAINTEXT bytes, contents undefined. */
export function takeRecordBuffer(): Buffer {
  return plaintexts.take();
}

/** Gives back a buffer from takeRecordBuffer() that nothing references any more. */
export function releaseRecordBuffer(buf: Buffer): void {
  plaintexts.release(buf);
}

/** A buffer for one sealed record (MAX_RECORD_PLAINTEXT + RECORD_OVERHEAD bytes, with headroom in front). */
export function takeSealedBuffer(): Buffer {
  return sealed.take();
}

/** Gives back a buffer from takeSealedBuffer() once the carrier has taken its bytes. */
export function releaseSealedBuffer(buf: Buffer): void {
  sealed.release(buf);
}

/** Free plaintext buffers now pooled (tests, stats). */
export function recordPoolSize(): number {
  return plaintexts.pooled;
}

/** Free sealed-record buffers now pooled (tests, stats). */
export function sealedPoolSize(): number {
  return sealed.pooled;
}

/**
 * Buffers taken and not yet given back: records held for resend, and those
 * dropped with a session that ended holding them (left to the GC, never given
 * back). For tests and stats.
 */
export function recordBuffersOut(): number {
  return plaintexts.out;
}

/** Record buffers given back to the pool for reuse, ever (monotonic, unlike the pool's size, which the idle trim lowers). */
export function recordBuffersRecycled(): number {
  return plaintexts.recycled;
}

/**
 * A received record's pool buffer while its payloads are in use: one
 * reference for the parse, one per payload a stream holds for a reader that
 * gives it back (a relay, from its write callback). Anything else that keeps
 * a view (an OPEN, a datagram, a frame held for reordering, a reader that
 * never gives back) poisons it: it is then left to the GC, never reused.
 */
export interface RecordLease {
  buf: Buffer;
  refs: number;
  poisoned: boolean;
}

/** Drops one reference; the last gives the buffer back unless poisoned. */
export function leaseDone(l: RecordLease): void {
  if (--l.refs === 0 && !l.poisoned) releaseRecordBuffer(l.buf);
}
