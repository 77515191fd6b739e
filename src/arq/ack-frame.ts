/**
 * The ACK frame: which packet numbers arrived, as ranges from the largest
 * down, and how long the receiver held the ACK (so the sender can take that
 * out of its RTT sample). The layout is QUIC's (RFC 9000 §19.3) without the
 * type byte and ECN counts; the caller's frame codec puts the type in front.
 *
 * ```
 *   ┌──────────┬──────────────┬─────────────┬─────────────┬─────┬────────┬─────┐
 *   │ largest  │ ack delay µs │ extra count │ first range │ gap │ length │ ... │
 *   └──────────┴──────────────┴─────────────┴─────────────┴─────┴────────┴─────┘
 *   all varints; first range = largest - smallest of the top range;
 *   each extra range: its largest = previous smallest - gap - 2,
 *                     its smallest = its largest - length
 * ```
 *
 * Ranges are strictly descending and never touch (a gap of zero means one
 * missing number). At most {@link MAX_ACK_RANGES} ranges: the decoder
 * refuses more before reading them, so a forged count costs nothing.
 */
import { ProtocolError } from '../core/errors.js';
import { MAX_ACK_RANGES } from './constants.js';
import { type Cursor, readVarint, varintLength, writeVarint } from './varint.js';

/** Packet numbers `lo` … `hi`, both included. */
export interface AckRange {
  readonly lo: number;
  readonly hi: number;
}

export interface AckFrame {
  /** The largest packet number acknowledged: `ranges[0].hi`. */
  readonly largest: number;
  /** How long the receiver held this ACK after the largest arrived (ms, µs resolution on the wire). */
  readonly ackDelayMs: number;
  /** Descending, disjoint, non-adjacent; 1 … {@link MAX_ACK_RANGES} of them. */
  readonly ranges: readonly AckRange[];
}

const delayMicros = (ms: number): number => (ms > 0 ? Math.min(Math.round(ms * 1000), Number.MAX_SAFE_INTEGER) : 0);

/** Checks the invariants of {@link AckFrame}; throws RangeError (a caller bug, not wire input). */
function validate(f: AckFrame): void {
  const n = f.ranges.length;
  if (n < 1 || n > MAX_ACK_RANGES) throw new RangeError(`ack frame: ${n} ranges`);
  if (f.ranges[0]?.hi !== f.largest) throw new RangeError('ack frame: largest is not the top of the first range');
  let below = Infinity;
  for (const r of f.ranges) {
    if (!Number.isSafeInteger(r.lo) || !Number.isSafeInteger(r.hi) || r.lo < 0 || r.lo > r.hi || r.hi >= below - 1) {
      throw new RangeError(`ack frame: bad range ${r.lo}..${r.hi}`);
    }
    below = r.lo;
  }
}

/** Bytes {@link encodeAckFrame} will write for `f`. */
export function ackFrameLength(f: AckFrame): number {
  const first = f.ranges[0] as AckRange;
  let n = varintLength(f.largest) + varintLength(delayMicros(f.ackDelayMs)) + varintLength(f.ranges.length - 1) + varintLength(first.hi - first.lo);
  for (let i = 1; i < f.ranges.length; i++) {
    const prev = f.ranges[i - 1] as AckRange;
    const r = f.ranges[i] as AckRange;
    n += varintLength(prev.lo - r.hi - 2) + varintLength(r.hi - r.lo);
  }
  return n;
}

/** Writes `f` at `at` of `buf` (which must have {@link ackFrameLength} bytes free); returns the offset after it. */
export function encodeAckFrame(f: AckFrame, buf: Uint8Array, at = 0): number {
  validate(f);
  if (buf.length - at < ackFrameLength(f)) throw new RangeError('ack frame: buffer too small');
  const first = f.ranges[0] as AckRange;
  let p = writeVarint(buf, at, f.largest);
  p = writeVarint(buf, p, delayMicros(f.ackDelayMs));
  p = writeVarint(buf, p, f.ranges.length - 1);
  p = writeVarint(buf, p, first.hi - first.lo);
  for (let i = 1; i < f.ranges.length; i++) {
    const prev = f.ranges[i - 1] as AckRange;
    const r = f.ranges[i] as AckRange;
    p = writeVarint(buf, p, prev.lo - r.hi - 2);
    p = writeVarint(buf, p, r.hi - r.lo);
  }
  return p;
}

/** `f` in a buffer of its own. */
export function ackFrameBytes(f: AckFrame): Uint8Array {
  validate(f);
  const out = new Uint8Array(ackFrameLength(f));
  encodeAckFrame(f, out);
  return out;
}

/**
 * Reads one ACK frame from `buf` at `at` (up to `end`). Throws only
 * ProtocolError: truncated, a varint wider than a safe integer, more than
 * {@link MAX_ACK_RANGES} ranges, or a range reaching below packet 0.
 */
export function decodeAckFrame(buf: Uint8Array, at = 0, end = buf.length): { frame: AckFrame; end: number } {
  const c: Cursor = { buf, pos: at, end: Math.min(end, buf.length) };
  const largest = readVarint(c, 'ack largest');
  const delay = readVarint(c, 'ack delay');
  const extra = readVarint(c, 'ack range count');
  if (extra > MAX_ACK_RANGES - 1) throw new ProtocolError(`arq: ack frame with ${extra + 1} ranges (max ${MAX_ACK_RANGES})`);
  const firstLen = readVarint(c, 'ack first range');
  if (firstLen > largest) throw new ProtocolError('arq: ack range below packet 0');
  const ranges: AckRange[] = [{ lo: largest - firstLen, hi: largest }];
  let lo = largest - firstLen;
  for (let i = 0; i < extra; i++) {
    const gap = readVarint(c, 'ack gap');
    const len = readVarint(c, 'ack range');
    if (gap + 2 > lo) throw new ProtocolError('arq: ack gap below packet 0');
    const hi = lo - gap - 2;
    if (len > hi) throw new ProtocolError('arq: ack range below packet 0');
    lo = hi - len;
    ranges.push({ lo, hi });
  }
  return { frame: { largest, ackDelayMs: delay / 1000, ranges }, end: c.pos };
}
