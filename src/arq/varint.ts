/**
 * Variable-length integers, QUIC's layout (RFC 9000 §16): the top two bits
 * of the first byte give the length, the rest is the value, big-endian.
 *
 * ```
 *   00xxxxxx                      1 byte   0 … 63
 *   01xxxxxx x8                   2 bytes  0 … 16383
 *   10xxxxxx x8 x8 x8             4 bytes  0 … 2^30-1
 *   11xxxxxx x8 x8 x8 x8 x8 x8 x8 8 bytes  0 … 2^62-1
 * ```
 *
 * Values are JS numbers, so only safe integers (≤ 2^53-1) are written or
 * read; a wider value on the wire is malformed for us.
 */
import { ProtocolError } from '../core/errors.js';

/** Bytes {@link writeVarint} needs for `v`. */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (v < 64) return 1;
  if (v < 16384) return 2;
  if (v < 2 ** 30) return 4;
  return 8;
}

/** Writes `v` (a safe non-negative integer) at `at`; returns the offset after it. */
export function writeVarint(buf: Uint8Array, at: number, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
  const len = varintLength(v);
  if (len === 1) {
    buf[at] = v;
  } else if (len === 2) {
    buf[at] = 0x40 | (v >>> 8);
    buf[at + 1] = v & 0xff;
  } else if (len === 4) {
    buf[at] = 0x80 | (v >>> 24);
    buf[at + 1] = (v >>> 16) & 0xff;
    buf[at + 2] = (v >>> 8) & 0xff;
    buf[at + 3] = v & 0xff;
  } else {
    const hi = Math.floor(v / 2 ** 32);
    const lo = v >>> 0;
    buf[at] = 0xc0 | (hi >>> 24);
    buf[at + 1] = (hi >>> 16) & 0xff;
    buf[at + 2] = (hi >>> 8) & 0xff;
    buf[at + 3] = hi & 0xff;
    buf[at + 4] = lo >>> 24;
    buf[at + 5] = (lo >>> 16) & 0xff;
    buf[at + 6] = (lo >>> 8) & 0xff;
    buf[at + 7] = lo & 0xff;
  }
  return at + len;
}

/** A cursor over a byte array for the decoders of this layer. */
export interface Cursor {
  readonly buf: Uint8Array;
  pos: number;
  readonly end: number;
}

/** Reads one varint at the cursor; ProtocolError when truncated or wider than a safe integer. */
export function readVarint(c: Cursor, what: string): number {
  if (c.pos >= c.end) throw new ProtocolError(`arq: truncated ${what}`);
  const first = c.buf[c.pos] as number;
  const len = 1 << (first >>> 6);
  if (c.pos + len > c.end) throw new ProtocolError(`arq: truncated ${what}`);
  let v = first & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + (c.buf[c.pos + i] as number);
  if (!Number.isSafeInteger(v)) throw new ProtocolError(`arq: ${what} too large`);
  c.pos += len;
  return v;
}
