/**
 * One direction of an impaired packet link, shared by every association of
 * a UdpRelay (a link, like a router port, has one queue per direction):
 *
 *   ingress ─▶ blackhole? ─▶ loss? ─▶ duplicate? ─▶ ┌──────────────┐ token  ┌────────────┐
 *                                                  │ bottleneck   │ bucket │ delay line │─▶ reorder hold ─▶ deliver
 *                                                  │ FIFO, bounded│───────▶│ min-heap   │   (until the next
 *                                                  │ (tail drop)  │ rateBps│ by release │    packet, or
 *                                                  └──────────────┘        └────────────┘    reorderHoldMs)
 *
 * The bottleneck FIFO is bounded in packets and bytes and drops on overflow,
 * like a router queue; the delay line is bounded in packets so memory stays
 * bounded at any delay. Jitter draws an independent delay per packet, so
 * packets may overtake each other. One timer serves the whole direction.
 */
import { performance } from 'node:perf_hooks';
import type { PacketImpairment } from './relay-shared.js';
import { Fifo } from '../../src/core/fifo.js';
import { applyImpairment, drawDelay, MinHeap, TokenBucket, Wakeup } from './relay-shared.js';

/** Counters for one direction of a UdpRelay. */
export interface UdpDirectionStats {
  /** Packets that arrived from the source side. */
  received: number;
  /** Packets handed to the socket toward the sink side, and their bytes. */
  delivered: number;
  bytesDelivered: number;
  /** Dropped by `lossRate`. */
  droppedLoss: number;
  /** Dropped because the bottleneck queue or the delay line was full. */
  droppedQueue: number;
  /** Dropped because the link was blackholed (at ingress or in flight). */
  droppedBlackhole: number;
  /** Extra copies made by `duplicateRate`. */
  duplicated: number;
  /** Packets held back by `reorderRate`. */
  reordered: number;
  /** Packets that could not be sent (closed association, socket error). */
  sendErrors: number;
  /** Packets now in the bottleneck queue, and the most it ever held. */
  queued: number;
  maxQueued: number;
  /** Packets now in the delay line. */
  inFlight: number;
}

/** Bounds of one direction's queues. */
export interface PacketPipeLimits {
  /** Bottleneck queue bound in packets (used when rateBps > 0). */
  queueLimitPackets: number;
  /** Bottleneck queue bound in bytes. */
  queueLimitBytes: number;
  /** Delay line bound in packets. */
  maxInFlightPackets: number;
  /** How long a packet picked for reordering waits for a successor. */
  reorderHoldMs: number;
}

/** A packet in flight, with the association it belongs to. */
export interface InFlight<A> {
  buf: Buffer;
  assoc: A;
  seq: number;
  at: number;
  reorder: boolean;
}

/** See the file comment. `deliver` returns false when the packet could not be sent. */
export class PacketPipe<A> {
  readonly stats: UdpDirectionStats = {
    received: 0,
    delivered: 0,
    bytesDelivered: 0,
    droppedLoss: 0,
    droppedQueue: 0,
    droppedBlackhole: 0,
    duplicated: 0,
    reordered: 0,
    sendErrors: 0,
    queued: 0,
    maxQueued: 0,
    inFlight: 0,
  };
  blackholed = false;
  private readonly bottleneck = new Fifo<InFlight<A>>();
  private bottleneckBytes = 0;
  private readonly line = new MinHeap<InFlight<A>>((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq));
  private held: Array<{ pkt: InFlight<A>; until: number }> = [];
  private readonly bucket = new TokenBucket();
  private readonly wake = new Wakeup(() => this.pump());
  private seq = 0;

  constructor(
    readonly imp: PacketImpairment,
    private readonly random: () => number,
    private readonly limits: PacketPipeLimits,
    private readonly deliver: (pkt: InFlight<A>) => boolean,
  ) {
    this.bucket.setRate(imp.rateBps, performance.now());
  }

  /** Applies an impairment patch (validated; ConfigError on a bad value). */
  set(patch: Partial<PacketImpairment>, where: string): void {
    applyImpairment(this.imp, patch, where);
    this.bucket.setRate(this.imp.rateBps, performance.now());
    this.pump();
  }

  /** A packet arrives from the source side. */
  ingress(buf: Buffer, assoc: A): void {
    const s = this.stats;
    const imp = this.imp;
    s.received++;
    if (this.blackholed) {
      s.droppedBlackhole++;
      return;
    }
    if (imp.lossRate > 0 && this.random() < imp.lossRate) {
      s.droppedLoss++;
      return;
    }
    const copies = imp.duplicateRate > 0 && this.random() < imp.duplicateRate ? 2 : 1;
    s.duplicated += copies - 1;
    for (let i = 0; i < copies; i++) {
      if (this.bottleneck.length >= this.limits.queueLimitPackets || this.bottleneckBytes + buf.length > this.limits.queueLimitBytes) {
        s.droppedQueue++;
        continue;
      }
      const reorder = imp.reorderRate > 0 && this.random() < imp.reorderRate;
      this.bottleneck.push({ buf, assoc, seq: this.seq++, at: 0, reorder });
      this.bottleneckBytes += buf.length;
      s.queued = this.bottleneck.length;
      s.maxQueued = Math.max(s.maxQueued, s.queued);
    }
    this.pump();
  }

  /** Moves packets through the bottleneck and the delay line; arms the one timer. */
  private pump(): void {
    const now = performance.now();
    let next = Infinity;
    for (let pkt = this.bottleneck.peek(); pkt !== undefined; pkt = this.bottleneck.peek()) {
      const wait = this.bucket.waitMs(now);
      if (wait > 0) {
        next = now + wait;
        break;
      }
      this.bottleneck.shift();
      this.bottleneckBytes -= pkt.buf.length;
      this.bucket.take(pkt.buf.length, now);
      if (this.line.size >= this.limits.maxInFlightPackets) {
        this.stats.droppedQueue++;
        continue;
      }
      pkt.at = now + drawDelay(this.imp, this.random);
      this.line.push(pkt);
    }
    for (let pkt = this.line.peek(); pkt !== undefined && pkt.at <= now; pkt = this.line.peek()) {
      this.line.pop();
      if (pkt.reorder) {
        this.stats.reordered++;
        this.held.push({ pkt, until: now + this.limits.reorderHoldMs });
        continue;
      }
      this.emit(pkt);
      // A held packet goes out right after the one that overtook it.
      for (const h of this.held) this.emit(h.pkt);
      this.held = [];
    }
    while (this.held.length > 0 && (this.held[0] as { until: number }).until <= now) this.emit((this.held.shift() as { pkt: InFlight<A> }).pkt);
    this.stats.queued = this.bottleneck.length;
    this.stats.inFlight = this.line.size + this.held.length;
    next = Math.min(next, this.line.peek()?.at ?? Infinity, this.held[0]?.until ?? Infinity);
    if (next !== Infinity) this.wake.at(next, now);
  }

  private emit(pkt: InFlight<A>): void {
    const s = this.stats;
    if (this.blackholed) s.droppedBlackhole++;
    else if (!this.deliver(pkt)) s.sendErrors++;
    else {
      s.delivered++;
      s.bytesDelivered += pkt.buf.length;
    }
  }

  /** Drops every queued packet and the timer. */
  clear(): void {
    this.wake.clear();
    this.bottleneck.clear();
    this.bottleneckBytes = 0;
    this.line.clear();
    this.held = [];
    this.stats.queued = 0;
    this.stats.inFlight = 0;
  }
}
