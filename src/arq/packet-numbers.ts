/**
 * Packet numbers and the table of packets sent and not yet settled.
 *
 * One number space per path, counting up from 0 and never reused: a
 * retransmission is a new packet with a new number carrying the *frames* of
 * the lost one (RFC 9002 §2). So an ACK names exactly one transmission, RTT
 * samples are never ambiguous (no Karn's rule), and "sent after" is simply
 * "a larger number", which is what makes RACK's time order and the packet
 * threshold the same order here.
 *
 * The table is an array indexed by `pn - base`: numbers come from one space
 * in order, so a lookup is O(1), iterating a range visits only the packets
 * still in the table (never the numbers an ACK range spans), and the settled
 * front is cut off as it empties.
 */
import type { DeliveryStamp } from './delivery-rate.js';

/** Hands out packet numbers, 0, 1, 2 … */
export class PacketNumberSpace {
  #next = 0;

  /** The number the next packet gets (without taking it). */
  get next(): number {
    return this.#next;
  }

  /** The largest number handed out, or -1. */
  get largestSent(): number {
    return this.#next - 1;
  }

  /** Takes the next number. */
  take(): number {
    return this.#next++;
  }
}

/** One transmission as the sender remembers it. `F` is the caller's opaque frame handle. */
export interface SentPacket<F> {
  readonly pn: number;
  /** When it left (ms on the caller's clock). */
  readonly timeSent: number;
  /** Bytes on the wire, for bytes in flight and the congestion controller. */
  readonly size: number;
  /** Carries a frame other than ACK/padding: the peer will acknowledge it. */
  readonly ackEliciting: boolean;
  /** Counts toward bytes in flight (ack-eliciting or padding). */
  readonly inFlight: boolean;
  /** What it carried; handed back once, as acknowledged or as lost. */
  readonly frames: readonly F[];
  /** Declared lost and kept a while so a late ACK for it can be counted as spurious. */
  lost: boolean;
  /** When it was declared lost. */
  lostAt: number;
  /** The delivery state when it left, for delivery-rate samples (absent on packets not in flight). */
  readonly delivery?: DeliveryStamp | undefined;
  /** The Largest Acknowledged of the ACK frame it carried, or -1 for none (RFC 9000 §13.2.4). */
  readonly ackLargest: number;
}

const COMPACT_AT = 1024;

/** Packets sent and not yet acknowledged (and lost ones still remembered), by number. */
export class SentPacketTable<F> {
  #slots: (SentPacket<F> | undefined)[] = [];
  #base = 0;
  #head = 0;
  #count = 0;
  /** Bytes of in-flight packets not acknowledged nor declared lost. */
  bytesInFlight = 0;
  /** Ack-eliciting packets not acknowledged nor declared lost. */
  ackElicitingOutstanding = 0;

  /** Entries held (outstanding and remembered-lost). */
  get size(): number {
    return this.#count;
  }

  /** Adds a packet; its number must be above every number added before. */
  add(p: SentPacket<F>): void {
    const end = this.#base + this.#slots.length;
    if (p.pn < end) throw new RangeError(`sent packet ${p.pn} is not above ${end - 1}`);
    if (this.#count === 0) {
      // Empty: restart the array at this number instead of padding up to it.
      this.#slots = [];
      this.#base = p.pn;
      this.#head = 0;
    } else for (let n = end; n < p.pn; n++) this.#slots.push(undefined);
    this.#slots.push(p);
    this.#count++;
    if (!p.lost) this.#account(p, 1);
  }

  get(pn: number): SentPacket<F> | undefined {
    const i = pn - this.#base;
    return i >= this.#head && i < this.#slots.length ? this.#slots[i] : undefined;
  }

  /** Takes `pn` out of the table; returns it, or undefined when it was not there. */
  remove(pn: number): SentPacket<F> | undefined {
    const p = this.get(pn);
    if (p === undefined) return undefined;
    this.#slots[pn - this.#base] = undefined;
    this.#count--;
    if (!p.lost) this.#account(p, -1);
    this.#trim();
    return p;
  }

  /** Marks an outstanding packet lost (it stays, remembered, until removed). */
  markLost(p: SentPacket<F>, now: number): void {
    if (p.lost) return;
    p.lost = true;
    p.lostAt = now;
    this.#account(p, -1);
  }

  #account(p: SentPacket<F>, sign: 1 | -1): void {
    if (p.inFlight) this.bytesInFlight += sign * p.size;
    if (p.ackEliciting) this.ackElicitingOutstanding += sign;
  }

  #trim(): void {
    while (this.#head < this.#slots.length && this.#slots[this.#head] === undefined) this.#head++;
    if (this.#head > COMPACT_AT && this.#head * 2 > this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#base += this.#head;
      this.#head = 0;
    }
  }

  /** Entries with `lo <= pn <= hi`, ascending. Collected first, so the caller may remove while using them. */
  inRange(lo: number, hi: number): SentPacket<F>[] {
    const out: SentPacket<F>[] = [];
    const from = Math.max(this.#head, lo - this.#base);
    const to = Math.min(this.#slots.length - 1, hi - this.#base);
    for (let i = from; i <= to; i++) {
      const p = this.#slots[i];
      if (p !== undefined) out.push(p);
    }
    return out;
  }

  /** Every entry, ascending. */
  *[Symbol.iterator](): IterableIterator<SentPacket<F>> {
    for (let i = this.#head; i < this.#slots.length; i++) {
      const p = this.#slots[i];
      if (p !== undefined) yield p;
    }
  }
}
