/**
 * A simulated bottleneck for congestion-control tests, sans sockets and
 * sans sleeps: flows of a LossDetector + AckTracker each, sharing one
 * drop-tail queue served at `rate`, then random loss (seeded), then half the
 * base RTT to the receiver; ACKs come back in the other half, with their own
 * random loss and no rate limit. Time is a ManualClock moved from event to
 * event (a binary heap), so 20 simulated seconds take well under a second.
 *
 * Each sender always has data (a bulk transfer): every packet carries one
 * new frame, or a frame whose packet was lost. Goodput counts frames the
 * receiver got for the first time, so retransmissions are not counted twice.
 */
import { ManualClock } from '../../src/core/clock.js';
import { AckTracker } from '../../src/arq/ack-tracker.js';
import type { AckFrame } from '../../src/arq/ack-frame.js';
import type { CongestionController } from '../../src/arq/congestion.js';
import { LossDetector } from '../../src/arq/loss-detection.js';

/** mulberry32: small, seeded, good enough to drop packets. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface LinkSpec {
  /** Bottleneck rate, bytes per second. */
  rate: number;
  /** Propagation RTT without queueing, ms. */
  baseRttMs: number;
  /** Drop-tail queue size, bytes. */
  bufferBytes: number;
  /** Random loss of data packets after the bottleneck (they used its capacity), 0–1. */
  loss: number;
  /** Random loss of ACKs. @default loss */
  ackLoss?: number;
  /**
   * The receiver acknowledges only on ticks this far apart (ms), what
   * arrived since in one ACK: an event loop that reads a batch of
   * datagrams per turn, as on a busy host. @default 0 (every packet, at once)
   */
  ackBatchMs?: number;
  /** The receiver's ACK decimation (AckTracker's bulkAckThreshold). @default none */
  bulkAckThreshold?: number;
  /**
   * Burst loss instead of `loss`, both ways: Gilbert-Elliott per packet, every
   * packet lost in the bad state, P(good→bad) `p` and P(bad→good) `r`
   * (the udp bench's burst cell: 0.0625 and 0.25, 20 % lost).
   */
  burst?: { p: number; r: number };
  seed: number;
}

export interface FlowStats {
  /** Bytes of frames first received within the measured span. */
  goodputBytes: number;
  /** Bytes of distinct frames the receiver got (whole run). */
  usefulBytes: number;
  /** Bytes the sender put on the wire (whole run). */
  sentBytes: number;
  /** Bytes of packets that reached the receiver (whole run, retransmissions included). */
  arrivedBytes: number;
  /** RTT samples taken within the measured span (ms). */
  rtts: number[];
  /** Goodput within the measured span, bytes per second. */
  goodput: number;
  detector: LossDetector<number>;
}

export const PACKET = 1200;

interface Event {
  at: number;
  seq: number;
  fn: () => void;
}

/** A min-heap of events by time, ties in insertion order. */
class Events {
  #h: Event[] = [];
  #seq = 0;
  get size(): number {
    return this.#h.length;
  }
  push(at: number, fn: () => void): void {
    const h = this.#h;
    h.push({ at, seq: this.#seq++, fn });
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!less(h[i] as Event, h[p] as Event)) break;
      [h[i], h[p]] = [h[p] as Event, h[i] as Event];
      i = p;
    }
  }
  pop(): Event | undefined {
    const h = this.#h;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l] as Event, h[m] as Event)) m = l;
        if (r < h.length && less(h[r] as Event, h[m] as Event)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as Event, h[i] as Event];
        i = m;
      }
    }
    return top;
  }
}
const less = (a: Event, b: Event): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq);

/** What a run does besides the link. */
export interface RunOptions {
  /** When each flow starts (ms), by index. @default 0 for all */
  startsMs?: readonly number[];
  /** Called after every ACK a flow processes, with the flow's index and the time. */
  onAck?: (flow: number, now: number) => void;
}

/**
 * Runs `ccs` (one flow each) for `durationMs`; goodput and RTTs are
 * measured from `measureFromMs`.
 */
export function runBottleneck(link: LinkSpec, ccs: readonly CongestionController[], durationMs: number, measureFromMs: number, opts: RunOptions = {}): FlowStats[] {
  const rnd = prng(link.seed);
  const clock = new ManualClock(0);
  const events = new Events();
  const oneWay = link.baseRttMs / 2;
  const ackLoss = link.ackLoss ?? link.loss;
  let busyUntil = 0;
  // Burst state per direction (0: data, 1: ACKs).
  const bad = [false, false];
  const lose = (dir: 0 | 1, p: number): boolean => {
    const b = link.burst;
    if (b === undefined) return rnd() < p;
    bad[dir] = bad[dir] ? rnd() >= b.r : rnd() < b.p;
    return bad[dir] as boolean;
  };

  const flows = ccs.map((cc, i) => {
    const d = new LossDetector<number>({ cc });
    const rx = new AckTracker({ bulkAckThreshold: link.bulkAckThreshold });
    const stats: FlowStats = { goodputBytes: 0, usefulBytes: 0, sentBytes: 0, arrivedBytes: 0, rtts: [], goodput: 0, detector: d };
    const received = new Uint8Array(1 << 20);
    const retransmit: number[] = [];
    let nextFrame = 0;
    let pumpAt = Infinity;
    let lossTimerAt = Infinity;
    let ackTimerAt = Infinity;
    let batchAt = Infinity;
    let rttSamples = 0;

    const arrive = (pn: number, frame: number): void => {
      const now = clock.now();
      stats.arrivedBytes += PACKET;
      if (rx.onPacket(pn, true, now) && received[frame] === 0) {
        received[frame] = 1;
        stats.usefulBytes += PACKET;
        if (now >= measureFromMs) stats.goodputBytes += PACKET;
      }
      const batch = link.ackBatchMs ?? 0;
      if (batch <= 0) return maybeAck();
      const tick = (Math.floor(now / batch) + 1) * batch;
      if (tick < batchAt) {
        batchAt = tick;
        events.push(tick, () => {
          batchAt = Infinity;
          maybeAck();
        });
      }
    };
    const maybeAck = (): void => {
      const now = clock.now();
      if (rx.ackDue(now)) {
        const ack = rx.takeAck(now);
        if (ack !== undefined && !lose(1, ackLoss)) events.push(now + oneWay, () => onAck(ack));
      }
      const due = rx.ackDeadline;
      if (due !== undefined && due < ackTimerAt) {
        ackTimerAt = due;
        events.push(due, () => {
          ackTimerAt = Infinity;
          maybeAck();
        });
      }
    };
    const onAck = (ack: AckFrame): void => {
      const now = clock.now();
      const out = d.onAck(ack, now);
      for (const p of out.lost) retransmit.push(...p.frames);
      if (d.rtt.samples > rttSamples) {
        rttSamples = d.rtt.samples;
        if (now >= measureFromMs) stats.rtts.push(d.rtt.latestRtt);
      }
      opts.onAck?.(i, now);
      pump();
    };
    const armLossTimer = (): void => {
      const due = d.timerDeadline;
      if (due === undefined || due === lossTimerAt) return;
      lossTimerAt = due;
      events.push(due, () => {
        if (lossTimerAt !== due) return;
        lossTimerAt = Infinity;
        const out = d.onTimeout(Math.max(clock.now(), due));
        for (const p of out.lost) retransmit.push(...p.frames);
        pump();
      });
    };
    const pump = (): void => {
      const now = clock.now();
      while (d.canSend()) {
        if (d.probesOwed === 0) {
          const at = d.nextSendTime(PACKET, now);
          if (at > now) {
            if (at < pumpAt) {
              pumpAt = at;
              events.push(at, () => {
                if (pumpAt !== at) return; // superseded by an earlier one
                pumpAt = Infinity;
                pump();
              });
            }
            break;
          }
        }
        const frame = retransmit.shift() ?? nextFrame++;
        const p = d.onPacketSent({ size: PACKET, ackEliciting: true, frames: [frame] }, now);
        stats.sentBytes += PACKET;
        // The bottleneck: drop-tail when the queue is full, else served in turn at the link rate.
        const queued = Math.max(0, busyUntil - now) * (link.rate / 1000);
        if (queued + PACKET > link.bufferBytes) continue;
        busyUntil = Math.max(busyUntil, now) + (PACKET * 1000) / link.rate;
        if (lose(0, link.loss)) continue;
        events.push(busyUntil + oneWay, () => arrive(p.pn, frame));
      }
      armLossTimer();
    };
    return { stats, pump, start: opts.startsMs?.[i] ?? 0 };
  });

  for (const f of flows) events.push(f.start, f.pump);
  for (let e = events.pop(); e !== undefined && e.at <= durationMs; e = events.pop()) {
    clock.advance(Math.max(0, e.at - clock.now()));
    e.fn();
  }
  for (const f of flows) f.stats.goodput = (f.stats.goodputBytes * 1000) / (durationMs - measureFromMs);
  return flows.map((f) => f.stats);
}

/** The mean of `xs`. */
export const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** The `q` quantile of `xs` (0–1). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}
