/**
 * VPN mode, server side: one TUN device for all clients.
 *
 * A client opens a control stream (OPEN kind 0x10, src/tun/vpn-wire.ts);
 * the server leases it an address from the pool (sticky per user), answers
 * with a CONFIG (address, gateway, MTU, pushed routes and DNS) and from then
 * on routes IP packets between the TUN and that session's datagram flow
 * (src/server/vpn-router.ts: anti-spoofing, client-to-client, policy).
 * Ending the stream, or the session closing, gives the lease back.
 *
 * The TUN is opened with checksum and TCP segmentation offload
 * (src/tun/vnet.ts) unless `offload: false`: TCP moves in super-packets of
 * up to 64 KiB, one datagram each, to and from clients that announce
 * OPEN_OFFLOAD; the CONFIG tells clients the server takes them. Clients
 * without it get plain packets, cut here. A
 * session that lost its carrier keeps its lease while it waits to be
 * resumed; packets for it are dropped meanwhile, not queued.
 *
 * With `nat`, IPv4 forwarding is switched on and
 * `iptables -t nat -A POSTROUTING -s POOL ! -o TUN -j MASQUERADE` (and the
 * ip6tables twin for an IPv6 pool) is added; both are undone exactly on exit,
 * or on the next start after a crash (src/tun/changes.ts, state file in the
 * data dir).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, LimitError, isBenignClose, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { Session } from '../session/session.js';
import { ResetCode, type PolyStream } from '../session/stream.js';
import { ChangeJournal } from '../tun/changes.js';
import { TunDevice } from '../tun/device.js';
import { cidrContains, cidrHost, cidrSize, formatCidr, formatIpBytes, parseIpCidr } from '../tun/ipaddr.js';
import { AddressPool } from '../tun/pool.js';
import { OPEN_OFFLOAD, VPN_FLOW, VPN_GSO_FLOW, vpnMtuFor, VPN_VERSION, VpnRefuseCode, decodeVpnOpen, encodeConfig, encodeRefuse, OPEN_VPN, type VpnConfig } from '../tun/vpn-wire.js';
import { VpnRouter, type RoutedClient, type VpnCounters, type VpnPolicy } from './vpn-router.js';

export type { VpnCounters, VpnPolicy } from './vpn-router.js';

/** Options of {@link ServerVpn.start}. */
export interface ServerVpnInit {
  /** Address pool: `IPv4CIDR[,IPv6CIDR]`, e.g. `10.8.0.0/24,fd00:8::/64`. */
  pool: string;
  /** Keeps leases (`vpn-leases.json`) and the record of system changes. */
  dataDir: string;
  /** @default 'polytun0' */
  tunName?: string;
  /** TUN MTU, pushed to clients. @default vpnMtuFor('stream'): 1400 (see vpn-wire.ts) */
  mtu?: number;
  /** Masquerade pool traffic leaving by another interface, and enable forwarding. @default false */
  nat?: boolean;
  /** Let clients reach each other's addresses. @default false */
  clientToClient?: boolean;
  /** CIDRs pushed to clients as routes into the tunnel. @default [] */
  pushRoutes?: readonly string[];
  /** DNS servers pushed to clients. @default [] */
  pushDns?: readonly string[];
  /** Create the TUN in this network namespace (embedding, tests); NAT needs the current one. @default the current one */
  netns?: string;
  /** Destinations clients may reach through the TUN. @default none: everything */
  policy?: VpnPolicy;
  /** Checksum and TCP segmentation offload on the TUN (see the file comment). @default true */
  offload?: boolean;
  /** @default nullLogger */
  logger?: Logger;
  /** Where to register the router's and the TUN device's counters. @default nullMetrics */
  metrics?: Metrics;
}

/** Counters plus the number of connected clients. */
export interface ServerVpnStats extends VpnCounters {
  clients: number;
}

/** Something that announces new sessions (SessionServer does). */
export interface SessionSource {
  prependListener(event: 'session', listener: (e: { session: Session; user: string }) => void): unknown;
}

/** See the file comment. */
export class ServerVpn {
  readonly tun: TunDevice;
  readonly pool: AddressPool;
  private readonly router: VpnRouter;
  private readonly log: Logger;
  private readonly clients = new Map<Session, RoutedClient & { stream: PolyStream }>();
  private readonly cacheTimer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly init: ServerVpnInit,
    tun: TunDevice,
    pool: AddressPool,
    private readonly journal: ChangeJournal,
  ) {
    this.tun = tun;
    this.pool = pool;
    this.log = (init.logger ?? nullLogger).child({ component: 'vpn' });
    this.router = new VpnRouter({ tun, pool, mtu: tun.mtu, clientToClient: init.clientToClient ?? false, policy: init.policy, logger: this.log, ...(init.metrics === undefined ? {} : { metrics: init.metrics }) });
    tun.onPackets(this.router.fromTun);
    tun.onError((err) => this.log.error({ dev: tun.name, err: err.message }, 'vpn: TUN device failed; VPN traffic stops'));
    // Policy answers are cached per destination; the policy's own-address list moves on its own clock.
    this.cacheTimer = setInterval(() => this.router.clearPolicyCache(), 30_000);
    this.cacheTimer.unref();
  }

  /**
   * Opens the pool, undoes what a crashed previous run left, creates and
   * configures the TUN, and sets up NAT when asked.
   * @throws ConfigError (pool, state file), TunError, IprouteError, SystemChangeError
   */
  static async start(init: ServerVpnInit): Promise<ServerVpn> {
    const log = (init.logger ?? nullLogger).child({ component: 'vpn' });
    const [v4, v6, ...extra] = init.pool.split(',').map((s) => s.trim());
    if (v4 === undefined || extra.length > 0) throw new ConfigError('vpn.pool', `expected IPv4CIDR[,IPv6CIDR], got ${JSON.stringify(init.pool)}`);
    const pool = await AddressPool.open({ v4, ...(v6 ? { v6 } : {}), file: join(init.dataDir, 'vpn-leases.json'), logger: log });
    const name = init.tunName ?? 'polytun0';
    const { journal } = await ChangeJournal.open(join(init.dataDir, `vpn-state-${name}.json`), { logger: log });
    const addresses = [`${formatIpBytes(pool.gateway4)}/${pool.v4.prefix}`];
    if (pool.gateway6 && pool.v6) addresses.push(`${formatIpBytes(pool.gateway6)}/${pool.v6.prefix}`);
    if (init.netns !== undefined && init.nat) throw new ConfigError('vpn.nat', 'NAT is set up in the current network namespace; it cannot go with netns');
    const tun = await TunDevice.create({
      name, mtu: init.mtu ?? vpnMtuFor('stream'), addresses, txqueuelen: 1000, offload: init.offload ?? true, ...(init.netns !== undefined ? { netns: init.netns } : {}), ...(init.metrics !== undefined ? { metrics: init.metrics } : {}),
    });
    try {
      if (init.nat) await setUpNat(journal, pool, tun.name, log);
      else if (init.netns === undefined) await warnIfNotForwarding(log);
    } catch (err) {
      tun.close();
      await journal.undoAll();
      throw err;
    }
    log.info({ dev: tun.name, pool: pool.description, mtu: tun.mtu, offload: tun.offload, nat: init.nat ?? false, clientToClient: init.clientToClient ?? false }, 'vpn ready');
    return new ServerVpn(init, tun, pool, journal);
  }

  /** Counters and client count. */
  get stats(): ServerVpnStats {
    return { ...this.router.counters, clients: this.clients.size };
  }

  /** Takes part in every session `server` admits from now on (before other handlers). */
  serve(server: SessionSource): void {
    server.prependListener('session', (e) => this.attach(e.session, e.user));
  }

  /** Takes the VPN's stream kind and datagram flows of `session` (its lanes; the proxy takes others). */
  attach(session: Session, user: string): void {
    if (this.closed) return;
    // The session's VPN client, once its control stream is up (no map lookup per packet).
    const slot: { client?: RoutedClient } = {};
    session.lanes.datagrams(VPN_FLOW, VPN_GSO_FLOW, (flow, p) => {
      if (slot.client === undefined) return;
      if (flow === VPN_FLOW) this.router.fromClient(slot.client, p);
      else this.router.fromClientGso(slot.client, p);
    });
    session.lanes.streams([OPEN_VPN], (s) => this.onControl(session, user, s, slot));
  }

  private onControl(session: Session, user: string, s: PolyStream, slot: { client?: RoutedClient }): void {
    s.on('error', (err: Error) => {
      if (!isBenignClose(err)) this.log.debug({ user, err: err.message }, 'vpn control stream error');
    });
    let version: number;
    let flags: number;
    let routes: string[];
    try {
      ({ version, flags, routes } = decodeVpnOpen(s.openPayload));
    } catch (err) {
      return refuse(s, VpnRefuseCode.internal, toError(err).message);
    }
    if (this.closed) return refuse(s, VpnRefuseCode.disabled, 'VPN is shutting down');
    if (version !== VPN_VERSION) return refuse(s, VpnRefuseCode.unsupportedVersion, `server speaks VPN version ${VPN_VERSION}`);
    if (this.clients.has(session)) return refuse(s, VpnRefuseCode.duplicate, 'this session already has a VPN');
    // A route whose packets the policy would drop one by one, silently, is refused now, with the reason.
    const denied = this.deniedRoute(routes);
    if (denied !== undefined) {
      this.log.warn({ user, route: denied.route, reason: denied.reason }, `vpn: refusing a client: ${denied.message}`);
      return refuse(s, VpnRefuseCode.routeRefused, denied.message);
    }
    let lease;
    try {
      lease = this.pool.acquire(user);
    } catch (err) {
      if (!(err instanceof LimitError)) throw err;
      this.log.warn({ user, pool: this.pool.description }, 'vpn: address pool exhausted; refusing a client');
      return refuse(s, VpnRefuseCode.poolExhausted, err.message);
    }
    const client = { user, lease, sink: session, offload: (flags & OPEN_OFFLOAD) !== 0, logged: new Map(), stream: s };
    this.clients.set(session, client);
    this.router.add(client);
    slot.client = client;
    const config = this.configFor(lease.v4, lease.v6);
    this.log.info({ user, addr4: config.addr4.ip, ...(config.addr6 ? { addr6: config.addr6.ip } : {}), offload: client.offload }, 'vpn client up');
    s.write(encodeConfig(config));
    // The client never writes on this stream (vpn-wire.ts): anything it sends is a protocol violation.
    s.on('data', () => s.reset(ResetCode.internal));
    s.on('end', () => s.end());
    s.once('close', () => {
      if (slot.client === client) delete slot.client;
      if (this.clients.get(session) === client) this.clients.delete(session);
      this.router.remove(client);
      lease.release();
      this.log.info({ user, addr4: config.addr4.ip }, 'vpn client down');
    });
  }

  /**
   * The first of a client's routes that leads where the destination policy
   * refuses, judged by the route's first host address. Routes inside the
   * pool (client-to-client) and very broad ones (shorter than /8 or /16 for
   * IPv6: default routes and their halves, mostly public space) are left to
   * the per-packet check.
   */
  private deniedRoute(routes: readonly string[]): { route: string; reason: string; message: string } | undefined {
    const policy = this.init.policy;
    if (policy === undefined) return undefined;
    for (const route of routes) {
      let cidr;
      try {
        cidr = parseIpCidr(route, 'route', false);
      } catch {
        return { route, reason: 'malformed', message: `route ${route} is not a CIDR` };
      }
      if (cidr.prefix < (cidr.family === 4 ? 8 : 16)) continue;
      const pool = cidr.family === 4 ? this.pool.v4 : this.pool.v6;
      if (pool !== undefined && pool.prefix <= cidr.prefix && cidrContains(pool, cidr.bytes)) continue;
      const host = formatIpBytes(cidrSize(cidr) > 1n ? cidrHost(cidr, 1n) : cidr.bytes);
      const d = policy.checkAddress(host, 1);
      if (!d.allowed) {
        return { route, reason: d.reason, message: `route ${route}: the server's policy refuses ${host} (${d.reason}); on the server, --allow ${route} lets VPN clients reach it` };
      }
    }
    return undefined;
  }

  private configFor(v4: Buffer, v6: Buffer | undefined): VpnConfig {
    const pool = this.pool;
    const c: VpnConfig = {
      addr4: { ip: formatIpBytes(v4), prefix: pool.v4.prefix },
      gw4: formatIpBytes(pool.gateway4),
      mtu: this.tun.mtu,
      routes: [...(this.init.pushRoutes ?? [])],
      dns: [...(this.init.pushDns ?? [])],
    };
    if (this.tun.offload) c.offload = true;
    if (v6 && pool.v6 && pool.gateway6) {
      c.addr6 = { ip: formatIpBytes(v6), prefix: pool.v6.prefix };
      c.gw6 = formatIpBytes(pool.gateway6);
    }
    return c;
  }

  /** Ends every client's VPN, removes the TUN, undoes NAT and forwarding. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.cacheTimer);
    for (const c of this.clients.values()) c.stream.destroy();
    this.log.info({ ...this.stats }, 'vpn closing');
    await this.journal.undoAll();
    this.tun.close();
    await this.pool.flush();
  }
}

/** Ends a control stream with a REFUSE; a client that never ends its side is cut after 10 s. */
function refuse(s: PolyStream, code: number, reason: string): void {
  s.end(encodeRefuse(code, reason));
  s.resume();
  const t = setTimeout(() => s.destroy(), 10_000);
  t.unref();
  s.once('close', () => clearTimeout(t));
}

async function setUpNat(journal: ChangeJournal, pool: AddressPool, dev: string, log: Logger): Promise<void> {
  await journal.apply({ kind: 'sysctl', key: 'net/ipv4/ip_forward', value: '1' });
  await journal.apply({ kind: 'iptables', binary: 'iptables', table: 'nat', chain: 'POSTROUTING', rule: ['-s', formatCidr(pool.v4), '!', '-o', dev, '-j', 'MASQUERADE'] });
  if (pool.v6) {
    // Note: forwarding=1 makes interfaces with accept_ra=1 ignore router advertisements (set accept_ra=2 on SLAAC hosts).
    await journal.apply({ kind: 'sysctl', key: 'net/ipv6/conf/all/forwarding', value: '1' });
    await journal.apply({ kind: 'iptables', binary: 'ip6tables', table: 'nat', chain: 'POSTROUTING', rule: ['-s', formatCidr(pool.v6), '!', '-o', dev, '-j', 'MASQUERADE'] });
  }
  log.info({ pool: pool.description, dev }, 'vpn: NAT (MASQUERADE) and forwarding enabled');
}

async function warnIfNotForwarding(log: Logger): Promise<void> {
  try {
    if ((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim() === '0') {
      log.warn({}, 'vpn: IPv4 forwarding is off: clients reach only this host (use --nat, or enable forwarding and routing yourself)');
    }
  } catch (err) {
    log.debug({ err: toError(err).message }, 'vpn: cannot read ip_forward');
  }
}
