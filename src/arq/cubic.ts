/**
 * CUBIC, RFC 9438: the loss-based controller for sharing a bottleneck fairly
 * with TCP flows (`--cc cubic`). Slow start doubles the window each round
 * until the first loss; a loss multiplies it by β = 0.7 (once per round:
 * losses of packets sent before the reduction belong to the same event);
 * after that the window follows W(t) = C·(t − K)³ + W_max, back to the
 * window of the last loss after K seconds and past it, slowly at first;
 * never below what Reno would have (the Reno-friendly estimate, §4.3).
 *
 * Window units are bytes; the cubic is evaluated in datagrams and seconds,
 * as the RFC writes it. The window does not grow while the sender uses
 * less than half of it (application-limited, §5.8).
 */
import type { CongestionController, LostPacketInfo, RttView } from './congestion.js';
import { DEFAULT_DATAGRAM_BYTES } from './constants.js';
import type { RateSample } from './delivery-rate.js';

/** Options of a {@link Cubic} controller. */
export interface CubicInit {
  /** Bytes of a full datagram, the window's unit. @default DEFAULT_DATAGRAM_BYTES (1200) */
  datagramBytes?: number | undefined;
  /** Initial window in datagrams. @default 10 */
  initialWindowPackets?: number | undefined;
}

const BETA = 0.7;
/** The cubic's scale, datagrams per second³ [C]. */
const C = 0.4;
/** Reno-friendly growth per round in datagrams, matching Reno's average rate at β = 0.7 [α_cubic]. */
const ALPHA = (3 * (1 - BETA)) / (1 + BETA);
const MIN_WINDOW_PACKETS = 2;
/** Pacing gain over window / srtt: ahead of the window in slow start, a little ahead after (Linux's 200 % and 120 %). */
const SLOW_START_PACING = 2;
const AVOIDANCE_PACING = 1.2;

export class Cubic implements CongestionController {
  readonly datagramBytes: number;
  #cwnd: number;
  #ssthresh = Infinity;
  /** Window at the last congestion event (bytes). */
  #wMax = 0;
  /** Seconds from the epoch start until the cubic is back at W_max. */
  #k = 0;
  #epochStart: number | undefined;
  /** The Reno-friendly window estimate (bytes). */
  #wEst = 0;
  /** When the last reduction happened: losses of packets sent before belong to it. */
  #recoveryStart: number | undefined;
  #srtt: number | undefined;
  /** Congestion events (window reductions) so far. */
  reductions = 0;

  constructor(init: CubicInit = {}) {
    this.datagramBytes = init.datagramBytes ?? DEFAULT_DATAGRAM_BYTES;
    this.#cwnd = (init.initialWindowPackets ?? 10) * this.datagramBytes;
  }

  get window(): number {
    return this.#cwnd;
  }

  /** Slow start threshold (bytes; Infinity until the first loss). */
  get ssthresh(): number {
    return this.#ssthresh;
  }

  canSend(bytesInFlight: number): boolean {
    return bytesInFlight < this.#cwnd;
  }

  pacingRate(): number {
    if (this.#srtt === undefined || this.#srtt <= 0) return Infinity;
    const gain = this.#cwnd < this.#ssthresh ? SLOW_START_PACING : AVOIDANCE_PACING;
    return (gain * this.#cwnd * 1000) / this.#srtt;
  }

  onPacketSent(): void {}

  get #minWindow(): number {
    return MIN_WINDOW_PACKETS * this.datagramBytes;
  }

  onAck(bytes: number, rtt: RttView, now: number, s?: RateSample): void {
    if (rtt.samples > 0) this.#srtt = rtt.smoothedRtt;
    if (bytes === 0) return;
    // Acknowledgements of packets sent before the last reduction do not grow the window (RFC 9002 §7.3.2).
    if (s !== undefined && this.#recoveryStart !== undefined && now - s.rtt <= this.#recoveryStart) return;
    if (s !== undefined && s.priorInFlight < this.#cwnd / 2) return;
    if (this.#cwnd < this.#ssthresh) {
      this.#cwnd += bytes;
      return;
    }
    const mss = this.datagramBytes;
    if (this.#epochStart === undefined) {
      this.#epochStart = now;
      if (this.#cwnd < this.#wMax) this.#k = Math.cbrt((this.#wMax - this.#cwnd) / mss / C);
      else {
        this.#k = 0;
        this.#wMax = this.#cwnd;
      }
      this.#wEst = this.#cwnd;
    }
    const t = (now - this.#epochStart) / 1000;
    const rttS = (this.#srtt ?? 0) / 1000;
    const cubicAt = (x: number): number => this.#wMax + C * (x - this.#k) ** 3 * mss;
    this.#wEst += (ALPHA * mss * bytes) / this.#cwnd;
    if (cubicAt(t) < this.#wEst) {
      this.#cwnd = this.#wEst;
      return;
    }
    // Aim at where the cubic will be one RTT from now, at most 1.5 × the window (§4.2).
    const target = Math.min(Math.max(cubicAt(t + rttS), this.#cwnd), 1.5 * this.#cwnd);
    this.#cwnd += ((target - this.#cwnd) * bytes) / this.#cwnd;
  }

  onLoss(packets: readonly LostPacketInfo[], now: number): void {
    let newest = -Infinity;
    for (const p of packets) if (p.inFlight) newest = Math.max(newest, p.timeSent);
    if (newest === -Infinity || (this.#recoveryStart !== undefined && newest <= this.#recoveryStart)) return;
    this.reductions++;
    this.#recoveryStart = now;
    // Fast convergence (§4.7): a flow whose window shrank since the last loss lets the newcomer have more.
    this.#wMax = this.#cwnd < this.#wMax ? (this.#cwnd * (1 + BETA)) / 2 : this.#cwnd;
    this.#cwnd = this.#ssthresh = Math.max(this.#cwnd * BETA, this.#minWindow);
    this.#epochStart = undefined;
  }

  onPersistentCongestion(now: number): void {
    this.#cwnd = this.#minWindow;
    this.#recoveryStart = now;
    this.#epochStart = undefined;
  }
}
