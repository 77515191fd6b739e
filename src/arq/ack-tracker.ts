/**
 * The receive side: which packet numbers arrived, whether one is a
 * duplicate, and when an ACK is due (RFC 9000 §13.2). An ACK is due at once
 * after every second ack-eliciting packet (or every `bulkAckThreshold`th
 * once 100 packets arrived: ACK decimation) or an out-of-order one (a gap
 * before it, or a number below the largest: the sender wants to hear of
 * reordering and loss quickly), otherwise `maxAckDelayMs` after the first
 * ack-eliciting packet not yet acknowledged. Packets that are not
 * ack-eliciting (ACK-only) are recorded but never make an ACK due.
 *
 * Memory is bounded: at most `maxRanges` ranges are kept. When one more
 * would be needed the oldest range is forgotten and everything below the
 * new lowest range counts as seen (a packet that late is dropped as a
 * duplicate; its sender declares it lost and sends its frames again in a new
 * packet, so nothing is lost for good). {@link forgetBelow} does the same on
 * purpose once the peer has seen an ACK that covered those numbers.
 */
import { ACK_ELICITING_THRESHOLD, BULK_ACK_AFTER_PACKETS, MAX_ACK_DELAY_MS, MAX_ACK_RANGES } from './constants.js';
import type { AckFrame, AckRange } from './ack-frame.js';

/** Options of an {@link AckTracker}. */
export interface AckTrackerInit {
  /** How long an ACK for an ack-eliciting packet may wait. @default MAX_ACK_DELAY_MS (25) */
  maxAckDelayMs?: number | undefined;
  /** Ack-eliciting packets that make an ACK due at once. @default ACK_ELICITING_THRESHOLD (2) */
  ackElicitingThreshold?: number | undefined;
  /** The same once {@link BULK_ACK_AFTER_PACKETS} arrived (ACK decimation; the udp modes use {@link BULK_ACK_THRESHOLD}); never below ackElicitingThreshold. @default ackElicitingThreshold (none) */
  bulkAckThreshold?: number | undefined;
  /** Ranges kept and put in one ACK. @default MAX_ACK_RANGES (32) */
  maxRanges?: number | undefined;
}

interface MutableRange {
  lo: number;
  hi: number;
}

export class AckTracker {
  readonly maxAckDelayMs: number;
  #threshold: number;
  readonly #bulkThreshold: number;
  readonly #maxRanges: number;
  /** Descending, disjoint, non-adjacent. */
  readonly #ranges: MutableRange[] = [];
  /** Numbers below this count as seen (forgotten). */
  #floor = 0;
  #largest = -1;
  #largestAt = 0;
  #pendingEliciting = 0;
  #pendingSince: number | undefined;
  #dueAt: number | undefined;

  /** Packets accepted as new. */
  received = 0;
  /** Packets refused as already seen (or forgotten). */
  duplicates = 0;
  /** Packets that arrived below the largest seen (reordered, or a late retransmission by the link). */
  reordered = 0;
  /** Packets that arrived above the largest + 1, leaving a gap (loss or reordering before them). */
  gaps = 0;

  constructor(init: AckTrackerInit = {}) {
    this.maxAckDelayMs = init.maxAckDelayMs ?? MAX_ACK_DELAY_MS;
    this.#threshold = Math.max(1, init.ackElicitingThreshold ?? ACK_ELICITING_THRESHOLD);
    this.#bulkThreshold = Math.max(this.#threshold, init.bulkAckThreshold ?? this.#threshold);
    this.#maxRanges = Math.max(1, Math.min(MAX_ACK_RANGES, init.maxRanges ?? MAX_ACK_RANGES));
  }

  /** The largest packet number received, or -1. */
  get largest(): number {
    return this.#largest;
  }

  /** True when `pn` was received (or is below what is remembered). */
  has(pn: number): boolean {
    if (pn < this.#floor) return true;
    for (const r of this.#ranges) if (pn >= r.lo && pn <= r.hi) return true;
    return false;
  }

  /**
   * Records an authenticated packet. Returns false for a duplicate: the
   * caller drops it without handling its frames. A duplicate ack-eliciting
   * packet still asks for an ACK within the delay (our last one may have been lost).
   */
  onPacket(pn: number, ackEliciting: boolean, now: number): boolean {
    if (!Number.isSafeInteger(pn) || pn < 0) return false;
    if (this.has(pn)) {
      this.duplicates++;
      if (ackEliciting) this.#pending(now, false);
      return false;
    }
    if (++this.received === BULK_ACK_AFTER_PACKETS) this.#threshold = this.#bulkThreshold;
    const outOfOrder = pn < this.#largest;
    const gap = pn > this.#largest + 1 && this.#largest >= 0;
    if (outOfOrder) this.reordered++;
    if (gap) this.gaps++;
    this.#insert(pn);
    if (pn > this.#largest) {
      this.#largest = pn;
      this.#largestAt = now;
    }
    if (ackEliciting) this.#pending(now, outOfOrder || gap);
    return true;
  }

  #pending(now: number, immediate: boolean): void {
    this.#pendingEliciting++;
    this.#pendingSince ??= now;
    if (immediate || this.#pendingEliciting >= this.#threshold) this.#dueAt ??= now;
  }

  #insert(pn: number): void {
    const rs = this.#ranges;
    let i = 0;
    while (i < rs.length && (rs[i] as MutableRange).lo > pn) i++;
    // rs[i] is the first range with lo <= pn (not containing pn: has() said so), rs[i-1] is above pn.
    const above = rs[i - 1];
    const below = rs[i];
    const joinAbove = above !== undefined && above.lo === pn + 1;
    const joinBelow = below !== undefined && below.hi === pn - 1;
    if (joinAbove && joinBelow) {
      above.lo = below.lo;
      rs.splice(i, 1);
    } else if (joinAbove) above.lo = pn;
    else if (joinBelow) below.hi = pn;
    else rs.splice(i, 0, { lo: pn, hi: pn });
    while (rs.length > this.#maxRanges) {
      const dropped = rs.pop() as MutableRange;
      this.#floor = Math.max(this.#floor, dropped.hi + 1);
    }
  }

  /** When an ACK is due (ms on the caller's clock), or undefined when none is owed. */
  get ackDeadline(): number | undefined {
    if (this.#pendingSince === undefined) return undefined;
    return this.#dueAt ?? this.#pendingSince + this.maxAckDelayMs;
  }

  /** True when an ACK should leave now. */
  ackDue(now: number): boolean {
    const d = this.ackDeadline;
    return d !== undefined && now >= d;
  }

  /**
   * The ACK frame to send now (it may also ride on any packet before it is
   * due); clears what was owed. Undefined when nothing was ever received.
   */
  takeAck(now: number): AckFrame | undefined {
    this.#pendingEliciting = 0;
    this.#pendingSince = undefined;
    this.#dueAt = undefined;
    if (this.#ranges.length === 0) return undefined;
    const ranges: AckRange[] = this.#ranges.map((r) => ({ lo: r.lo, hi: r.hi }));
    return { largest: this.#largest, ackDelayMs: Math.max(0, now - this.#largestAt), ranges };
  }

  /**
   * Stops acknowledging numbers below `pn` (the peer has seen an ACK that
   * covered them); they count as seen from now on.
   */
  forgetBelow(pn: number): void {
    if (pn <= this.#floor) return;
    this.#floor = pn;
    const rs = this.#ranges;
    while (rs.length > 0 && (rs[rs.length - 1] as MutableRange).hi < pn) rs.pop();
    const last = rs[rs.length - 1];
    if (last !== undefined && last.lo < pn) last.lo = pn;
  }
}
