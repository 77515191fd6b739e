/**
 * The send side of reliability: numbers packets, remembers them, reads
 * ACKs, decides what is lost (RFC 9002 §6, RACK-TLP of RFC 8985) and when to
 * probe. Sans-IO: every call takes `now`; the caller arms one timer at
 * {@link LossDetector.timerDeadline} and calls {@link LossDetector.onTimeout}.
 *
 * - **Lost** when three later packets are acknowledged (packet threshold) or
 *   when it is 9/8 × max(srtt, latest RTT) older than an acknowledged later
 *   one (time threshold: RACK's rule; with numbers never reused "sent
 *   later" is "numbered higher"). Lost packets hand their frames back once;
 *   the caller sends those frames again in new packets.
 * - **Probe timeout** instead of an RTO: when nothing is acknowledged for
 *   srtt + 4·rttvar + max_ack_delay after the last ack-eliciting packet, the
 *   caller is told to send 1 (first PTO: a tail-loss probe) or 2 probe
 *   packets; nothing is declared lost by the timeout itself. Each PTO in a
 *   row doubles the next; an ACK that acknowledges something new resets it.
 * - **Spurious loss**: a packet declared lost is remembered for a while
 *   (3 PTOs, at most {@link MAX_REMEMBERED_LOST}); an ACK for it then counts
 *   as spurious and hands nothing back a second time.
 * - **Bad ACKs close nothing**: numbers never sent are counted and ignored,
 *   duplicate and old ACKs change nothing.
 * - **Delivery rate and pacing** ride along: every in-flight packet is
 *   stamped for {@link DeliveryRate} and each ACK hands the controller its
 *   rate sample; every send passes the {@link Pacer}, and the caller waits
 *   for {@link LossDetector.nextSendTime} before sending.
 */
import type { AckFrame } from './ack-frame.js';
import type { CongestionController } from './congestion.js';
import {
  GRANULARITY_MS,
  MAX_ACK_DELAY_MS,
  MAX_PTO_BACKOFF_EXPONENT,
  MAX_REORDER_THRESHOLD,
  MAX_TIME_THRESHOLD,
  MAX_PTO_MS,
  MAX_REMEMBERED_LOST,
  PACKET_THRESHOLD,
  PERSISTENT_CONGESTION_THRESHOLD,
  TIME_THRESHOLD,
} from './constants.js';
import { DeliveryRate } from './delivery-rate.js';
import { PacketNumberSpace, type SentPacket, SentPacketTable } from './packet-numbers.js';
import { Pacer, type PacerInit } from './pacer.js';
import { RttEstimator } from './rtt.js';

/** Options of a {@link LossDetector}. */
export interface LossDetectorInit {
  /** The congestion controller consulted and told of every event. */
  cc: CongestionController;
  /** The peer's promise on how long it holds an ACK. @default MAX_ACK_DELAY_MS (25) */
  peerMaxAckDelayMs?: number | undefined;
  /** RTT assumed before the first sample. @default INITIAL_RTT_MS (333) */
  initialRttMs?: number | undefined;
  /** Burst sizes of the pacer. @default {} */
  pacer?: PacerInit | undefined;
}

/** What one ACK did. Every packet appears in `acked` or `lost` at most once over its life. */
export interface AckOutcome<F> {
  /** Newly acknowledged: their frames are delivered. */
  readonly acked: readonly SentPacket<F>[];
  /** Newly declared lost: send their frames again. */
  readonly lost: readonly SentPacket<F>[];
  /** Declared lost earlier and acknowledged now (their frames were already handed back). */
  readonly spurious: readonly SentPacket<F>[];
  /** Packet numbers in the ACK that were never sent. */
  readonly unknown: number;
}

/** What a timer expiry asks for. */
export interface TimeoutOutcome<F> {
  /** Declared lost by the time threshold. */
  readonly lost: readonly SentPacket<F>[];
  /** Probe packets to send now (ack-eliciting; new data if any, else a retransmission or a PING): 0, 1 or 2. */
  readonly probes: number;
}

/** What the caller says about a packet it sends. */
export interface PacketToSend<F> {
  size: number;
  ackEliciting: boolean;
  /** @default ackEliciting */
  inFlight?: boolean | undefined;
  frames: readonly F[];
  /** The Largest Acknowledged of the ACK frame it carries. @default -1 (none) */
  ackLargest?: number | undefined;
}

const NOTHING = Object.freeze([]) as readonly never[];

export class LossDetector<F> {
  readonly rtt: RttEstimator;
  readonly cc: CongestionController;
  readonly peerMaxAckDelayMs: number;
  readonly delivery = new DeliveryRate();
  readonly pacer: Pacer;
  readonly #space = new PacketNumberSpace();
  readonly #table = new SentPacketTable<F>();
  /** Numbers of packets declared lost and still remembered, oldest first. */
  #remembered: number[] = [];
  #largestAcked = -1;
  #lossTime: number | undefined;
  #ptoCount = 0;
  /**
   * Packets acknowledged after one before it counts as lost: kPacketThreshold
   * at first, raised to the reordering a spurious loss showed (Linux TCP's
   * tp->reordering; RFC 8985 §6.2 adapts its window on the same signal).
   * A path that reorders does not then resend what was only late.
   */
  #packetThreshold = PACKET_THRESHOLD;
  /** The time threshold, kTimeThreshold at first, widened by 1/8 RTT per spurious loss up to 2 RTTs (RACK's reo_wnd, §6.2). */
  #timeThreshold = TIME_THRESHOLD;
  #lastAckElicitingAt: number | undefined;
  #probesOwed = 0;

  // Counters, plain fields for status and metrics (read, never reset).
  /** Packets sent. */
  sent = 0;
  /** Packets acknowledged (spurious ones not included). */
  acked = 0;
  /** Packets declared lost (including ones later found spurious). */
  lost = 0;
  /** Packets declared lost and then acknowledged. */
  spurious = 0;
  /** Probe timeouts that fired. */
  probeTimeouts = 0;
  /** Probe packets sent (ack-eliciting packets sent while a PTO asked for probes). */
  probesSent = 0;
  /** ACK frames that named a packet number never sent. */
  unknownAcks = 0;
  /** ACK frames processed. */
  acksReceived = 0;

  constructor(init: LossDetectorInit) {
    this.cc = init.cc;
    this.peerMaxAckDelayMs = init.peerMaxAckDelayMs ?? MAX_ACK_DELAY_MS;
    this.rtt = new RttEstimator(init.initialRttMs);
    this.pacer = new Pacer(init.pacer);
  }

  /** Bytes in flight: sent, in-flight, neither acknowledged nor declared lost. */
  get bytesInFlight(): number {
    return this.#table.bytesInFlight;
  }

  /** Probe timeouts in a row since the last ACK that acknowledged something new. */
  /** The packet reordering threshold now (see #packetThreshold). */
  get packetThreshold(): number {
    return this.#packetThreshold;
  }

  get ptoCount(): number {
    return this.#ptoCount;
  }

  /** Probe packets the last PTO asked for and not yet sent. */
  get probesOwed(): number {
    return this.#probesOwed;
  }

  /** The largest packet number the peer acknowledged, or -1. */
  get largestAcked(): number {
    return this.#largestAcked;
  }

  /** The number the next packet will get. */
  get nextPacketNumber(): number {
    return this.#space.next;
  }

  /** True when a packet may leave now: the congestion window has room, or a probe is owed. */
  canSend(): boolean {
    return this.#probesOwed > 0 || this.cc.canSend(this.#table.bytesInFlight);
  }

  /** When a packet of `size` bytes may leave as far as pacing goes (ms; `now` or later). Probes need not wait. */
  nextSendTime(size: number, now: number): number {
    return this.pacer.nextSendTime(size, this.cc.pacingRate(), now);
  }

  /** The caller has nothing to send though the window has room: rate samples until this flight is delivered are app-limited. */
  onAppLimited(): void {
    this.delivery.onAppLimited(this.#table.bytesInFlight);
  }

  /** Records a packet the caller is sending; returns it with its number (put `pn` in the header). */
  onPacketSent(p: PacketToSend<F>, now: number): SentPacket<F> {
    const inFlight = p.inFlight ?? p.ackEliciting;
    const delivery = inFlight ? this.delivery.onPacketSent(now, this.#table.bytesInFlight) : undefined;
    const sent: SentPacket<F> = { pn: this.#space.take(), timeSent: now, size: p.size, ackEliciting: p.ackEliciting, inFlight, frames: p.frames, lost: false, lostAt: 0, delivery, ackLargest: p.ackLargest ?? -1 };
    this.#table.add(sent);
    this.sent++;
    // Only what is in flight is paced (RFC 9002 §7.7 paces what the window
    // governs): ACK-only packets leave at once and must not spend the budget —
    // a receiver's own flow is small, so its pacing rate is low, and a burst
    // of ACKs would drive the bucket seconds negative and hold back the
    // record carrying its window update (the sender then sat idle 1-2 s).
    if (inFlight) {
      this.pacer.onPacketSent(p.size, this.cc.pacingRate(), now);
      this.cc.onPacketSent(p.size, now);
    }
    if (p.ackEliciting) {
      this.#lastAckElicitingAt = now;
      if (this.#probesOwed > 0) {
        this.#probesOwed--;
        this.probesSent++;
      }
    }
    return sent;
  }

  /** Processes one decoded ACK frame (RFC 9002 §A.7). Never throws for its content. */
  onAck(frame: AckFrame, now: number): AckOutcome<F> {
    this.acksReceived++;
    const largestSent = this.#space.largestSent;
    const priorInFlight = this.#table.bytesInFlight;
    let unknown = 0;
    const acked: SentPacket<F>[] = [];
    const spurious: SentPacket<F>[] = [];
    for (const r of frame.ranges) {
      if (r.hi > largestSent) unknown += r.hi - Math.max(r.lo, largestSent + 1) + 1;
      for (const p of this.#table.inRange(r.lo, Math.min(r.hi, largestSent))) {
        this.#table.remove(p.pn);
        (p.lost ? spurious : acked).push(p);
      }
    }
    if (unknown > 0) this.unknownAcks++;
    this.spurious += spurious.length;
    for (const p of spurious) this.#packetThreshold = Math.min(MAX_REORDER_THRESHOLD, Math.max(this.#packetThreshold, this.#largestAcked - p.pn + 1));
    if (spurious.length > 0) this.#timeThreshold = Math.min(MAX_TIME_THRESHOLD, this.#timeThreshold + 1 / 8);
    if (acked.length === 0) return { acked: NOTHING, lost: NOTHING, spurious, unknown };
    acked.sort((a, b) => a.pn - b.pn);

    const newest = acked[acked.length - 1] as SentPacket<F>;
    this.#largestAcked = Math.max(this.#largestAcked, newest.pn);
    if (newest.pn === frame.largest && acked.some((p) => p.ackEliciting)) {
      this.rtt.update(now - newest.timeSent, frame.ackDelayMs, this.peerMaxAckDelayMs, now);
    }
    this.acked += acked.length;
    let bytes = 0;
    for (const p of acked) if (p.inFlight) bytes += p.size;
    // Spurious losses were delivered too: they count in the delivery rate, not in the window.
    for (const p of [...spurious, ...acked]) if (p.inFlight) this.delivery.onPacketAcked(p, now);
    const minRtt = this.rtt.samples > 0 ? this.rtt.minRtt : 0;
    this.cc.onAck(bytes, this.rtt, now, this.delivery.takeSample(minRtt, priorInFlight, this.#table.bytesInFlight));

    const lost = this.#detectLost(now);
    this.#ptoCount = 0;
    this.#probesOwed = 0;
    this.#forgetOldLost(now);
    return { acked, lost, spurious, unknown };
  }

  /** When the caller's timer should fire next (ms), or undefined when none is needed. */
  get timerDeadline(): number | undefined {
    if (this.#lossTime !== undefined) return this.#lossTime;
    if (this.#table.ackElicitingOutstanding === 0 || this.#lastAckElicitingAt === undefined) return undefined;
    return this.#lastAckElicitingAt + this.probeTimeout();
  }

  /** The current probe timeout, backoff included (ms). */
  probeTimeout(): number {
    const base = this.rtt.ptoBase + this.peerMaxAckDelayMs;
    return Math.min(base * 2 ** Math.min(this.#ptoCount, MAX_PTO_BACKOFF_EXPONENT), MAX_PTO_MS);
  }

  /** The timer fired (early or spurious calls are harmless and do nothing). */
  onTimeout(now: number): TimeoutOutcome<F> {
    const deadline = this.timerDeadline;
    if (deadline === undefined || now < deadline) return { lost: NOTHING, probes: 0 };
    if (this.#lossTime !== undefined) {
      const lost = this.#detectLost(now);
      this.#forgetOldLost(now);
      return { lost, probes: 0 };
    }
    this.#ptoCount++;
    this.probeTimeouts++;
    this.#probesOwed = this.#ptoCount === 1 ? 1 : 2;
    return { lost: NOTHING, probes: this.#probesOwed };
  }

  /** RFC 9002 §A.10, DetectAndRemoveLostPackets; also arms or clears the loss time. */
  #detectLost(now: number): SentPacket<F>[] {
    this.#lossTime = undefined;
    const lossDelay = Math.max(this.#timeThreshold * Math.max(this.rtt.latestRtt, this.rtt.smoothedRtt), GRANULARITY_MS);
    const lost: SentPacket<F>[] = [];
    for (const p of this.#table.inRange(0, this.#largestAcked - 1)) {
      if (p.lost) continue;
      // One expression for both the test and the timer: `timeSent <= now - delay` and
      // `timeSent + delay` can disagree in floating point, and the timer would then
      // fire for ever without the packet ever counting as lost.
      const at = p.timeSent + lossDelay;
      if (at <= now || this.#largestAcked >= p.pn + this.#packetThreshold) {
        this.#table.markLost(p, now);
        this.#remembered.push(p.pn);
        lost.push(p);
      } else this.#lossTime = this.#lossTime === undefined ? at : Math.min(this.#lossTime, at);
    }
    if (lost.length === 0) return lost;
    this.lost += lost.length;
    this.cc.onLoss(lost, now);
    if (this.#persistentCongestion(lost)) this.cc.onPersistentCongestion(now);
    return lost;
  }

  /**
   * RFC 9002 §7.6: a run of consecutively numbered lost packets (so nothing
   * between them was acknowledged) whose ack-eliciting ends were sent more
   * than 3 PTOs apart, all sent after the first RTT sample. Only this
   * batch's runs are looked at, which can miss a run split over two ACKs:
   * the controller then reacts later, never wrongly.
   */
  #persistentCongestion(lost: readonly SentPacket<F>[]): boolean {
    const first = this.rtt.firstSampleAt;
    if (first === undefined) return false;
    const duration = (this.rtt.ptoBase + this.peerMaxAckDelayMs) * PERSISTENT_CONGESTION_THRESHOLD;
    let start: SentPacket<F> | undefined;
    let prev = -2;
    for (const p of lost) {
      if (p.pn !== prev + 1) start = undefined;
      prev = p.pn;
      if (!p.ackEliciting || p.timeSent <= first) continue;
      start ??= p;
      if (p.timeSent - start.timeSent > duration) return true;
    }
    return false;
  }

  /** Forgets lost packets remembered for more than 3 PTOs, or beyond the cap. */
  #forgetOldLost(now: number): void {
    const keepFor = PERSISTENT_CONGESTION_THRESHOLD * this.probeTimeout();
    let i = 0;
    for (; i < this.#remembered.length; i++) {
      const p = this.#table.get(this.#remembered[i] as number);
      if (p !== undefined && p.lost && this.#remembered.length - i <= MAX_REMEMBERED_LOST && now - p.lostAt <= keepFor) break;
      if (p?.lost) this.#table.remove(p.pn);
    }
    if (i > 0) this.#remembered = this.#remembered.slice(i);
  }
}
