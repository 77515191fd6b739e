/**
 * Fixed rate (`--cc fixed:RATE`, like hysteria's "Brutal"): the user says
 * what the path carries and the sender paces at that, whatever is lost,
 * raised by the measured loss (at most 1 / 0.8) so the *delivered* rate is
 * the one asked for. For paths where loss says nothing about congestion and
 * the user knows the bandwidth.
 *
 * Two limits keep it from becoming an amplifier when the rate is a lie
 * (hysteria #1230):
 * - `maxRate`: the server's cap on what a client may ask for (per user).
 * - **Giving up on hopeless sending**: the rate never exceeds
 *   `giveUpFactor` (1.5) × the best delivery rate measured over the last
 *   `windowMs` (1 s). At a rate the path carries that bound is above the
 *   rate and does nothing; at ten times the path it holds what is sent to
 *   1.5 × what arrives, and it rises 1.5× per window when more gets through.
 *   App-limited samples do not lower it, and before any sample only the
 *   window (2 × rate × RTT) bounds the first flight.
 */
import type { CongestionController, LostPacketInfo, RttView } from './congestion.js';
import { DEFAULT_DATAGRAM_BYTES, INITIAL_RTT_MS } from './constants.js';
import type { RateSample } from './delivery-rate.js';

/** Options of a {@link FixedRate} controller. */
export interface FixedRateInit {
  /** The rate asked for (bytes per second of delivered data). */
  rate: number;
  /** The server's cap on `rate` (bytes per second). @default Infinity */
  maxRate?: number | undefined;
  /** The send rate never exceeds this × the delivery rate measured. @default 1.5 */
  giveUpFactor?: number | undefined;
  /** How far back the delivery rate and loss are measured (ms). @default 1000 */
  windowMs?: number | undefined;
  /** Bytes of a full datagram. @default DEFAULT_DATAGRAM_BYTES (1200) */
  datagramBytes?: number | undefined;
}

/** Loss compensation stops here: never more than 1 / 0.8 = 1.25 × the rate asked for (Brutal's floor). */
const MIN_ACK_RATIO = 0.8;
/** Window over the RTT: room for the rate while ACKs are delayed or a little late. */
const CWND_GAIN = 2;
const MIN_WINDOW_PACKETS = 4;
const SLOTS = 4;

interface Slot {
  start: number;
  acked: number;
  lost: number;
  /** Best non-app-limited delivery rate sampled in the slot (bytes per second), 0 for none. */
  bestRate: number;
}

export class FixedRate implements CongestionController {
  /** The rate in force: the one asked for, capped by the server (bytes per second). */
  readonly targetRate: number;
  readonly giveUpFactor: number;
  readonly windowMs: number;
  readonly datagramBytes: number;
  #slots: Slot[] = [];
  #srtt = INITIAL_RTT_MS;
  #rate: number;
  /** ACKs that found the send rate held down by the delivery rate (for status and tests). */
  cappedAcks = 0;

  constructor(init: FixedRateInit) {
    if (!(init.rate > 0)) throw new RangeError(`fixed rate must be positive, got ${init.rate}`);
    const maxRate = init.maxRate ?? Infinity;
    if (!(maxRate > 0)) throw new RangeError(`fixed rate cap must be positive, got ${maxRate}`);
    this.targetRate = Math.min(init.rate, maxRate);
    this.giveUpFactor = init.giveUpFactor ?? 1.5;
    this.windowMs = init.windowMs ?? 1000;
    this.datagramBytes = init.datagramBytes ?? DEFAULT_DATAGRAM_BYTES;
    this.#rate = this.targetRate;
  }

  /** The send (pacing) rate now (bytes per second). */
  get sendRate(): number {
    return this.#rate;
  }

  get window(): number {
    return Math.max(MIN_WINDOW_PACKETS * this.datagramBytes, (CWND_GAIN * this.#rate * this.#srtt) / 1000);
  }

  canSend(bytesInFlight: number): boolean {
    return bytesInFlight < this.window;
  }

  pacingRate(): number {
    return this.#rate;
  }

  onPacketSent(): void {}

  #slot(now: number): Slot {
    const span = this.windowMs / SLOTS;
    let last = this.#slots[this.#slots.length - 1];
    if (last === undefined || now >= last.start + span) {
      last = { start: now, acked: 0, lost: 0, bestRate: 0 };
      this.#slots.push(last);
      while (this.#slots.length > SLOTS) this.#slots.shift();
    }
    return last;
  }

  onAck(bytes: number, rtt: RttView, now: number, s?: RateSample): void {
    if (rtt.samples > 0) this.#srtt = rtt.smoothedRtt;
    const slot = this.#slot(now);
    slot.acked += bytes;
    if (s !== undefined && !s.isAppLimited && s.deliveryRate > 0) slot.bestRate = Math.max(slot.bestRate, s.deliveryRate);
    this.#update(now);
  }

  onLoss(packets: readonly LostPacketInfo[], now: number): void {
    const slot = this.#slot(now);
    for (const p of packets) if (p.inFlight) slot.lost += p.size;
    this.#update(now);
  }

  onPersistentCongestion(): void {
    // Nothing arrived for 3 PTOs: the delivery-rate bound holds what is sent to what gets through, and the window to the rate.
  }

  #update(now: number): void {
    let acked = 0;
    let lost = 0;
    let best = 0;
    for (const s of this.#slots) {
      if (s.start <= now - this.windowMs) continue;
      acked += s.acked;
      lost += s.lost;
      best = Math.max(best, s.bestRate);
    }
    const ackRatio = acked + lost > 0 ? acked / (acked + lost) : 1;
    let rate = this.targetRate / Math.max(ackRatio, MIN_ACK_RATIO);
    if (best > 0 && best * this.giveUpFactor < rate) {
      rate = best * this.giveUpFactor;
      this.cappedAcks++;
    }
    this.#rate = rate;
  }
}
