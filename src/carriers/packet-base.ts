/**
 * The PacketConn behaviour every packet carrier shares: size enforcement,
 * batched delivery, set-once handlers, bounded inbox, idempotent close.
 *
 * Received packets are collected in an inbox and handed over in one batch per
 * event-loop turn (setImmediate): a socket delivers many datagrams per poll,
 * so the receiver gets them as one array instead of one call per packet.
 */
import { LimitError } from '../core/errors.js';
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
