/**
 * Small typed helpers around iproute2's `ip`, run with execFile (no shell,
 * so no quoting or injection issues). Every helper can target a network
 * namespace (`ip -n NS …`) and fails with IprouteError carrying ip's stderr.
 * Inputs are validated first so a bad CIDR reads as a ConfigError, not as
 * an obscure `ip` usage message.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { AbortedError, ConfigError, PolytunError, TimeoutError } from '../core/errors.js';

/** `ip` exited non-zero (or could not be run); `stderr` holds its complaint. */
export class IprouteError extends PolytunError {
  /** The arguments given to `ip`. */
  readonly args: readonly string[];
  readonly stderr: string;
  /** ip's exit status, or undefined when it could not be started. */
  readonly exitCode: number | undefined;
  constructor(args: readonly string[], stderr: string, exitCode: number | undefined, options?: { cause?: unknown }) {
    const what = exitCode === undefined ? 'could not be run' : `exited with ${exitCode}`;
    super('ERR_IPROUTE', `\`ip ${args.join(' ')}\` ${what}${stderr ? `: ${stderr.trim()}` : ''}`, options);
    this.args = args;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

/** Options shared by every helper. */
export interface IpOptions {
  /** Run inside this network namespace (`ip -n NS`). @default the current one */
  netns?: string;
  /** Cancels the command (the child is killed); rejects with AbortedError. */
  signal?: AbortSignal;
  /** Kill `ip` after this long; rejects with TimeoutError. @default 10000 */
  timeoutMs?: number;
}

const NAME_RE = /^[^\s/%]{1,15}$/;
const NETNS_RE = /^[A-Za-z0-9_.-]{1,64}$/;

function checkDev(dev: string): string {
  if (!NAME_RE.test(dev) || dev.startsWith('-')) throw new ConfigError('ip', `invalid device name '${dev}'`);
  return dev;
}

/** Validates `a.b.c.d/len` or `x::y/len` and returns it unchanged. */
export function checkCidr(cidr: string): string {
  const slash = cidr.indexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const fam = net.isIP(addr);
  const prefix = slash < 0 ? undefined : cidr.slice(slash + 1);
  const bad = prefix !== undefined && (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (fam === 4 ? 32 : 128));
  if (fam === 0 || bad) throw new ConfigError('ip', `invalid CIDR '${cidr}'`);
  return cidr;
}

function checkIp(ip: string): string {
  if (net.isIP(ip) === 0) throw new ConfigError('ip', `invalid IP address '${ip}'`);
  return ip;
}

/** Runs `ip [-n NS] ...args` and resolves with its stdout. */
export function runIp(args: readonly string[], opts: IpOptions = {}): Promise<string> {
  if (opts.netns !== undefined && !NETNS_RE.test(opts.netns)) {
    return Promise.reject(new ConfigError('ip', `invalid namespace name '${opts.netns}'`));
  }
  const full = opts.netns === undefined ? [...args] : ['-n', opts.netns, ...args];
  return new Promise((resolve, reject) => {
    const execOpts: { timeout: number; signal?: AbortSignal } = { timeout: opts.timeoutMs ?? 10_000 };
    if (opts.signal !== undefined) execOpts.signal = opts.signal;
    execFile('ip', full, execOpts, (err, stdout, stderr) => {
      if (err === null) return resolve(stdout);
      if (opts.signal?.aborted) return reject(new AbortedError(opts.signal.reason));
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
      if (e.killed === true) return reject(new TimeoutError(`ip ${full.join(' ')}`));
      if (typeof e.code === 'number') return reject(new IprouteError(full, stderr, e.code, { cause: err }));
      const why = e.code === 'ENOENT' ? 'iproute2 `ip` not found in PATH' : String(e.code ?? e.message);
      reject(new IprouteError(full, why, undefined, { cause: err }));
    });
  });
}

/** What `linkSet` may change on a link. */
export interface LinkChanges {
  mtu?: number;
  txqueuelen?: number;
  up?: boolean;
}

/** `ip link set dev DEV [mtu M] [txqueuelen Q] [up|down]` in one command. */
export async function linkSet(dev: string, changes: LinkChanges, opts?: IpOptions): Promise<void> {
  const args = ['link', 'set', 'dev', checkDev(dev)];
  if (changes.mtu !== undefined) args.push('mtu', String(positiveInt(changes.mtu, 'mtu')));
  if (changes.txqueuelen !== undefined) args.push('txqueuelen', String(positiveInt(changes.txqueuelen, 'txqueuelen')));
  if (changes.up !== undefined) args.push(changes.up ? 'up' : 'down');
  await runIp(args, opts);
}

/** `ip link set dev DEV up`. */
export function linkUp(dev: string, opts?: IpOptions): Promise<void> {
  return linkSet(dev, { up: true }, opts);
}

/** Moves a link into another namespace (`ip link set dev DEV netns NS`); a TUN fd keeps working. */
export async function linkSetNetns(dev: string, netns: string, opts?: IpOptions): Promise<void> {
  if (!NETNS_RE.test(netns)) throw new ConfigError('ip', `invalid namespace name '${netns}'`);
  await runIp(['link', 'set', 'dev', checkDev(dev), 'netns', netns], opts);
}

/** True when the link exists (`ip link show dev DEV` succeeds). */
export async function linkExists(dev: string, opts?: IpOptions): Promise<boolean> {
  try {
    await runIp(['link', 'show', 'dev', checkDev(dev)], opts);
    return true;
  } catch (err) {
    if (err instanceof IprouteError && err.exitCode !== undefined) return false;
    throw err;
  }
}

/** Options of addAddress. */
export interface AddAddressOptions extends IpOptions {
  /** IPv6 only: skip duplicate address detection (the address is usable at once). @default false */
  nodad?: boolean;
}

/** `ip addr add CIDR dev DEV [nodad]`. */
export async function addAddress(dev: string, cidr: string, opts?: AddAddressOptions): Promise<void> {
  const args = ['addr', 'add', checkCidr(cidr), 'dev', checkDev(dev)];
  if (opts?.nodad === true) args.push('nodad');
  await runIp(args, opts);
}

/** Addresses on a link as `addr/prefixlen` (from `ip -j addr show dev DEV`). */
export async function listAddresses(dev: string, opts?: IpOptions): Promise<string[]> {
  const out = await runIp(['-j', 'addr', 'show', 'dev', checkDev(dev)], opts);
  const links = parseJson(out, 'ip -j addr show') as { addr_info?: { local?: string; prefixlen?: number }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
}

/** Where a route points: out of a device, via a gateway, or both. */
export interface RouteTarget {
  dev?: string;
  via?: string;
  metric?: number;
  /** Routing table name or number. @default main */
  table?: string | number;
}

function routeArgs(verb: 'add' | 'del' | 'replace', cidr: string, to: RouteTarget): string[] {
  const fam = net.isIP(checkCidr(cidr).split('/')[0] ?? '') === 6 ? ['-6'] : [];
  const args = [...fam, 'route', verb, cidr];
  if (to.via !== undefined) args.push('via', checkIp(to.via));
  if (to.dev !== undefined) args.push('dev', checkDev(to.dev));
  if (to.metric !== undefined) args.push('metric', String(positiveInt(to.metric, 'metric', 0)));
  if (to.table !== undefined) args.push('table', String(to.table));
  if (to.via === undefined && to.dev === undefined && verb !== 'del') throw new ConfigError('ip', `route ${cidr}: needs dev or via`);
  return args;
}

/** `ip route add CIDR [via GW] [dev DEV] …`. */
export async function addRoute(cidr: string, to: RouteTarget, opts?: IpOptions): Promise<void> {
  await runIp(routeArgs('add', cidr, to), opts);
}

/** `ip route del CIDR [via GW] [dev DEV] …`. */
export async function delRoute(cidr: string, to: RouteTarget = {}, opts?: IpOptions): Promise<void> {
  await runIp(routeArgs('del', cidr, to), opts);
}

/**
 * Pins a route to one host (`/32` or `/128`), typically the tunnel server
 * via the old default gateway, so tunnel traffic does not loop into the TUN.
 * Uses `replace`, so re-pinning after a gateway change is not an error.
 */
export async function addHostRoute(ip: string, to: RouteTarget, opts?: IpOptions): Promise<void> {
  const cidr = `${checkIp(ip)}/${net.isIP(ip) === 4 ? 32 : 128}`;
  await runIp(routeArgs('replace', cidr, to), opts);
}

/** A default route as `ip -j route show default` reports it. */
export interface DefaultRoute {
  family: 4 | 6;
  /** The next hop; absent for a device route (point-to-point link). */
  gateway?: string;
  dev: string;
  /** @default 0 */
  metric: number;
}

/** Picks the preferred (lowest-metric) default route out of `ip -j route show default` output. */
export function parseDefaultRoute(json: string, family: 4 | 6): DefaultRoute | undefined {
  const routes = parseJson(json, 'ip -j route show default') as { dst?: string; gateway?: string; dev?: string; metric?: number }[];
  let best: DefaultRoute | undefined;
  for (const r of routes) {
    if (r.dst !== 'default' || typeof r.dev !== 'string') continue;
    const route: DefaultRoute = { family, dev: r.dev, metric: r.metric ?? 0 };
    if (typeof r.gateway === 'string') route.gateway = r.gateway;
    if (best === undefined || route.metric < best.metric) best = route;
  }
  return best;
}

/** The current default route of `family`, or undefined when there is none. */
export async function getDefaultRoute(family: 4 | 6, opts?: IpOptions): Promise<DefaultRoute | undefined> {
  const out = await runIp([family === 6 ? '-6' : '-4', '-j', 'route', 'show', 'default'], opts);
  return parseDefaultRoute(out, family);
}

function parseJson(text: string, what: string): unknown[] {
  if (text.trim() === '') return [];
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new IprouteError([what], `unparsable JSON output: ${text.slice(0, 200)}`, 0, { cause: err });
  }
  if (!Array.isArray(v)) throw new IprouteError([what], 'JSON output is not an array', 0);
  return v;
}

function positiveInt(v: number, what: string, min = 1): number {
  if (!Number.isInteger(v) || v < min || v > 0xffffffff) throw new ConfigError('ip', `${what} must be an integer >= ${min}, got ${v}`);
  return v;
}
