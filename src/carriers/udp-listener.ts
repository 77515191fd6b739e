/**
 * One UDP socket serving many peers: each remote address:port is an
 * association (a PacketConn) created on its first datagram. Associations die
 * after `idleTimeoutMs` without a datagram *from* the peer (what we send does
 * not count: a peer that stopped answering is gone, whatever we push at it).
 *
 * Idle detection costs no clock read per packet: a datagram only sets
 * `seen`; a sweep timer every ¼ of the timeout (at most 5 s) adds up the
 * unseen time, so an association expires between idle and idle + one sweep.
 */
import type dgram from 'node:dgram';
import { TimeoutError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { PacketConnBase, type PacketConnInit } from './packet-base.js';
import { formatEndpoint } from './types.js';
import type { Endpoint, Listener, PacketConn } from './types.js';

/** Listener options, resolved by the carrier. */
export interface UdpListenerConfig {
  maxPacketSize: number;
  maxQueuedPackets: number;
  idleTimeoutMs: number;
  maxAssociations: number;
  logger: Logger;
  /** Where the associations report their packet counters (packet-base.ts). */
  metrics?: Metrics;
}

class UdpAssociation extends PacketConnBase {
  /** A datagram arrived since the last sweep. */
  seen = true;
  /** Unseen time accumulated by sweeps, ms. */
  idleMs = 0;

  constructor(
    init: PacketConnInit,
    private readonly listener: UdpListener,
    private readonly key: string,
    private readonly address: string,
    private readonly port: number,
  ) {
    super(init);
  }

  protected transmit(packets: readonly Buffer[]): boolean {
    return this.listener.sendFrom(this, packets, this.port, this.address);
  }

  receive(packet: Buffer): void {
    this.seen = true;
    this.deliver(packet);
  }

  expire(): void {
    this.finish(new TimeoutError(`udp association ${this.remote} idle`));
  }

  fail(err: Error): void {
    this.finish(err);
  }

  protected release(): void {
    this.listener.forget(this.key);
  }
}

/** The Listener returned by UdpPacketCarrier.listen. */
export class UdpListener implements Listener {
  readonly address: Endpoint;
  private readonly assocs = new Map<string, UdpAssociation>();
  private accepting = true;
  private socketClosed = false;
  private readonly sweepEveryMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly socket: dgram.Socket,
    private readonly cfg: UdpListenerConfig,
    private readonly onConn: (conn: PacketConn) => void,
  ) {
    const a = socket.address();
    this.address = { host: a.address, port: a.port };
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    socket.on('error', (err) => this.onSocketError(err));
    this.sweepEveryMs = Math.max(10, Math.min(cfg.idleTimeoutMs / 4, 5_000));
    this.sweeper = setInterval(() => this.sweep(), this.sweepEveryMs);
    this.sweeper.unref();
  }

  /** Stops creating associations; the socket closes when the last existing one ends. Idempotent. */
  async close(): Promise<void> {
    this.accepting = false;
    this.maybeCloseSocket();
  }

  /** Sends for an association, bounded by the socket's send queue. */
  sendFrom(conn: UdpAssociation, packets: readonly Buffer[], port: number, address: string): boolean {
    // One native call per batch, not per packet, to size the free room.
    const room = this.cfg.maxQueuedPackets - this.socket.getSendQueueCount();
    const n = Math.max(0, Math.min(room, packets.length));
    for (let i = 0; i < n; i++) this.socket.send(packets[i] as Buffer, port, address);
    conn.stats.sent += n;
    if (n === packets.length) return true;
    conn.stats.droppedSend += packets.length - n;
    return false;
  }

  forget(key: string): void {
    this.assocs.delete(key);
    this.maybeCloseSocket();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let conn = this.assocs.get(key);
    if (!conn) {
      // Unknown senders are cheap to make and unauthenticated: past the cap
      // they are dropped, never queued.
      if (!this.accepting || this.assocs.size >= this.cfg.maxAssociations) return;
      const init: PacketConnInit = {
        local: formatEndpoint(this.address),
        remote: formatEndpoint({ host: rinfo.address, port: rinfo.port }),
        maxPacketSize: this.cfg.maxPacketSize,
        maxQueuedPackets: this.cfg.maxQueuedPackets,
        ...(this.cfg.metrics !== undefined ? { metrics: this.cfg.metrics } : {}),
      };
      conn = new UdpAssociation(init, this, key, rinfo.address, rinfo.port);
      this.assocs.set(key, conn);
      this.onConn(conn);
    }
    conn.receive(msg);
  }

  private sweep(): void {
    for (const conn of this.assocs.values()) {
      if (conn.seen) {
        conn.seen = false;
        conn.idleMs = 0;
      } else {
        conn.idleMs += this.sweepEveryMs;
        if (conn.idleMs >= this.cfg.idleTimeoutMs) conn.expire();
      }
    }
  }

  private onSocketError(err: Error): void {
    // An unconnected UDP socket gets no ICMP errors on Linux, so an error
    // here is the socket itself failing: every association goes with it.
    this.cfg.logger.warn({ err, at: formatEndpoint(this.address) }, 'udp listener socket error');
    this.accepting = false;
    for (const conn of [...this.assocs.values()]) conn.fail(err);
    this.maybeCloseSocket();
  }

  private maybeCloseSocket(): void {
    if (this.accepting || this.assocs.size > 0 || this.socketClosed) return;
    this.socketClosed = true;
    clearInterval(this.sweeper);
    this.socket.close();
  }
}
