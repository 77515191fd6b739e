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
import { MAX_RECORD_PLAINTEXT } from './record.js';

/** Free buffers kept for reuse, at most (64 KiB each: 32 MiB). */
export const RECORD_POOL_MAX = 512;
/** Interval of the idle trim. */
export const RECORD_POOL_TRIM_MS = 2000;

const free: Buffer[] = [];
/** The fewest free buffers since the last trim: that many were not needed. */
let lowWater = 0;
let trimTimer: NodeJS.Timeout | undefined;

/** The periodic trim: drops the buffers no take() needed since the last one. Exported for tests. */
export function trimRecordPool(): void {
  free.length -= Math.min(lowWater, free.length);
  lowWater = free.length;
  if (free.length === 0) {
    clearInterval(trimTimer);
    trimTimer = undefined;
  }
}

/** Buffers taken and not given back (see recordBuffersOut). */
let out = 0;

/** A buffer of MAX_RECORD_PLAINTEXT bytes, contents undefined. */
export function takeRecordBuffer(): Buffer {
  out++;
  const b = free.pop();
  if (free.length < lowWater) lowWater = free.length;
  return b ?? Buffer.allocUnsafeSlow(MAX_RECORD_PLAINTEXT);
}

/** Gives back a buffer from takeRecordBuffer() that nothing references any more. */
export function releaseRecordBuffer(buf: Buffer): void {
  if (buf.length !== MAX_RECORD_PLAINTEXT) return;
  out--;
  if (free.length >= RECORD_POOL_MAX) return;
  free.push(buf);
  if (!trimTimer) {
    lowWater = free.length;
    trimTimer = setInterval(trimRecordPool, RECORD_POOL_TRIM_MS);
    trimTimer.unref();
  }
}

/** Free buffers now pooled (tests, stats). */
export function recordPoolSize(): number {
  return free.length;
}

/**
 * Buffers taken and not yet given back: records held for resend, and those
 * dropped with a session that ended holding them (left to the GC, never given
 * back). For tests and stats.
 */
export function recordBuffersOut(): number {
  return out;
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
