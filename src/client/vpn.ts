/**
 * VPN mode, client side: a TUN device whose packets ride the session's
 * datagram lane to the server, with the addresses, MTU, routes and DNS the
 * server hands out (src/tun/vpn-wire.ts).
 *
 * The TUN outlives carrier loss: while the session waits to be resumed, the
 * device, its addresses and routes stay, and packets are dropped (counted),
 * never queued. When SessionClient replaces the session (the server forgot
 * it) the new one is tapped and asked for its config; sticky leases make it
 * the same address, and a different one is applied to the device in place.
 *
 * The TUN has checksum and TCP segmentation offload (src/tun/vnet.ts)
 * unless `offload: false`: the client announces OPEN_OFFLOAD, so the server
 * sends TCP as super-packets, and reads super-packets itself only while the
 * server's CONFIG says it takes them (a failover to a server without it
 * switches reads back to plain packets).
 *
 * Every system change (routes, the host route that pins the server via the
 * old default gateway, resolv.conf) goes through a ChangeJournal whose state
 * file lives in `stateDir`: close() undoes them exactly, SIGTERM included
 * (the CLI calls close()), and the next start after a crash undoes what the
 * crashed run left. Routes through the TUN vanish with the device anyway.
 *
 * `redirectGateway` routes everything through the tunnel without touching
 * the default route: 0.0.0.0/1 + 128.0.0.0/1 (and ::/1 + 8000::/1 when the
 * server gave an IPv6 address) beat `default` by being more specific. Any
 * server address that a tunnelled route would cover gets a host route along
 * the path the kernel used for it before (`ip route get`: normally the old
 * default gateway; a more specific route, if there is one, is honoured), so
 * the carrier never loops into its own tunnel.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ClosedError, PolytunError, TimeoutError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { Lane, Session } from '../session/session.js';
import type { PolyStream } from '../session/stream.js';
import { ChangeJournal, type ChangeRequest } from '../tun/changes.js';
import { TunDevice } from '../tun/device.js';
import { linkSet, runIp } from '../tun/iproute.js';
import { cidrContains, parseIpBytes, parseIpCidr } from '../tun/ipaddr.js';
import { OPEN_OFFLOAD, VPN_FLOW, VPN_GSO_FLOW, VpnMessageDecoder, encodeVpnOpen, VPN_VERSION, type VpnConfig, type VpnMessage } from '../tun/vpn-wire.js';
import { VpnPacketPath, type ClientVpnStats } from './vpn-path.js';

export type { ClientVpnStats } from './vpn-path.js';

/** The server refused to give this client a VPN. */
export class VpnRefusedError extends PolytunError {
  /** VpnRefuseCode from the server, or 0 when the server does not speak VPN at all. */
  readonly refuseCode: number;
  constructor(refuseCode: number, reason: string) {
    super('ERR_VPN_REFUSED', `server refused VPN mode: ${reason}`);
    this.refuseCode = refuseCode;
  }
}

/** What ClientVpn needs of SessionClient. */
export interface VpnSessionSource {
  readonly session: Session | undefined;
  prependListener(event: 'session', listener: (s: Session) => void): unknown;
  off(event: 'session', listener: (s: Session) => void): unknown;
}

/** Options of {@link ClientVpn.start}. */
export interface ClientVpnInit {
  /** The connected client (its current session is used at once). */
  client: VpnSessionSource;
  /** The server hosts as the links name them (backups too): pinned outside the tunnel when a route would cover them. */
  serverHosts: readonly string[];
  /** @default 'polytun0' */
  tunName?: string;
  /** CIDRs routed into the tunnel (besides those the server pushes). @default [] */
  routes?: readonly string[];
  /** Route everything into the tunnel (see the file comment). @default false */
  redirectGateway?: boolean;
  /** Write the pushed DNS servers into `resolvConf` (restored on exit). @default false */
  applyDns?: boolean;
  /** Clamp the MSS of TCP SYNs both ways to fit the TUN MTU. @default false */
  mssClamp?: boolean;
  /** Checksum and TCP segmentation offload (see the file comment). @default true */
  offload?: boolean;
  /** Where the record of system changes is kept. @default $XDG_RUNTIME_DIR/polytun or /run/polytun */
  stateDir?: string;
  /** @default '/etc/resolv.conf' */
  resolvConf?: string;
  /** How long to wait for the server's CONFIG. @default 15000 */
  configTimeoutMs?: number;
  /** @default nullLogger */
  logger?: Logger;
  /** Where to register the VPN's packet counters and the TUN device's. @default nullMetrics */
  metrics?: Metrics;
}

/** The default folder of VPN state files. */
export function defaultStateDir(): string {
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, 'polytun') : '/run/polytun';
}

/** See the file comment. */
export class ClientVpn {
  readonly tun: TunDevice;
  private cfg: VpnConfig;
  private readonly path: VpnPacketPath;
  private readonly log: Logger;
  private control: PolyStream | undefined;
  private closed = false;

  private constructor(
    private readonly init: ClientVpnInit,
    tun: TunDevice,
    config: VpnConfig,
    private readonly journal: ChangeJournal,
    log: Logger,
  ) {
    this.tun = tun;
    this.cfg = config;
    this.log = log;
    this.path = new VpnPacketPath({ tun, mssClamp: init.mssClamp ?? false, session: () => this.init.client.session, ...(init.metrics === undefined ? {} : { metrics: init.metrics }) });
    this.path.setLease(config);
    tun.onPackets(this.path.fromTun);
    tun.onError((err) => this.log.error({ dev: tun.name, err: err.message }, 'vpn: TUN device failed; VPN traffic stops'));
  }

  /**
   * Asks the server for a config, creates the TUN, installs routes (and DNS
   * with `applyDns`). On failure everything done so far is undone.
   * @throws VpnRefusedError, TimeoutError, ConfigError (state file), TunError, SystemChangeError
   */
  static async start(init: ClientVpnInit): Promise<ClientVpn> {
    const log = (init.logger ?? nullLogger).child({ component: 'vpn' });
    const name = init.tunName ?? 'polytun0';
    const session = init.client.session;
    if (!session) throw new ClosedError('session (connect before starting the VPN)');
    const { journal } = await ChangeJournal.open(join(init.stateDir ?? defaultStateDir(), `vpn-${name}.json`), { logger: log });
    // The VPN's datagram flows, taken before the config is asked for: packets may follow it at once.
    let vpn: ClientVpn | undefined;
    const lane = session.lanes.datagrams(VPN_FLOW, VPN_GSO_FLOW, (flow, p) => vpn?.fromServer(p, flow));
    const offload = init.offload ?? true;
    let got: Awaited<ReturnType<typeof requestConfig>>;
    try {
      got = await requestConfig(session, init.configTimeoutMs ?? 15_000, offload, init.routes);
    } catch (err) {
      lane.close(); // a later start on this session takes the flows afresh
      throw err;
    }
    const { config, stream, decoder } = got;
    let tun: TunDevice | undefined;
    try {
      tun = await TunDevice.create({ name, mtu: config.mtu, addresses: addressesOf(config), txqueuelen: 1000, offload, readOffload: config.offload === true, ...(init.metrics === undefined ? {} : { metrics: init.metrics }) });
      vpn = new ClientVpn(init, tun, config, journal, log);
      vpn.lanes.push({ session, lane });
      vpn.adoptControl(stream, decoder);
      await vpn.installRoutes();
      await vpn.applyDns();
      init.client.prependListener('session', vpn.onSession);
      log.info({ dev: name, addr4: config.addr4.ip, ...(config.addr6 ? { addr6: config.addr6.ip } : {}), mtu: config.mtu, offload: tun.offload && config.offload === true }, 'vpn up');
      return vpn;
    } catch (err) {
      lane.close();
      stream.destroy();
      await journal.undoAll();
      tun?.close();
      throw err;
    }
  }

  /** The config the server sent last. */
  get config(): VpnConfig {
    return this.cfg;
  }

  /** Packet counters. */
  get stats(): ClientVpnStats {
    return { ...this.path.counters };
  }

  /** Gives the lease back, restores routing and DNS, removes the TUN. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.init.client.off('session', this.onSession);
    for (const l of this.lanes.splice(0)) l.lane.close();
    this.control?.end();
    this.path.stop();
    await this.journal.undoAll();
    this.tun.close();
    this.log.info({ ...this.stats }, 'vpn closed; routing restored');
  }

  private fromServer(p: Buffer, flow: number): void {
    if (flow === VPN_FLOW) this.path.fromServer(p);
    else this.path.fromServerGso(p);
  }

  /** The VPN's datagram lane on each session it has used (closed with the VPN). */
  private lanes: { session: Session; lane: Lane }[] = [];

  private readonly onSession = (s: Session): void => {
    if (this.closed) return;
    // Lanes of sessions that ended are gone with them; a session we moved away from (failover) keeps delivering.
    this.lanes = this.lanes.filter((l) => l.session.state !== 'closed');
    this.lanes.push({ session: s, lane: s.lanes.datagrams(VPN_FLOW, VPN_GSO_FLOW, (flow, p) => this.fromServer(p, flow)) });
    requestConfig(s, this.init.configTimeoutMs ?? 15_000, this.init.offload ?? true, this.init.routes).then(
      ({ config, stream, decoder }) => {
        if (this.closed) return stream.end();
        this.adoptControl(stream, decoder);
        this.applyConfig(config).catch((err: unknown) => this.log.error({ err: toError(err).message }, 'vpn: cannot apply the new config'));
      },
      (err: unknown) => this.log.error({ err: toError(err).message }, 'vpn: the new session gave no VPN config; VPN traffic stops'),
    );
  };

  /** Keeps the control stream: later CONFIGs are applied; its end is reported. */
  private adoptControl(stream: PolyStream, dec: VpnMessageDecoder): void {
    // A VPN stream on a session we moved away from (failover) gives its lease back.
    if (this.control && this.control !== stream && !this.control.destroyed) this.control.end();
    this.control = stream;
    stream.on('data', (chunk: Buffer) => {
      try {
        for (const m of dec.push(chunk)) {
          if (m.type === 'config') this.applyConfig(m.config).catch((err: unknown) => this.log.error({ err: toError(err).message }, 'vpn: cannot apply the new config'));
        }
      } catch (err) {
        this.log.warn({ err: toError(err).message }, 'vpn: malformed message from the server');
        stream.destroy();
      }
    });
    stream.on('error', (err: Error) => this.log.debug({ err: err.message }, 'vpn control stream error'));
    stream.once('close', () => {
      if (!this.closed && this.control === stream && this.init.client.session?.state === 'open') {
        this.log.warn({}, 'vpn: the server ended the VPN on this session');
      }
    });
    stream.resume(); // requestConfig paused it so that nothing is lost in between
  }

  /** A CONFIG on a running VPN: new addresses or MTU go onto the device in place. */
  private async applyConfig(next: VpnConfig): Promise<void> {
    const prev = this.cfg;
    this.cfg = next;
    this.path.setLease(next);
    if ((next.offload === true) !== (prev.offload === true)) this.tun.setReadOffload(next.offload === true);
    const before = addressesOf(prev);
    const after = addressesOf(next);
    for (const a of before) if (!after.includes(a)) await runIp(['addr', 'del', a, 'dev', this.tun.name]);
    for (const a of after) if (!before.includes(a)) await runIp(['addr', 'add', a, 'dev', this.tun.name, ...(a.includes(':') ? ['nodad'] : [])]);
    if (next.mtu !== prev.mtu) await linkSet(this.tun.name, { mtu: next.mtu });
    if (before.join() !== after.join() || next.mtu !== prev.mtu) this.log.info({ addresses: after, mtu: next.mtu }, 'vpn: server changed our addresses or MTU; device updated');
  }

  private async installRoutes(): Promise<void> {
    const dev = this.tun.name;
    const want = [...this.cfg.routes, ...(this.init.routes ?? [])].filter((r) => {
      if (!r.includes(':') || this.cfg.addr6) return true;
      this.log.warn({ route: r }, 'vpn: IPv6 route skipped: the server gave no IPv6 address');
      return false;
    });
    const redirect = this.init.redirectGateway ?? false;
    const tunnelled = [...want];
    if (redirect) tunnelled.push('0.0.0.0/1', '128.0.0.0/1', ...(this.cfg.addr6 ? ['::/1', '8000::/1'] : []));
    // Host routes first: the carrier must keep its way to the server once routes point into the TUN.
    const changes: ChangeRequest[] = [...(await this.pinServers(tunnelled)), ...tunnelled.map((dst): ChangeRequest => ({ kind: 'route', dst, dev }))];
    for (const c of changes) await this.journal.apply(c);
    if (changes.length > 0) this.log.info({ routes: changes.map((c) => (c.kind === 'route' ? `${c.dst}${c.via ? ` via ${c.via}` : ''}` : c.kind)) }, 'vpn routes installed');
  }

  /**
   * Host routes to the server addresses that `routes` would otherwise send
   * into the tunnel, along the way the kernel reaches them now (normally the
   * old default gateway).
   */
  private async pinServers(routes: readonly string[]): Promise<ChangeRequest[]> {
    const ips = new Set<string>();
    for (const host of this.init.serverHosts) {
      if (isIP(host) !== 0) ips.add(host);
      else for (const a of await lookup(host, { all: true })) ips.add(a.address);
    }
    const cidrs = routes.map((r) => parseIpCidr(r, 'route'));
    const out: ChangeRequest[] = [];
    for (const ip of ips) {
      const bytes = parseIpBytes(ip);
      if (!bytes || !cidrs.some((c) => c.bytes.length === bytes.length && cidrContains(c, bytes))) continue;
      const via = await routeTo(ip);
      if (via === undefined || via.dev === 'lo') {
        this.log.warn({ server: ip }, 'vpn: no route to the server to pin; the carrier may loop into the tunnel');
        continue;
      }
      out.push({ kind: 'route', dst: `${ip}/${bytes.length === 4 ? 32 : 128}`, dev: via.dev, ifExists: 'skip', ...(via.gateway ? { via: via.gateway } : {}) });
    }
    return out;
  }

  private async applyDns(): Promise<void> {
    const dns = this.cfg.dns;
    if (dns.length === 0) return;
    if (!this.init.applyDns) {
      this.log.info({ dns }, 'vpn: server suggests DNS servers (not applied; use --apply-dns)');
      return;
    }
    const path = this.init.resolvConf ?? '/etc/resolv.conf';
    const text = `# written by polytun (VPN); the previous file is restored when polytun exits\n${dns.map((d) => `nameserver ${d}`).join('\n')}\n`;
    await this.journal.apply({ kind: 'file', path, content: text });
    this.log.info({ dns, path }, 'vpn: DNS servers applied');
  }
}

/** How the kernel reaches `ip` now (`ip route get`). */
async function routeTo(ip: string): Promise<{ dev: string; gateway?: string } | undefined> {
  const out = await runIp([isIP(ip) === 6 ? '-6' : '-4', '-j', 'route', 'get', ip]);
  const r = (JSON.parse(out) as { dev?: string; gateway?: string }[])[0];
  if (r?.dev === undefined) return undefined;
  return r.gateway === undefined ? { dev: r.dev } : { dev: r.dev, gateway: r.gateway };
}

function addressesOf(c: VpnConfig): string[] {
  const a = [`${c.addr4.ip}/${c.addr4.prefix}`];
  if (c.addr6) a.push(`${c.addr6.ip}/${c.addr6.prefix}`);
  return a;
}

/** Opens the control stream on `session` (announcing offload) and waits for the first CONFIG (or a refusal). */
function requestConfig(session: Session, timeoutMs: number, offload: boolean, routes: readonly string[] = []): Promise<{ config: VpnConfig; stream: PolyStream; decoder: VpnMessageDecoder }> {
  // Our routes go along: the server refuses, with a reason, those its policy would drop.
  const stream = session.openStream(encodeVpnOpen(VPN_VERSION, offload ? OPEN_OFFLOAD : 0, routes));
  const decoder = new VpnMessageDecoder();
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      cleanup();
      stream.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      let msgs;
      try {
        msgs = decoder.push(chunk);
      } catch (err) {
        return fail(toError(err));
      }
      if (msgs.length === 0) return;
      const refused = msgs.find((m) => m.type === 'refuse');
      if (refused?.type === 'refuse') return fail(new VpnRefusedError(refused.code, refused.reason));
      cleanup();
      stream.pause(); // the caller's adoptControl() takes over reading
      const last = msgs[msgs.length - 1] as Extract<VpnMessage, { type: 'config' }>;
      resolve({ config: last.config, stream, decoder });
    };
    const onError = (err: Error): void =>
      fail(err.name === 'StreamResetError' ? new VpnRefusedError(0, 'the server does not offer VPN mode (start it with --tun)') : err);
    const onClose = (): void => fail(new ClosedError('VPN control stream (ended before the config arrived)'));
    const timer = setTimeout(() => fail(new TimeoutError('waiting for the VPN config from the server')), timeoutMs);
    // The error listener stays (inert once settled): an error before adoptControl() must not go uncaught.
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('close', onClose);
    };
    stream.on('data', onData);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
