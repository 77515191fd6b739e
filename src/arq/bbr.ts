/**
 * A BBR-style, model-based congestion controller (draft-cardwell-iccrg-bbr-
 * congestion-control; BBRv1's state machine with a BBRv2-style loss
 * ceiling). It paces at gain × the bottleneck bandwidth it measured and
 * bounds what is in flight at gain × BDP, so it neither fills the bottleneck
 * queue nor backs off because a packet was lost.
 *
 * - **Model**: bottleneck bandwidth is the max delivery rate over the last
 *   10 rounds (app-limited samples only raise it); min RTT is the smallest
 *   RTT sample of the last 10 s.
 * - **Random loss is not congestion**: a loss changes neither the pacing
 *   rate nor the window. Only a round that lost more than `lossThreshold`
 *   of its bytes (20 % by default, far above the random loss of a bad
 *   radio link) caps in-flight data at 0.7 × what that round had in flight
 *   (and ends Startup); the cap is then probed up again, by 1, 2, 4 …
 *   packets per clean round.
 *
 * ```
 *   startup ──(bw grew < 25 % for 3 rounds, or a lossy round)──▶ drain
 *   drain ──(in flight ≤ BDP)──▶ probe_bw (gains 1.25, 0.75, 1 × 6, one min RTT each)
 *   any ──(min RTT 10 s old)──▶ probe_rtt ──(4 packets for 200 ms and a round)──▶ probe_bw, or startup if the pipe was never full
 * ```
 */
import type { CongestionController, LostPacketInfo, RttView } from './congestion.js';
import { DEFAULT_DATAGRAM_BYTES } from './constants.js';
import type { RateSample } from './delivery-rate.js';

export type BbrState = 'startup' | 'drain' | 'probe_bw' | 'probe_rtt';

/** Options of a {@link Bbr} controller. */
export interface BbrInit {
  /** Bytes of a full datagram, the unit of the minimum window and allowances. @default DEFAULT_DATAGRAM_BYTES (1200) */
  datagramBytes?: number | undefined;
  /** Initial window in datagrams. @default 10 */
  initialWindowPackets?: number | undefined;
  /** Share of a round's bytes lost above which the round counts as congested. @default 0.2 */
  lossThreshold?: number | undefined;
  /** Picks ProbeBW's starting phase (flows sharing a link must not probe in step). @default Math.random */
  random?: (() => number) | undefined;
}

/** 2/ln 2: the smallest gain that doubles the sending rate every round. */
const HIGH_GAIN = 2 / Math.LN2;
const CWND_GAIN = 2;
const PROBE_BW_GAINS = [1.25, 0.75, 1, 1, 1, 1, 1, 1] as const;
const BW_WINDOW_ROUNDS = 10;
const MIN_RTT_WINDOW_MS = 10_000;
const PROBE_RTT_MS = 200;
const MIN_WINDOW_PACKETS = 4;
/** Startup ends when the bandwidth grew less than this factor for {@link FULL_BW_ROUNDS} rounds. */
const FULL_BW_GROWTH = 1.25;
const FULL_BW_ROUNDS = 3;
/** Datagrams of window beyond gain × BDP, for delayed ACKs. */
const ALLOWANCE_PACKETS = 3;
/** Rounds over which the largest ACK aggregation is remembered [Linux: 5 round trips, in two buckets]. */
const EXTRA_ACKED_ROUNDS = 10;
/** The window added for ACK aggregation stays under this many ms at the estimated bandwidth [Linux: 100 ms]. */
const EXTRA_ACKED_MAX_MS = 100;
/** The in-flight cap after a congested round, as a share of that round's in-flight peak [BBRv2's beta]. */
const LOSS_BETA = 0.7;
/** A round needs this many lost datagrams before its loss rate means anything. */
const MIN_LOSS_PACKETS = 3;
/**
 * In Startup, loss ends the ramp only with this many lost datagrams in the
 * round (BBRv2's full-loss count): early rounds are a few packets, and at
 * 10 % random loss three of ten lost is common luck, not a full pipe — the
 * ramp then stopped at a few Mbit/s and took seconds of ProbeBW to recover.
 */
const STARTUP_LOSS_PACKETS = 8;
/** A round's RTT above min RTT × this (+ the slack) means a queue built up behind the loss. */
const QUEUE_RTT_FACTOR = 1.25;
const QUEUE_RTT_SLACK_MS = 2;

/** The max of per-round values over the last `window` rounds. */
class RoundMaxFilter {
  #entries: { round: number; value: number }[] = [];
  constructor(readonly window: number) {}

  update(value: number, round: number): void {
    this.#entries = this.#entries.filter((e) => e.round > round - this.window);
    const last = this.#entries[this.#entries.length - 1];
    if (last?.round === round) last.value = Math.max(last.value, value);
    else this.#entries.push({ round, value });
  }

  get max(): number {
    let m = 0;
    for (const e of this.#entries) m = Math.max(m, e.value);
    return m;
  }
}

export class Bbr implements CongestionController {
  readonly datagramBytes: number;
  readonly lossThreshold: number;
  readonly #random: () => number;
  #state: BbrState = 'startup';
  #cwnd: number;
  #pacingRate = Infinity;
  #pacingGain = HIGH_GAIN;
  #cwndGain = HIGH_GAIN;
  readonly #bw = new RoundMaxFilter(BW_WINDOW_ROUNDS);
  #minRtt = Infinity;
  #minRttStamp = 0;
  #srtt: number | undefined;
  // Rounds: a round ends when a packet sent after it began is acknowledged.
  #round = 0;
  #nextRoundDelivered = 0;
  #filledPipe = false;
  #fullBw = 0;
  #fullBwRounds = 0;
  #cycleIndex = 0;
  #cycleStamp = 0;
  #lossInCycle = false;
  #priorCwnd = 0;
  #probeRttDoneAt: number | undefined;
  #probeRttRoundDone = false;
  // The loss ceiling.
  #roundLost = 0;
  #roundLostPackets = 0;
  #roundAcked = 0;
  #roundMaxInFlight = 0;
  #roundMaxRtt = 0;
  #inflightHi = Infinity;
  #hiGrowth = 1;
  // ACK aggregation: bytes acknowledged since the epoch began, beyond what the bandwidth explains.
  readonly #extraAcked = new RoundMaxFilter(EXTRA_ACKED_ROUNDS);
  #ackEpochStart = 0;
  #ackEpochAcked = 0;
  /** Rounds that lost more than the threshold (for status and tests). */
  congestedRounds = 0;

  constructor(init: BbrInit = {}) {
    this.datagramBytes = init.datagramBytes ?? DEFAULT_DATAGRAM_BYTES;
    this.lossThreshold = init.lossThreshold ?? 0.2;
    this.#random = init.random ?? Math.random;
    this.#cwnd = (init.initialWindowPackets ?? 10) * this.datagramBytes;
  }

  get state(): BbrState {
    return this.#state;
  }

  /** The bottleneck bandwidth estimate (bytes per second; 0 before the first sample). */
  get bandwidth(): number {
    return this.#bw.max;
  }

  /** The min RTT estimate (ms; Infinity before the first sample). */
  get minRtt(): number {
    return this.#minRtt;
  }

  get window(): number {
    return this.#cwnd;
  }

  /** What the window holds beyond gain × BDP for ACK aggregation, bytes (see #updateAckAggregation). */
  get ackAggregation(): number {
    return Math.min(this.#extraAcked.max, (this.#bw.max * EXTRA_ACKED_MAX_MS) / 1000);
  }

  canSend(bytesInFlight: number): boolean {
    return bytesInFlight < this.#cwnd;
  }

  pacingRate(): number {
    return this.#pacingRate;
  }

  onPacketSent(): void {}

  get #minWindow(): number {
    return MIN_WINDOW_PACKETS * this.datagramBytes;
  }

  /** gain × bandwidth × min RTT, or the initial window before there is a model. */
  #bdp(gain: number): number {
    const bw = this.#bw.max;
    if (bw === 0 || this.#minRtt === Infinity) return this.#cwnd;
    return (gain * bw * this.#minRtt) / 1000;
  }

  onAck(bytes: number, rtt: RttView, now: number, s?: RateSample): void {
    if (rtt.samples > 0) this.#srtt = rtt.smoothedRtt;
    if (s === undefined) return;
    this.#roundAcked += bytes;
    this.#roundMaxInFlight = Math.max(this.#roundMaxInFlight, s.priorInFlight);
    if (s.rtt > this.#roundMaxRtt) this.#roundMaxRtt = s.rtt;
    let roundStart = false;
    if (s.priorDelivered >= this.#nextRoundDelivered) {
      this.#nextRoundDelivered = s.totalDelivered;
      this.#round++;
      roundStart = true;
      this.#endRound();
    }
    if (s.deliveryRate > 0 && (!s.isAppLimited || s.deliveryRate >= this.#bw.max)) this.#bw.update(s.deliveryRate, this.#round);
    if (roundStart && !s.isAppLimited) this.#checkFullPipe();

    const minRttExpired = now > this.#minRttStamp + MIN_RTT_WINDOW_MS;
    if (s.rtt >= 0 && (s.rtt < this.#minRtt || minRttExpired)) {
      this.#minRtt = s.rtt;
      this.#minRttStamp = now;
    }

    if (this.#state === 'startup' && this.#filledPipe) this.#enter('drain', now);
    if (this.#state === 'drain' && s.bytesInFlight <= this.#bdp(1)) this.#enter('probe_bw', now);
    if (this.#state === 'probe_bw' && this.#phaseDone(s, now)) this.#advanceCycle(now);
    if (minRttExpired && this.#state !== 'probe_rtt') this.#enter('probe_rtt', now);
    if (this.#state === 'probe_rtt') this.#probeRtt(s, roundStart, now);

    this.#updateAckAggregation(bytes, now);
    this.#setPacingRate();
    this.#setCwnd(bytes);
  }

  /**
   * How much more than the bandwidth explains arrives acknowledged at once:
   * a receiver that reads a batch of datagrams per event-loop turn (or a
   * link that aggregates, like Wi-Fi) answers each batch with one ACK, and
   * the sender, held at 2 × BDP, then waits idle for the next batch. The
   * window gets the largest such excess of recent rounds on top (Linux
   * BBR's extra_acked; BBRv2 draft 4.6.4.3).
   */
  #updateAckAggregation(acked: number, now: number): void {
    const bw = this.#bw.max;
    if (bw === 0) return;
    let expected = (bw * (now - this.#ackEpochStart)) / 1000;
    // The epoch restarts once the ACKs fell back to the bandwidth's pace.
    if (this.#ackEpochAcked <= expected) {
      this.#ackEpochAcked = 0;
      this.#ackEpochStart = now;
      expected = 0;
    }
    this.#ackEpochAcked += acked;
    this.#extraAcked.update(Math.min(this.#ackEpochAcked - expected, this.#cwnd), this.#round);
  }

  onLoss(packets: readonly LostPacketInfo[]): void {
    for (const p of packets) {
      if (!p.inFlight) continue;
      this.#roundLost += p.size;
      this.#roundLostPackets++;
    }
    this.#lossInCycle = true;
  }

  onPersistentCongestion(): void {
    // Everything in flight for 3 PTOs was lost: start from the minimum window; the model stays and the window grows back to it in a few rounds.
    this.#priorCwnd = Math.max(this.#priorCwnd, this.#cwnd);
    this.#cwnd = this.#minWindow;
  }

  /** A round ended: judge its loss rate, then start counting the next. */
  #endRound(): void {
    const total = this.#roundLost + this.#roundAcked;
    const minLost = this.#state === 'startup' ? STARTUP_LOSS_PACKETS : MIN_LOSS_PACKETS;
    // Loss with no queue behind it is the link's, not congestion's (bursts on a radio link, a flaky
    // middlebox): a round counts as congested only when its RTT rose above the path's own.
    const queued = this.#minRtt === Infinity || this.#roundMaxRtt > this.#minRtt * QUEUE_RTT_FACTOR + QUEUE_RTT_SLACK_MS;
    if (queued && this.#roundLostPackets >= minLost && this.#roundLost > this.lossThreshold * total) {
      this.congestedRounds++;
      this.#inflightHi = Math.max(this.#minWindow, LOSS_BETA * this.#roundMaxInFlight);
      this.#hiGrowth = 1;
      if (this.#state === 'startup') this.#filledPipe = true;
    } else if (this.#inflightHi < Infinity && this.#roundMaxInFlight >= this.#inflightHi - this.datagramBytes) {
      // A clean round that used the cap: probe it up, faster each round (BBRv2's ProbeBW_UP).
      this.#inflightHi += this.#hiGrowth * this.datagramBytes;
      this.#hiGrowth = Math.min(this.#hiGrowth * 2, 1 << 20);
    }
    this.#roundLost = this.#roundLostPackets = this.#roundAcked = this.#roundMaxInFlight = this.#roundMaxRtt = 0;
  }

  #checkFullPipe(): void {
    if (this.#filledPipe) return;
    const bw = this.#bw.max;
    if (bw >= this.#fullBw * FULL_BW_GROWTH) {
      this.#fullBw = bw;
      this.#fullBwRounds = 0;
    } else if (++this.#fullBwRounds >= FULL_BW_ROUNDS) this.#filledPipe = true;
  }

  #enter(state: BbrState, now: number): void {
    this.#state = state;
    switch (state) {
      case 'startup':
        this.#pacingGain = this.#cwndGain = HIGH_GAIN;
        break;
      case 'drain':
        this.#pacingGain = 1 / HIGH_GAIN;
        this.#cwndGain = HIGH_GAIN;
        break;
      case 'probe_bw':
        // Any phase but the 0.75 one, at random.
        this.#cycleIndex = (2 + Math.floor(this.#random() * (PROBE_BW_GAINS.length - 1))) % PROBE_BW_GAINS.length;
        this.#cwndGain = CWND_GAIN;
        this.#startPhase(now);
        break;
      case 'probe_rtt':
        this.#priorCwnd = Math.max(this.#priorCwnd, this.#cwnd);
        this.#pacingGain = this.#cwndGain = 1;
        this.#probeRttDoneAt = undefined;
        break;
    }
  }

  #startPhase(now: number): void {
    this.#pacingGain = PROBE_BW_GAINS[this.#cycleIndex] as number;
    this.#cycleStamp = now;
    this.#lossInCycle = false;
  }

  /** The 1.25 phase lasts until in flight reached 1.25 × BDP (or loss); the 0.75 one until the queue drained; each at least a min RTT, except that draining may end early. */
  #phaseDone(s: RateSample, now: number): boolean {
    const long = now - this.#cycleStamp > this.#minRtt;
    if (this.#pacingGain > 1) return long && (this.#lossInCycle || s.priorInFlight >= this.#bdp(this.#pacingGain));
    if (this.#pacingGain < 1) return long || s.priorInFlight <= this.#bdp(1);
    return long;
  }

  #advanceCycle(now: number): void {
    this.#cycleIndex = (this.#cycleIndex + 1) % PROBE_BW_GAINS.length;
    this.#startPhase(now);
  }

  #probeRtt(s: RateSample, roundStart: boolean, now: number): void {
    if (this.#probeRttDoneAt === undefined) {
      if (s.bytesInFlight > this.#minWindow) return;
      this.#probeRttDoneAt = now + PROBE_RTT_MS;
      this.#probeRttRoundDone = false;
      this.#nextRoundDelivered = s.totalDelivered;
      return;
    }
    if (roundStart) this.#probeRttRoundDone = true;
    if (!this.#probeRttRoundDone || now < this.#probeRttDoneAt) return;
    this.#minRttStamp = now;
    this.#cwnd = Math.max(this.#cwnd, this.#priorCwnd);
    this.#priorCwnd = 0;
    this.#enter(this.#filledPipe ? 'probe_bw' : 'startup', now);
  }

  #setPacingRate(): void {
    const bw = this.#bw.max;
    if (bw === 0) {
      if (this.#srtt !== undefined && this.#srtt > 0) this.#pacingRate = (HIGH_GAIN * this.#cwnd * 1000) / this.#srtt;
      return;
    }
    const rate = this.#pacingGain * bw;
    // In Startup the rate only rises: an early sample below the initial guess must not slow the ramp.
    if (this.#filledPipe || !(rate < this.#pacingRate) || this.#pacingRate === Infinity) this.#pacingRate = rate;
  }

  #setCwnd(acked: number): void {
    const target = this.#bdp(this.#cwndGain) + this.ackAggregation + ALLOWANCE_PACKETS * this.datagramBytes;
    if (this.#filledPipe) this.#cwnd = Math.min(this.#cwnd + acked, target);
    else if (this.#cwnd < target || this.#bw.max === 0) this.#cwnd += acked;
    this.#cwnd = Math.max(Math.min(this.#cwnd, this.#inflightHi), this.#minWindow);
    if (this.#state === 'probe_rtt') this.#cwnd = Math.min(this.#cwnd, this.#minWindow);
  }
}
