/**
 * Pacing, always on (RFC 9002 §7.7): a token bucket in time that spreads a
 * window's packets over the RTT instead of sending them back to back, so a
 * flight never lands on the bottleneck queue as one burst. Sans-IO: the
 * caller asks {@link Pacer.nextSendTime} when a packet may leave and arms a
 * timer for it, then reports the send.
 *
 * The bucket fills at the controller's pacing rate and holds at most
 * max(`burstBytes`, rate × `burstMs`): after idle, that much leaves at once
 * (10 packets by default, the initial window), then packets are spaced by
 * size / rate. A packet that leaves early anyway (a probe the PTO owed)
 * drives the bucket negative, so the long-run rate still holds.
 */
import { DEFAULT_DATAGRAM_BYTES, PACER_BURST_MS, PACER_BURST_PACKETS } from './constants.js';

/** Options of a {@link Pacer}. */
export interface PacerInit {
  /** Smallest burst allowed after idle (bytes). @default PACER_BURST_PACKETS × DEFAULT_DATAGRAM_BYTES (12000) */
  burstBytes?: number | undefined;
  /** The burst grows with the rate to this many ms of sending. @default PACER_BURST_MS (2) */
  burstMs?: number | undefined;
}

export class Pacer {
  readonly burstBytes: number;
  readonly burstMs: number;
  #tokens: number;
  #last: number | undefined;

  constructor(init: PacerInit = {}) {
    this.burstBytes = init.burstBytes ?? PACER_BURST_PACKETS * DEFAULT_DATAGRAM_BYTES;
    this.burstMs = init.burstMs ?? PACER_BURST_MS;
    this.#tokens = this.burstBytes;
  }

  /** The bucket's size at `rate` (bytes per second): unbounded when the rate is. */
  capacity(rate: number): number {
    return rate < Infinity ? Math.max(this.burstBytes, (rate * this.burstMs) / 1000) : Infinity;
  }

  /** Tokens (bytes) in the bucket at `now`, at `rate`. */
  #level(rate: number, now: number): number {
    if (this.#last === undefined || !(rate < Infinity)) return this.capacity(rate);
    return Math.min(this.capacity(rate), this.#tokens + (rate * Math.max(0, now - this.#last)) / 1000);
  }

  /**
   * When a packet of `bytes` may leave, at pacing `rate` (bytes per second;
   * Infinity for unpaced): `now` when the bucket holds enough, else the time
   * it will (ms).
   */
  nextSendTime(bytes: number, rate: number, now: number): number {
    if (!(rate < Infinity)) return now;
    if (!(rate > 0)) return Infinity;
    const tokens = this.#level(rate, now);
    return tokens >= bytes ? now : now + ((bytes - tokens) * 1000) / rate;
  }

  /** A packet of `bytes` left at `now`; `rate` is the pacing rate it was sent under. */
  onPacketSent(bytes: number, rate: number, now: number): void {
    this.#tokens = this.#level(rate, now) - bytes;
    this.#last = now;
  }
}
