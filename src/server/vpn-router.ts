/**
 * The VPN server's packet path, between one TUN device and many client
 * sessions:
 *
 * ```
 *   TUN read batch ──dst lookup──▶ that client's session.sendDatagram(VPN_FLOW)
 *        ▲                            (no client: noRoute; queue full: queueFull)
 *        │ write batch (per tick)
 *   client datagram ──▶ size ─▶ inspect ─▶ source == lease? ─▶ ping to the server's tunnel address? ──▶ echo reply (src/tun/echo.ts)
 *                       oversize  malformed   spoofed              ▼
 *                                                             dst in pool? ──▶ client-to-client
 *                                                                  │ (off: c2cBlocked)
 *                                                                  ▼
 *                                                    destination policy ─▶ TUN (kernel routes, NAT)
 *                                                       policyDenied
 * ```
 *
 * Offloaded packets (src/tun/vnet.ts: TCP super-packets, partial checksums)
 * take the same path as one packet each, their metadata checked too
 * (checkOffload: malformed / oversize); they go to a client whole on
 * VPN_GSO_FLOW when it said it takes them, else cut into plain packets.
 *
 * Every drop is counted by reason; the first drop of each reason per client
 * is logged at once, later ones at most every 10 s. Nothing is queued here:
 * packets go to the session (whose datagram queue is bounded) or to the TUN
 * (whose kernel queue is bounded) in the same tick.
 */
import type { Logger } from '../core/logger.js';
import { nullMetrics, type Metrics } from '../core/metrics.js';
import { echoReply } from '../tun/echo.js';
import { sendPacket, type DatagramSink } from '../tun/gso.js';
import { cidrContains } from '../tun/ipaddr.js';
import { inspectPacket, newPacketInfo, packetAddress, V4_DST, V4_SRC, V6_DST, V6_SRC } from '../tun/packet.js';
import type { AddressPool, Lease } from '../tun/pool.js';
import { checkOffload, GSO_WIRE_HEADER, MAX_SUPER_PACKET, metaOfGsoDatagram, OFF_GSO } from '../tun/vnet.js';
import { VPN_FLOW, VPN_GSO_FLOW } from '../tun/vpn-wire.js';

/** The part of DestinationPolicy the VPN uses. */
export interface VpnPolicy {
  checkAddress(ip: string, port: number): { allowed: boolean; reason: string };
}

/** The part of a TunDevice the router writes to. */
import { TunWriteBatch, type TunSink } from '../tun/write-batch.js';
export type { TunSink };

/** The part of a Session the router uses. */
export type { DatagramSink } from '../tun/gso.js';

/** Packet counters of the VPN server. */
export interface VpnCounters {
  /** Packets read from the TUN and handed to a client session. */
  toClients: number;
  /** Packets from clients written to the TUN or passed to another client. */
  fromClients: number;
  /** From clients: not a well-formed IPv4/IPv6 packet. */
  malformed: number;
  /** From clients: larger than the TUN MTU (a super-packet: a segment larger, too many segments, over 64 KiB). */
  oversize: number;
  /** From clients: source address other than the client's lease. */
  spoofed: number;
  /** From clients: IPv6 link-local or unspecified source (never routed). */
  linkLocal: number;
  /** From clients: destination refused by the destination policy. */
  policyDenied: number;
  /** From clients: destination is another client and client-to-client is off. */
  c2cBlocked: number;
  /** Destination is a pool address nobody holds, or a TUN packet for no client. */
  noRoute: number;
  /** The client's session refused the datagram (detached, queue full). */
  queueFull: number;
  /** The kernel refused a TUN write (queue full or invalid). */
  tunDropped: number;
  /** Super-packets (TCP, up to 64 KiB) among toClients and fromClients. */
  superPackets: number;
  /** Pings to the server's tunnel address answered by the router. */
  echoReplies: number;
}

/** Why a client's packet was dropped (a VpnCounters key). */
export type DropReason = 'malformed' | 'oversize' | 'spoofed' | 'linkLocal' | 'policyDenied' | 'c2cBlocked' | 'noRoute';

/** One client as the router sees it. */
export interface RoutedClient {
  readonly user: string;
  readonly lease: Lease;
  readonly sink: DatagramSink;
  /** The client takes VPN_GSO_FLOW (OPEN_OFFLOAD). @default false */
  readonly offload?: boolean;
  /** Last log time per drop reason (rate limit). */
  readonly logged: Map<DropReason, number>;
}

/** Options of {@link VpnRouter}. */
export interface VpnRouterInit {
  tun: TunSink;
  pool: AddressPool;
  mtu: number;
  clientToClient: boolean;
  policy: VpnPolicy | undefined;
  logger: Logger;
  /** Where to register the counters (`polytun_vpn_*`, read from `counters` when collected). @default nullMetrics */
  metrics?: Metrics;
}

/** Judged for protocols without ports (ICMP…): address rules apply as for this port. */
const PORTLESS = 1;
const POLICY_CACHE_MAX = 16_384;
const LOG_EVERY_MS = 10_000;

/** All counters at zero. */
export function newCounters(): VpnCounters {
  return { toClients: 0, fromClients: 0, malformed: 0, oversize: 0, spoofed: 0, linkLocal: 0, policyDenied: 0, c2cBlocked: 0, noRoute: 0, queueFull: 0, tunDropped: 0, superPackets: 0, echoReplies: 0 };
}

/** See the file comment. */
export class VpnRouter {
  readonly counters = newCounters();
  private readonly byV4 = new Map<number, RoutedClient>();
  private readonly byV6 = new Map<string, RoutedClient>();
  private readonly info = newPacketInfo();
  private readonly policyCache = new Map<number | string, boolean>();
  private readonly gw4: number;
  private readonly toTun: TunWriteBatch;

  constructor(private readonly init: VpnRouterInit) {
    this.gw4 = init.pool.gateway4.readUInt32BE(0);
    this.toTun = new TunWriteBatch(init.tun, (r) => (this.counters.tunDropped += r.dropped + r.invalid));
    this.registerMetrics(init.metrics ?? nullMetrics);
  }

  private registerMetrics(m: Metrics): void {
    const k = this.counters;
    m.registerGauge('polytun_vpn_clients', { help: 'VPN clients with an address (a route) now', collect: () => this.size });
    m.registerCounterGroup('polytun_vpn_packets_total', { help: 'Packets routed (toClients: from the TUN to a client; fromClients: from a client to the TUN or another client)', label: 'direction', collect: () => ({ toClients: k.toClients, fromClients: k.fromClients }) });
    m.registerCounter('polytun_vpn_super_packets_total', { help: 'TCP super-packets among the routed packets', collect: () => k.superPackets });
    m.registerCounter('polytun_vpn_echo_replies_total', { help: "Pings to the server's tunnel address answered", collect: () => k.echoReplies });
    m.registerCounterGroup('polytun_vpn_dropped_total', {
      help: "Packets dropped by the router, by reason (a client's: malformed, oversize, spoofed, linkLocal, policyDenied, c2cBlocked; noRoute; queueFull: a session refused it; tunDropped: the kernel refused it)",
      label: 'reason',
      collect: () => ({ malformed: k.malformed, oversize: k.oversize, spoofed: k.spoofed, linkLocal: k.linkLocal, policyDenied: k.policyDenied, c2cBlocked: k.c2cBlocked, noRoute: k.noRoute, queueFull: k.queueFull, tunDropped: k.tunDropped }),
    });
  }

  /** Clients with a route now. */
  get size(): number {
    return this.byV4.size;
  }

  add(c: RoutedClient): void {
    this.byV4.set(c.lease.v4.readUInt32BE(0), c);
    if (c.lease.v6) this.byV6.set(c.lease.v6.toString('latin1'), c);
  }

  remove(c: RoutedClient): void {
    const k4 = c.lease.v4.readUInt32BE(0);
    if (this.byV4.get(k4) === c) this.byV4.delete(k4);
    if (c.lease.v6) {
      const k6 = c.lease.v6.toString('latin1');
      if (this.byV6.get(k6) === c) this.byV6.delete(k6);
    }
  }

  /** Forgets cached policy decisions (the policy refreshes its own-address list on its own clock). */
  clearPolicyCache(): void {
    this.policyCache.clear();
  }

  /** A batch read from the TUN (with its offload state): each packet to the client its destination belongs to. */
  readonly fromTun = (packets: Buffer[], meta?: readonly number[]): void => {
    const k = this.counters;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i] as Buffer;
      const c = this.clientFor(p, (p[0] as number) >> 4 === 4 ? V4_DST : V6_DST);
      if (c === undefined) {
        k.noRoute++;
        continue;
      }
      const m = meta?.[i] ?? 0;
      if (sendPacket(c.sink, VPN_FLOW, VPN_GSO_FLOW, p, m, c.offload === true, true, this.info)) {
        k.toClients++;
        if ((m & OFF_GSO) !== 0) k.superPackets++;
      } else k.queueFull++;
    }
  };

  /** A VPN_GSO_FLOW datagram a client sent: its header, then the packet as fromClient. */
  fromClientGso(c: RoutedClient, d: Buffer): void {
    const meta = metaOfGsoDatagram(d);
    if (meta < 0) return this.drop(c, 'malformed', d);
    this.fromClient(c, d.subarray(GSO_WIRE_HEADER), meta);
  }

  /** A packet a client sent (a view into its record: used within this tick only), with its offload state. */
  fromClient(c: RoutedClient, p: Buffer, meta = 0): void {
    if (p.length > (meta === 0 ? this.init.mtu : MAX_SUPER_PACKET)) return this.drop(c, 'oversize', p);
    const info = this.info;
    if (inspectPacket(p, info) !== undefined) return this.drop(c, 'malformed', p);
    if (meta !== 0) {
      const problem = checkOffload(p, info, meta, this.init.mtu);
      if (problem !== undefined) return this.drop(c, problem, p);
    }
    const lease = c.lease;
    let dstInPool: boolean;
    let policyKey: number | string;
    if (info.version === 4) {
      if (p.readUInt32BE(V4_SRC) !== lease.v4.readUInt32BE(0)) return this.drop(c, 'spoofed', p);
      const dst = p.readUInt32BE(V4_DST);
      if (dst === this.gw4 && meta === 0 && this.answerPing(c, p)) return;
      dstInPool = cidrContains(this.init.pool.v4, p, V4_DST) && dst !== this.gw4;
      policyKey = dst * 65536 + (info.dstPort < 0 ? PORTLESS : info.dstPort);
    } else {
      // fe80::/10 and :: are how a host talks on its own link (RS, MLD, DAD): never routed, not spoofing.
      if ((p[V6_SRC] === 0xfe && ((p[V6_SRC + 1] as number) & 0xc0) === 0x80) || isZero(p, V6_SRC)) return this.drop(c, 'linkLocal', p);
      if (!lease.v6 || lease.v6.compare(p, V6_SRC, V6_SRC + 16) !== 0) return this.drop(c, 'spoofed', p);
      const gw6 = this.init.pool.gateway6;
      if (gw6 !== undefined && meta === 0 && gw6.compare(p, V6_DST, V6_DST + 16) === 0 && this.answerPing(c, p)) return;
      const pool6 = this.init.pool.v6;
      dstInPool = pool6 !== undefined && cidrContains(pool6, p, V6_DST) && this.init.pool.gateway6?.compare(p, V6_DST, V6_DST + 16) !== 0;
      policyKey = `${p.toString('latin1', V6_DST, V6_DST + 16)}${info.dstPort < 0 ? PORTLESS : info.dstPort}`;
    }
    if (dstInPool) return this.clientToClient(c, p, info.version === 4 ? V4_DST : V6_DST, meta);
    if (!this.allowed(p, policyKey, info.dstPort)) return this.drop(c, 'policyDenied', p);
    this.counters.fromClients++;
    if ((meta & OFF_GSO) !== 0) this.counters.superPackets++;
    this.toTun.push(p, meta);
  }

  /** True when `p` was an echo request (to our tunnel address) and was answered. */
  private answerPing(c: RoutedClient, p: Buffer): boolean {
    const reply = echoReply(p, this.info);
    if (reply === undefined) return false;
    if (c.sink.sendDatagram(VPN_FLOW, reply)) this.counters.echoReplies++;
    else this.counters.queueFull++;
    return true;
  }

  private clientToClient(from: RoutedClient, p: Buffer, dstOff: number, meta: number): void {
    if (!this.init.clientToClient) return this.drop(from, 'c2cBlocked', p);
    const to = this.clientFor(p, dstOff);
    if (to === undefined) return this.drop(from, 'noRoute', p);
    // An offloaded packet came in a VPN_GSO_FLOW datagram: its header is still in front of it.
    if (sendPacket(to.sink, VPN_FLOW, VPN_GSO_FLOW, p, meta, to.offload === true, true, this.info)) this.counters.fromClients++;
    else this.counters.queueFull++;
  }

  private clientFor(p: Buffer, dstOff: number): RoutedClient | undefined {
    if (dstOff === V4_DST) return p.length >= 20 ? this.byV4.get(p.readUInt32BE(V4_DST)) : undefined;
    return p.length >= 40 ? this.byV6.get(p.toString('latin1', V6_DST, V6_DST + 16)) : undefined;
  }

  private allowed(p: Buffer, key: number | string, port: number): boolean {
    const policy = this.init.policy;
    if (policy === undefined) return true;
    let ok = this.policyCache.get(key);
    if (ok === undefined) {
      const d = policy.checkAddress(packetAddress(p, 'dst'), port < 0 ? PORTLESS : port);
      ok = d.allowed;
      if (this.policyCache.size >= POLICY_CACHE_MAX) this.policyCache.clear();
      this.policyCache.set(key, ok);
    }
    return ok;
  }

  private drop(c: RoutedClient, reason: DropReason, p: Buffer): void {
    const n = ++this.counters[reason];
    const now = Date.now();
    const last = c.logged.get(reason);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    c.logged.set(reason, now);
    const addr = reason === 'malformed' || reason === 'oversize' ? {} : { src: packetAddress(p, 'src'), dst: packetAddress(p, 'dst') };
    const fields = { user: c.user, reason, bytes: p.length, ...addr, total: n };
    // A host's own link chatter (RS, MLD) is expected; everything else says something is wrong.
    if (reason === 'linkLocal') this.init.logger.debug(fields, 'vpn: dropped a link-local packet from a client');
    else this.init.logger.warn(fields, 'vpn: dropped a packet from a client');
  }
}

function isZero(p: Buffer, off: number): boolean {
  for (let i = off; i < off + 16; i++) if (p[i] !== 0) return false;
  return true;
}
