/**
 * The byte stream an ARQ connection carries, both ends of it. Records of up
 * to 64 KiB (what the session writes) do not fit a datagram, so the
 * connection carries them as one ordered byte stream, each record behind a
 * 2-byte length, cut into STREAM frames of (offset, bytes) as packets have
 * room — QUIC's stream model, one stream per connection.
 *
 * - {@link SendStream}: what was written, by offset, until acknowledged;
 *   which ranges are acknowledged; which lost ranges to send again.
 * - {@link ReceiveStream}: pieces that arrived out of order, bounded by a
 *   window, put back in order and cut into records again.
 *
 * Pure data structures: no clock, no I/O.
 */
import { ProtocolError } from '../core/errors.js';

/** A half-open byte range [lo, hi). */
export interface ByteRange {
  lo: number;
  hi: number;
}

/** A set of disjoint, non-adjacent half-open ranges, ascending. */
export class RangeSet {
  readonly ranges: ByteRange[] = [];

  /** Adds [lo, hi). */
  add(lo: number, hi: number): void {
    if (hi <= lo) return;
    const rs = this.ranges;
    // First range that ends at or after lo (may touch or overlap).
    const i = this.#firstEndingAtOrAfter(lo);
    if (i === rs.length || (rs[i] as ByteRange).lo > hi) {
      rs.splice(i, 0, { lo, hi });
      return;
    }
    const r = rs[i] as ByteRange;
    r.lo = Math.min(r.lo, lo);
    r.hi = Math.max(r.hi, hi);
    // Swallow every following range it now touches.
    let j = i + 1;
    while (j < rs.length && (rs[j] as ByteRange).lo <= r.hi) {
      r.hi = Math.max(r.hi, (rs[j] as ByteRange).hi);
      j++;
    }
    if (j > i + 1) rs.splice(i + 1, j - i - 1);
  }

  /** The parts of [lo, hi) not in the set, ascending. */
  missing(lo: number, hi: number): ByteRange[] {
    const out: ByteRange[] = [];
    let at = lo;
    const rs = this.ranges;
    for (let i = this.#firstEndingAtOrAfter(lo); i < rs.length && at < hi; i++) {
      const r = rs[i] as ByteRange;
      if (r.lo >= hi) break;
      if (r.lo > at) out.push({ lo: at, hi: r.lo });
      at = Math.max(at, r.hi);
    }
    if (at < hi) out.push({ lo: at, hi });
    return out;
  }

  /** True when [lo, hi) is wholly in the set. */
  covers(lo: number, hi: number): boolean {
    const i = this.#firstEndingAtOrAfter(lo + 1);
    const r = this.ranges[i];
    return r !== undefined && r.lo <= lo && r.hi >= hi;
  }

  /** Forgets everything below `at` (the ranges keep their parts at or above it). */
  dropBelow(at: number): void {
    const rs = this.ranges;
    let n = 0;
    while (n < rs.length && (rs[n] as ByteRange).hi <= at) n++;
    if (n > 0) rs.splice(0, n);
    const first = rs[0];
    if (first !== undefined && first.lo < at) first.lo = at;
  }

  /** Binary search: index of the first range whose hi >= x. */
  #firstEndingAtOrAfter(x: number): number {
    const rs = this.ranges;
    let a = 0;
    let b = rs.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if ((rs[m] as ByteRange).hi < x) a = m + 1;
      else b = m;
    }
    return a;
  }
}

/** Bytes of the length in front of each record. */
export const RECORD_LENGTH_BYTES = 2;
/** Largest record the stream carries (the length field's range). */
export const MAX_STREAM_RECORD = 0xffff;

interface Chunk {
  off: number;
  buf: Buffer;
}

/**
 * The send side: records written (copied, behind their length), sent once
 * in order, kept until acknowledged. `sent` is how far new data went out;
 * lost ranges queue for `takeRetransmit`.
 */
export class SendStream {
  /** Chunks not yet wholly acknowledged, ascending by offset. */
  readonly #chunks: Chunk[] = [];
  #head = 0;
  readonly #acked = new RangeSet();
  /** Everything below is acknowledged (and freed). */
  #ackedBase = 0;
  /** Bytes written (the next record's offset). */
  #written = 0;
  /** New data sent up to here. */
  #sent = 0;
  readonly #retransmit: ByteRange[] = [];

  /** Stream offset after the last byte written. */
  get written(): number {
    return this.#written;
  }

  /** Offset up to which new data has been sent once. */
  get sent(): number {
    return this.#sent;
  }

  /** Everything below this offset is acknowledged. */
  get ackedBase(): number {
    return this.#ackedBase;
  }

  /** Bytes written and not yet sent once. */
  get backlog(): number {
    return this.#written - this.#sent;
  }

  /** Bytes held (written and not acknowledged below the first gap). */
  get held(): number {
    return this.#written - this.#ackedBase;
  }

  /** True when lost ranges wait to be sent again. */
  get hasRetransmit(): boolean {
    return this.#retransmit.length > 0;
  }

  /** True when every byte written was acknowledged. */
  get allAcked(): boolean {
    return this.#ackedBase === this.#written;
  }

  /** Appends one record (its plaintext `buf[0..len)`), copied behind its length. */
  writeRecord(buf: Buffer, len: number): void {
    if (len < 1 || len > MAX_STREAM_RECORD) throw new RangeError(`record of ${len} bytes`);
    const c = Buffer.allocUnsafe(RECORD_LENGTH_BYTES + len);
    c.writeUInt16BE(len, 0);
    buf.copy(c, RECORD_LENGTH_BYTES, 0, len);
    this.#chunks.push({ off: this.#written, buf: c });
    this.#written += c.length;
  }

  /** The next lost range to send again, at most `max` bytes of it (the rest stays queued); skips what got acknowledged meanwhile. */
  takeRetransmit(max: number): ByteRange | undefined {
    while (this.#retransmit.length > 0) {
      const r = this.#retransmit[0] as ByteRange;
      const g = r.hi > this.#ackedBase ? this.#acked.missing(Math.max(r.lo, this.#ackedBase), r.hi)[0] : undefined;
      if (g === undefined) {
        this.#retransmit.shift();
        continue;
      }
      const hi = Math.min(g.hi, g.lo + max);
      r.lo = hi;
      if (r.lo >= r.hi) this.#retransmit.shift();
      return { lo: g.lo, hi };
    }
    return undefined;
  }

  /** The next new range, at most `max` bytes and not past `limit` (the receiver's window). */
  takeNew(max: number, limit: number): ByteRange | undefined {
    const hi = Math.min(this.#written, this.#sent + max, limit);
    if (hi <= this.#sent) return undefined;
    const r = { lo: this.#sent, hi };
    this.#sent = hi;
    return r;
  }

  /** The oldest sent and unacknowledged bytes, at most `max` (a probe's payload when nothing is queued). */
  oldestUnacked(max: number): ByteRange | undefined {
    if (this.#sent <= this.#ackedBase) return undefined;
    const gaps = this.#acked.missing(this.#ackedBase, this.#sent);
    const g = gaps[0];
    return g === undefined ? undefined : { lo: g.lo, hi: Math.min(g.hi, g.lo + max) };
  }

  /** Queues a range whose packet was lost. */
  lost(lo: number, hi: number): void {
    if (hi > this.#ackedBase) this.#retransmit.push({ lo, hi });
  }

  /** A range reached the peer. */
  acked(lo: number, hi: number): void {
    if (hi <= this.#ackedBase) return;
    this.#acked.add(Math.max(lo, this.#ackedBase), hi);
    const first = this.#acked.ranges[0];
    if (first !== undefined && first.lo <= this.#ackedBase) {
      this.#ackedBase = first.hi;
      this.#acked.dropBelow(this.#ackedBase);
      this.#free();
    }
  }

  /** Copies stream bytes [lo, hi) into `out` at `at` (they must be held). */
  copy(lo: number, hi: number, out: Buffer, at: number): void {
    let i = this.#find(lo);
    let pos = lo;
    while (pos < hi) {
      const c = this.#chunks[i] as Chunk;
      const start = pos - c.off;
      const n = Math.min(c.buf.length - start, hi - pos);
      c.buf.copy(out, at, start, start + n);
      at += n;
      pos += n;
      i++;
    }
  }

  #find(off: number): number {
    const cs = this.#chunks;
    let a = this.#head;
    let b = cs.length;
    while (a + 1 < b) {
      const m = (a + b) >>> 1;
      if ((cs[m] as Chunk).off <= off) a = m;
      else b = m;
    }
    return a;
  }

  #free(): void {
    const cs = this.#chunks;
    while (this.#head < cs.length) {
      const c = cs[this.#head] as Chunk;
      if (c.off + c.buf.length > this.#ackedBase) break;
      cs[this.#head] = undefined as unknown as Chunk;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > cs.length) {
      cs.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

interface Piece {
  off: number;
  data: Buffer;
}

/**
 * The receive side: pieces by offset, in order from `next`, at most
 * `window` bytes past it; complete records go to the handler.
 */
export class ReceiveStream {
  readonly window: number;
  readonly maxPieces: number;
  /** Out-of-order pieces, ascending, disjoint, all above `next`. */
  readonly #pieces: Piece[] = [];
  #next = 0;
  /** The record being put together: its length (0: reading the length), what we have. */
  #lenBytes: number[] = [];
  #need = 0;
  #parts: Buffer[] = [];
  #have = 0;
  readonly #onRecord: (record: Buffer) => void;

  constructor(window: number, onRecord: (record: Buffer) => void, maxPieces = 65_536) {
    this.window = window;
    this.maxPieces = maxPieces;
    this.#onRecord = onRecord;
  }

  /** Bytes delivered in order so far. */
  get next(): number {
    return this.#next;
  }

  /** Bytes held out of order. */
  get buffered(): number {
    let n = 0;
    for (const p of this.#pieces) n += p.data.length;
    return n;
  }

  /** True when [off, off+len) may be taken: within the window, and the piece table has room. */
  accepts(off: number, len: number): boolean {
    return off + len <= this.#next + this.window && this.#pieces.length < this.maxPieces;
  }

  /** Takes the bytes at `off` (duplicates and overlaps are trimmed). Call accepts() first. */
  insert(off: number, data: Buffer): void {
    let lo = off;
    let d = data;
    if (lo < this.#next) {
      if (lo + d.length <= this.#next) return;
      d = d.subarray(this.#next - lo);
      lo = this.#next;
    }
    if (lo === this.#next && (this.#pieces.length === 0 || (this.#pieces[0] as Piece).off >= lo + d.length)) {
      this.#consume(d);
      this.#drainPieces();
      return;
    }
    this.#store(lo, d);
    this.#drainPieces();
  }

  /** Stores [lo, lo+len) minus what pieces already hold. */
  #store(lo: number, d: Buffer): void {
    const ps = this.#pieces;
    const hi = lo + d.length;
    // First piece ending after lo.
    let a = 0;
    let b = ps.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      const p = ps[m] as Piece;
      if (p.off + p.data.length <= lo) a = m + 1;
      else b = m;
    }
    let at = lo;
    let i = a;
    const add: Piece[] = [];
    while (at < hi) {
      const p = ps[i];
      if (p === undefined || p.off >= hi) {
        add.push({ off: at, data: d.subarray(at - lo) });
        break;
      }
      if (p.off > at) add.push({ off: at, data: d.subarray(at - lo, p.off - lo) });
      at = Math.max(at, p.off + p.data.length);
      i++;
    }
    if (add.length === 0) return;
    // Insert the new parts in order among the existing ones.
    let j = a;
    for (const n of add) {
      while (j < ps.length && (ps[j] as Piece).off < n.off) j++;
      ps.splice(j, 0, n);
      j++;
    }
  }

  #drainPieces(): void {
    const ps = this.#pieces;
    while (ps.length > 0 && (ps[0] as Piece).off <= this.#next) {
      const p = ps.shift() as Piece;
      const end = p.off + p.data.length;
      if (end <= this.#next) continue;
      this.#consume(p.data.subarray(this.#next - p.off));
    }
  }

  /** In-order bytes: cut into records. */
  #consume(d: Buffer): void {
    this.#next += d.length;
    let pos = 0;
    while (pos < d.length) {
      if (this.#need === 0) {
        // Reading the 2-byte length (it may straddle pieces).
        if (this.#lenBytes.length === 0 && pos + RECORD_LENGTH_BYTES <= d.length) {
          this.#need = d.readUInt16BE(pos);
          pos += RECORD_LENGTH_BYTES;
        } else {
          this.#lenBytes.push(d[pos] as number);
          pos++;
          if (this.#lenBytes.length < RECORD_LENGTH_BYTES) continue;
          this.#need = ((this.#lenBytes[0] as number) << 8) | (this.#lenBytes[1] as number);
          this.#lenBytes = [];
        }
        if (this.#need === 0) throw new ProtocolError('arq: empty record in stream');
        continue;
      }
      const want = this.#need - this.#have;
      const n = Math.min(want, d.length - pos);
      if (this.#have === 0 && n === want) {
        // The whole record lies in this piece: no copy.
        this.#need = 0;
        this.#onRecord(d.subarray(pos, pos + n));
        pos += n;
        continue;
      }
      this.#parts.push(d.subarray(pos, pos + n));
      this.#have += n;
      pos += n;
      if (this.#have === this.#need) {
        const rec = Buffer.concat(this.#parts, this.#have);
        this.#parts = [];
        this.#have = 0;
        this.#need = 0;
        this.#onRecord(rec);
      }
    }
  }
}
