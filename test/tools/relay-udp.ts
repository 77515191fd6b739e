/**
 * UdpRelay: a userspace UDP impairment relay. Each client address:port gets
 * an association with its own socket toward the target (like a NAT
 * mapping), closed after `idleTimeoutMs` without traffic. Both directions
 * pass through a PacketPipe (loss, duplication, reordering, delay, jitter,
 * a rate-limited bounded queue), seeded so runs can be replayed.
 *
 *   client A ─┐                      ┌─ socket A ─┐
 *   client B ─┼─▶ listen socket ─up─▶┼─ socket B ─┼─▶ target
 *             └──◀── listen socket ◀─┴──── down ──┘
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { performance } from 'node:perf_hooks';
import { ClosedError, ConfigError } from '../../src/core/errors.js';
import { nullLogger, type Logger } from '../../src/core/logger.js';
import { PacketPipe, type InFlight, type PacketPipeLimits, type UdpDirectionStats } from './relay-udp-pipe.js';
import type { Direction, HostPort, PacketImpairment } from './relay-shared.js';
import { applyImpairment, directionRandoms, noImpairment } from './relay-shared.js';

export type { UdpDirectionStats } from './relay-udp-pipe.js';

/** Options for `new UdpRelay(init)`. */
export interface UdpRelayInit {
  /** Where clients send; port 0 picks a free port (see `address`). */
  listen: HostPort;
  /** Where every association forwards. */
  target: HostPort;
  /** Client → target impairments. @default none */
  up?: Partial<PacketImpairment>;
  /** Target → client impairments. @default none */
  down?: Partial<PacketImpairment>;
  /** PRNG seed for every random decision, so runs can be replayed. @default random */
  seed?: number;
  /** An association with no traffic either way for this long is closed. @default 60000 */
  idleTimeoutMs?: number;
  /** Most associations at once; packets from further clients are dropped. @default 1024 */
  maxAssociations?: number;
  /** Bottleneck queue bound per direction, in packets. @default 256 */
  queueLimitPackets?: number;
  /** Bottleneck queue bound per direction, in bytes. @default 256 KiB */
  queueLimitBytes?: number;
  /** Delay line bound per direction, in packets. @default 65536 */
  maxInFlightPackets?: number;
  /** How long a packet picked for reordering waits for a successor. @default 10 */
  reorderHoldMs?: number;
  /** @default nullLogger */
  logger?: Logger;
}

/** Counters of a UdpRelay. */
export interface UdpRelayStats {
  /** Associations open now, and ever opened. */
  associations: number;
  associationsOpened: number;
  /** Packets from new clients dropped because `maxAssociations` was reached. */
  droppedNoAssociation: number;
  /** Associations killed by cutAll(). */
  cuts: number;
  up: UdpDirectionStats;
  down: UdpDirectionStats;
}

interface Association {
  readonly address: string;
  readonly port: number;
  readonly socket: Socket;
  readonly closed: Promise<void>;
  lastSeen: number;
  open: boolean;
}

function positiveInt(v: number | undefined, dflt: number, where: string): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(where, `must be a positive integer, got ${n}`);
  return n;
}

/** Forwards UDP datagrams to one target through an impaired "link". */
export class UdpRelay {
  private readonly pipes: Record<Direction, PacketPipe<Association>>;
  private readonly assocs = new Map<string, Association>();
  private readonly idleTimeoutMs: number;
  private readonly maxAssociations: number;
  private readonly logger: Logger;
  private readonly counters = { associationsOpened: 0, droppedNoAssociation: 0, cuts: 0 };
  private listenSocket: Socket | null = null;
  private listenClosed: Promise<void> = Promise.resolve();
  private sweep: NodeJS.Timeout | null = null;
  private targetAddr: { address: string; family: number } | null = null;
  private bound: HostPort | null = null;
  private closing: Promise<void> | null = null;

  constructor(private readonly init: UdpRelayInit) {
    this.idleTimeoutMs = positiveInt(init.idleTimeoutMs, 60_000, 'idleTimeoutMs');
    this.maxAssociations = positiveInt(init.maxAssociations, 1024, 'maxAssociations');
    this.logger = init.logger ?? nullLogger;
    const limits: PacketPipeLimits = {
      queueLimitPackets: positiveInt(init.queueLimitPackets, 256, 'queueLimitPackets'),
      queueLimitBytes: positiveInt(init.queueLimitBytes, 256 * 1024, 'queueLimitBytes'),
      maxInFlightPackets: positiveInt(init.maxInFlightPackets, 65536, 'maxInFlightPackets'),
      reorderHoldMs: positiveInt(init.reorderHoldMs, 10, 'reorderHoldMs'),
    };
    const randoms = directionRandoms(init.seed);
    const pipe = (d: Direction, deliver: (p: InFlight<Association>) => boolean): PacketPipe<Association> => {
      const imp = noImpairment();
      if (init[d]) applyImpairment(imp, init[d], d);
      return new PacketPipe(imp, randoms[d], limits, deliver);
    };
    this.pipes = { up: pipe('up', (p) => this.sendUp(p)), down: pipe('down', (p) => this.sendDown(p)) };
  }

  /** Resolves the addresses and binds the listening socket. */
  async start(): Promise<void> {
    if (this.listenSocket !== null || this.closing !== null) throw new ClosedError('UdpRelay (already started)');
    this.targetAddr = await lookup(this.init.target.host);
    const local = await lookup(this.init.listen.host);
    const sock = createSocket(local.family === 6 ? 'udp6' : 'udp4');
    this.listenClosed = new Promise((resolve) => sock.once('close', resolve));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(this.init.listen.port, local.address, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sock.on('error', (err) => this.logger.warn({ err }, 'relay: udp listen socket error'));
    sock.on('message', (msg, rinfo) => this.onClientPacket(msg, rinfo));
    const a = sock.address();
    this.bound = { host: a.address, port: a.port };
    this.listenSocket = sock;
    this.sweep = setInterval(() => this.closeIdle(), Math.max(10, Math.min(this.idleTimeoutMs / 2, 5000)));
    this.sweep.unref();
  }

  /** The bound address (real port when 0 was asked). Throws before start(). */
  get address(): HostPort {
    if (this.bound === null) throw new ClosedError('UdpRelay (not started)');
    return { ...this.bound };
  }

  /** A snapshot of the counters. */
  get stats(): UdpRelayStats {
    return { associations: this.assocs.size, ...this.counters, up: { ...this.pipes.up.stats }, down: { ...this.pipes.down.stats } };
  }

  /** The current impairments of one direction (a copy). */
  impairment(dir: Direction): PacketImpairment {
    return { ...this.pipes[dir].imp };
  }

  /** Changes impairments of one or both directions; ConfigError on a bad key or value. */
  set(dir: Direction | 'both', patch: Partial<PacketImpairment>): void {
    for (const d of dir === 'both' ? (['up', 'down'] as const) : [dir]) this.pipes[d].set(patch, d);
  }

  /** While on, every packet (arriving or in flight) is dropped, both ways. */
  blackhole(on: boolean): void {
    this.pipes.up.blackholed = on;
    this.pipes.down.blackholed = on;
  }

  /**
   * Forgets every association (as a NAT reboot would): the next packet from
   * a client opens a new socket toward the target, with a new source port.
   * Returns how many were closed.
   */
  cutAll(): number {
    const n = this.assocs.size;
    this.counters.cuts += n;
    for (const [key, a] of [...this.assocs]) this.closeAssociation(key, a);
    return n;
  }

  /** Closes every socket and timer; resolves once all sockets are closed. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.sweep !== null) clearInterval(this.sweep);
    this.pipes.up.clear();
    this.pipes.down.clear();
    const waits = [...this.assocs].map(([key, a]) => {
      this.closeAssociation(key, a);
      return a.closed;
    });
    if (this.listenSocket !== null) {
      this.listenSocket.close();
      waits.push(this.listenClosed);
    }
    await Promise.all(waits);
  }

  private onClientPacket(msg: Buffer, rinfo: RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let a = this.assocs.get(key);
    if (a === undefined) {
      if (this.assocs.size >= this.maxAssociations) {
        this.counters.droppedNoAssociation++;
        return;
      }
      a = this.openAssociation(key, rinfo);
    }
    a.lastSeen = performance.now();
    this.pipes.up.ingress(msg, a);
  }

  private openAssociation(key: string, rinfo: RemoteInfo): Association {
    const target = this.targetAddr as { address: string; family: number };
    const socket = createSocket(target.family === 6 ? 'udp6' : 'udp4');
    const a: Association = {
      address: rinfo.address,
      port: rinfo.port,
      socket,
      closed: new Promise((resolve) => socket.once('close', resolve)),
      lastSeen: performance.now(),
      open: true,
    };
    socket.on('error', (err) => this.logger.debug({ err, client: key }, 'relay: udp association socket error'));
    socket.on('message', (msg, from) => {
      // Only the target may answer through a mapping, as with an endpoint-dependent NAT.
      if (from.address !== target.address || from.port !== this.init.target.port) return;
      a.lastSeen = performance.now();
      this.pipes.down.ingress(msg, a);
    });
    socket.bind(0);
    this.assocs.set(key, a);
    this.counters.associationsOpened++;
    return a;
  }

  private closeAssociation(key: string, a: Association): void {
    if (!a.open) return;
    a.open = false;
    this.assocs.delete(key);
    a.socket.close();
  }

  private closeIdle(): void {
    const cutoff = performance.now() - this.idleTimeoutMs;
    for (const [key, a] of [...this.assocs]) if (a.lastSeen < cutoff) this.closeAssociation(key, a);
  }

  private sendUp(p: InFlight<Association>): boolean {
    const t = this.targetAddr;
    if (!p.assoc.open || t === null) return false;
    p.assoc.socket.send(p.buf, this.init.target.port, t.address, (err) => this.onSendDone(err, 'up'));
    return true;
  }

  private sendDown(p: InFlight<Association>): boolean {
    const s = this.listenSocket;
    if (s === null || this.closing !== null) return false;
    s.send(p.buf, p.assoc.port, p.assoc.address, (err) => this.onSendDone(err, 'down'));
    return true;
  }

  private onSendDone(err: Error | null, dir: Direction): void {
    if (err === null) return;
    this.pipes[dir].stats.sendErrors++;
    this.logger.debug({ err, dir }, 'relay: udp send failed');
  }
}
