/**
 * The PacketConn behaviour every packet carrier shares: size enforcement,
 * batched delivery, set-once handlers, bounded inbox, idempotent close.
 *
 * Received packets are collected in an inbox and handed over in one batch per
 * event-loop turn (setImmediate): a socket delivers many datagrams per poll,
 * so the receiver gets them as one array instead of one call per packet.
 */
import { LimitError } from '../core/errors.js';
import type { Metrics } from '../core/metrics.js';
import type { PacketConn } from './types.js';

/** Counters a packet conn keeps (all monotonic). */
export interface PacketStats {
  sent: number;
  received: number;
  /** Dropped on send: queue full, or lost (memory carrier loss simulation). */
  droppedSend: number;
  /** Dropped on receive: oversize, inbox full or after close. */
  droppedRecv: number;
}

/** Common init of packet conns. */
export interface PacketConnInit {
  local: string;
  remote: string;
  maxPacketSize: number;
  /** Packets held for the handler before drops start. */
  maxQueuedPackets: number;
  /** Where to report the conn's stats, summed with every other conn given the same Metrics (see trackPacketConn). @default none */
  metrics?: Metrics;
}

/**
 * Base class: subclasses implement `transmit` (send a validated batch) and
 * `release` (free the socket/association), and call `deliver` per packet.
 */
export abstract class PacketConnBase implements PacketConn {
  readonly local: string;
  readonly remote: string;
  readonly maxPacketSize: number;
  readonly stats: PacketStats = { sent: 0, received: 0, droppedSend: 0, droppedRecv: 0 };
  protected readonly maxQueued: number;
  private inbox: Buffer[] = [];
  private flushScheduled = false;
  private packetHandler: ((packets: Buffer[]) => void) | undefined;
  private closeHandlers: ((err?: Error) => void)[] = [];
  private closed = false;
  private closeError: Error | undefined;

  constructor(init: PacketConnInit) {
    this.local = init.local;
    this.remote = init.remote;
    this.maxPacketSize = init.maxPacketSize;
    this.maxQueued = init.maxQueuedPackets;
    if (init.metrics !== undefined) trackPacketConn(init.metrics, this);
  }

  /** True once closed (locally, by error or by idle timeout). */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Sends a batch. Throws LimitError (nothing of the batch is sent) when a
   * packet exceeds maxPacketSize: that is a caller bug, not network loss.
   * Returns false after close or when packets were dropped for queue space.
   */
  send(packets: readonly Buffer[]): boolean {
    for (const p of packets) {
      if (p.length > this.maxPacketSize) {
        throw new LimitError('maxPacketSize', `packet of ${p.length} bytes exceeds maxPacketSize ${this.maxPacketSize}`);
      }
    }
    if (this.closed) {
      this.stats.droppedSend += packets.length;
      return false;
    }
    return this.transmit(packets);
  }

  onPackets(handler: (packets: Buffer[]) => void): void {
    this.packetHandler = handler;
    if (this.inbox.length > 0) this.scheduleFlush();
  }

  onClose(handler: (err?: Error) => void): void {
    if (this.closed) queueMicrotask(() => handler(this.closeError));
    else this.closeHandlers.push(handler);
  }

  close(): void {
    this.finish(undefined);
  }

  /** Ends the conn once; handlers see `err` (undefined for a plain close). */
  protected finish(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err;
    this.inbox = [];
    this.release();
    const handlers = this.closeHandlers;
    this.closeHandlers = [];
    for (const h of handlers) h(err);
  }

  /** Queues one received packet for the handler (drops when oversize or full). */
  protected deliver(packet: Buffer): boolean {
    if (this.closed || packet.length > this.maxPacketSize || this.inbox.length >= this.maxQueued) {
      this.stats.droppedRecv++;
      return false;
    }
    this.stats.received++;
    this.inbox.push(packet);
    if (this.packetHandler) this.scheduleFlush();
    return true;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const handler = this.packetHandler;
      if (this.closed || !handler || this.inbox.length === 0) return;
      const batch = this.inbox;
      this.inbox = [];
      handler(batch);
    });
  }

  protected abstract transmit(packets: readonly Buffer[]): boolean;
  protected abstract release(): void;
}

/** The packet conns reporting to one Metrics instance: the live ones, and what the closed ones counted. */
interface Tracked {
  live: Set<PacketConnBase>;
  ended: PacketStats;
}

const trackedOf = new WeakMap<Metrics, Tracked>();

/**
 * Adds `conn` to the conns `metrics` sums (every conn of a process, dialed
 * or accepted, in one set of metrics, registered with the first). A closed
 * conn's stats move to `ended` at its close; what it counts after that (a
 * send on a closed conn, dropped) is not reported.
 */
function trackPacketConn(metrics: Metrics, conn: PacketConnBase): void {
  let t = trackedOf.get(metrics);
  if (t === undefined) {
    const tr: Tracked = (t = { live: new Set(), ended: { sent: 0, received: 0, droppedSend: 0, droppedRecv: 0 } });
    trackedOf.set(metrics, tr);
    const sum = (read: (s: PacketStats) => number) => (): number => {
      let n = read(tr.ended);
      for (const c of tr.live) n += read(c.stats);
      return n;
    };
    const sent = sum((s) => s.sent);
    const received = sum((s) => s.received);
    const droppedSend = sum((s) => s.droppedSend);
    const droppedRecv = sum((s) => s.droppedRecv);
    metrics.registerCounterGroup('polytun_carrier_packets_total', { help: 'Packets sent and received by packet conns (UDP)', label: 'direction', collect: () => ({ sent: sent(), received: received() }) });
    metrics.registerCounterGroup('polytun_carrier_packets_dropped_total', {
      help: 'Packets dropped by packet conns (send: queue full or closed; receive: oversize, inbox full or closed)',
      label: 'direction',
      collect: () => ({ send: droppedSend(), receive: droppedRecv() }),
    });
    metrics.registerGauge('polytun_carrier_packet_conns', { help: 'Packet conns open now (dialed and accepted associations)', collect: () => tr.live.size });
  }
  const tr = t;
  tr.live.add(conn);
  conn.onClose(() => {
    tr.live.delete(conn);
    const s = conn.stats;
    tr.ended.sent += s.sent;
    tr.ended.received += s.received;
    tr.ended.droppedSend += s.droppedSend;
    tr.ended.droppedRecv += s.droppedRecv;
  });
}
