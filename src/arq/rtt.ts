/**
 * Round-trip time estimate, RFC 9002 §5. One sample per ACK that newly
 * acknowledges the largest number in it (and something ack-eliciting): the
 * time from sending that packet to receiving the ACK.
 *
 * - `minRtt` is the smallest sample, ack delay *not* taken out: a peer that
 *   lies about its delay cannot push it below the path's real minimum.
 * - For `smoothedRtt`/`rttVar` the peer's reported ack delay is capped at
 *   its `maxAckDelayMs` and taken out of the sample, but never below `minRtt`.
 * - Before the first sample the estimate is `initialRttMs` (333 ms), with
 *   rttvar half of it, as the RFC says.
 */
import { GRANULARITY_MS, INITIAL_RTT_MS } from './constants.js';

export class RttEstimator {
  /** The most recent sample (ms), ack delay included. */
  latestRtt: number;
  /** Smallest sample seen (ms). */
  minRtt: number;
  /** Exponentially weighted mean, 1/8 gain (ms). */
  smoothedRtt: number;
  /** Mean deviation, 1/4 gain (ms). */
  rttVar: number;
  /** Samples taken. */
  samples = 0;
  /** When the first sample was taken (ms on the caller's clock), or undefined. */
  firstSampleAt: number | undefined;

  constructor(initialRttMs = INITIAL_RTT_MS) {
    this.latestRtt = initialRttMs;
    this.minRtt = initialRttMs;
    this.smoothedRtt = initialRttMs;
    this.rttVar = initialRttMs / 2;
  }

  /**
   * Takes one sample. `latestRtt` is now − send time of the largest newly
   * acknowledged packet; `ackDelayMs` is what the ACK frame reports, capped
   * at `maxAckDelayMs`.
   */
  update(latestRtt: number, ackDelayMs: number, maxAckDelayMs: number, now: number): void {
    const latest = Math.max(0, latestRtt);
    this.latestRtt = latest;
    if (this.samples++ === 0) {
      this.firstSampleAt = now;
      this.minRtt = latest;
      this.smoothedRtt = latest;
      this.rttVar = latest / 2;
      return;
    }
    this.minRtt = Math.min(this.minRtt, latest);
    const delay = Math.min(Math.max(0, ackDelayMs), maxAckDelayMs);
    const adjusted = latest >= this.minRtt + delay ? latest - delay : latest;
    this.rttVar = 0.75 * this.rttVar + 0.25 * Math.abs(this.smoothedRtt - adjusted);
    this.smoothedRtt = 0.875 * this.smoothedRtt + 0.125 * adjusted;
  }

  /** The probe timeout before backoff and without the peer's max ack delay: srtt + max(4·rttvar, granularity). */
  get ptoBase(): number {
    return this.smoothedRtt + Math.max(4 * this.rttVar, GRANULARITY_MS);
  }
}
