/**
 * The congestion-control seam. The loss detector calls it; a controller
 * never sees packets' frames, only sizes and times. BBR and CUBIC implement
 * this next (issue 17, item 3); {@link FixedWindow} is here so the loss
 * detector can be tested without one.
 *
 * Calls, in the order the loss detector makes them for one ACK:
 * `onAck` (bytes newly acknowledged, and the ACK's delivery-rate sample for
 * model-based controllers), then `onLoss` (packets the same ACK showed
 * lost), then `onPersistentCongestion` when those losses span several PTOs
 * with nothing delivered between.
 *
 * Implementations: `bbr.ts` (the default), `cubic.ts`, `fixed-rate.ts`.
 */
import type { RateSample } from './delivery-rate.js';
import type { RttEstimator } from './rtt.js';

/** What a controller may read of the RTT estimate. */
export type RttView = Readonly<Pick<RttEstimator, 'latestRtt' | 'minRtt' | 'smoothedRtt' | 'rttVar' | 'samples'>>;

/** A packet the loss detector gave up on. */
export interface LostPacketInfo {
  readonly pn: number;
  readonly size: number;
  readonly timeSent: number;
  readonly inFlight: boolean;
}

export interface CongestionController {
  /** An in-flight packet of `bytes` left at `now`. */
  onPacketSent(bytes: number, now: number): void;
  /**
   * One ACK newly acknowledged `bytes` of in-flight packets; `rtt` already
   * holds this ACK's sample, if it gave one. `sample` is its delivery-rate
   * sample (undefined when no acknowledged packet carried a stamp).
   */
  onAck(bytes: number, rtt: RttView, now: number, sample?: RateSample): void;
  /** One ACK (or the loss timer) declared these packets lost. */
  onLoss(packets: readonly LostPacketInfo[], now: number): void;
  /** Everything sent over more than `3 × PTO` was lost (RFC 9002 §7.6): collapse to the minimum window. */
  onPersistentCongestion(now: number): void;
  /** True when a packet may leave with `bytesInFlight` unacknowledged. */
  canSend(bytesInFlight: number): boolean;
  /** The congestion window (bytes). */
  readonly window: number;
  /** The rate packets should be paced at (bytes per second); Infinity for none. */
  pacingRate(): number;
}

/** Pacing at 5/4 of window per smoothed RTT, RFC 9002 §7.7's N = 1.25, so pacing never holds the window back. */
const PACING_GAIN = 1.25;

/**
 * A window that never moves: `window` bytes in flight at most, paced at
 * 1.25 × window / srtt. For tests and as a floor; it reacts to nothing, but
 * counts what it was told so tests can check the calls.
 */
export class FixedWindow implements CongestionController {
  readonly window: number;
  #srtt: number | undefined;
  /** Counters of the calls it received. */
  sentBytes = 0;
  ackedBytes = 0;
  lostPackets = 0;
  persistentCongestion = 0;

  constructor(windowBytes: number) {
    if (!(windowBytes > 0)) throw new RangeError(`window must be positive, got ${windowBytes}`);
    this.window = windowBytes;
  }

  onPacketSent(bytes: number): void {
    this.sentBytes += bytes;
  }

  onAck(bytes: number, rtt: RttView): void {
    this.ackedBytes += bytes;
    if (rtt.samples > 0) this.#srtt = rtt.smoothedRtt;
  }

  onLoss(packets: readonly LostPacketInfo[]): void {
    this.lostPackets += packets.length;
  }

  onPersistentCongestion(): void {
    this.persistentCongestion++;
  }

  canSend(bytesInFlight: number): boolean {
    return bytesInFlight < this.window;
  }

  pacingRate(): number {
    return this.#srtt === undefined || this.#srtt <= 0 ? Infinity : (PACING_GAIN * this.window * 1000) / this.#srtt;
  }
}
