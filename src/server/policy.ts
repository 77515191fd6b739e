/**
 * Destination policy: which targets the server may dial for its users.
 *
 * Without one, a tunnel server is an open door into its own network (SSRF):
 * a user asks for 127.0.0.1:6379, 169.254.169.254:80 (cloud metadata) or
 * 10.0.0.5:22 and the server dials it from the inside. The default refuses
 * every non-public range and the server's own interface addresses.
 *
 * Order of evaluation (first that applies decides):
 *
 *   1. malformed target / port 0               → deny  ("bad-name", "bad-address", "bad-port")
 *   2. port outside `allowPorts` (when set)     → deny  ("port-not-allowed")
 *   3. an explicit `deny` entry or `denyPorts`  → deny  ("deny-rule")
 *   4. an explicit `allow` entry                → allow ("allow-rule")
 *   5. a default-deny range or own address      → deny  ("loopback", "private", "own-address", …)
 *   6. everything else                          → allow ("public"), or deny ("not-allowed")
 *                                                 when `otherwise: 'deny'` (allow-list mode)
 *
 * So `allow: ['127.0.0.1']` lets a local demo reach loopback, `deny:
 * ['*.example.com']` blocks a domain and its subdomains whatever they resolve
 * to, and `deny: ['*:25']` (or `denyPorts: [25]`) blocks SMTP on every family.
 * `0.0.0.0/0:25` is IPv4 only and `[::/0]:25` IPv6 only: an IPv6 block never
 * matches an IPv4 address.
 *
 * Two checks, because DNS can lie (rebinding):
 * - `checkName(host, port)` before resolution: name rules; IP literals get the
 *   full address check here, so a denied literal never reaches connect().
 * - `checkAddress(ip, port, name?)` on every resolved address: a domain that
 *   resolves to 127.0.0.1 is refused unless something allows it. An `allow`
 *   name entry (`allow: ['intranet.corp']`) carries over to the addresses that
 *   name resolves to — it overrides the default ranges (that is what naming an
 *   internal host means) but never an explicit `deny`.
 *
 * IPv6 that embeds IPv4 (our choice, documented): NAT64 `64:ff9b::/96`, SIIT
 * `::ffff:0:a.b.c.d` and 6to4 `2002::/16` addresses are refused when the
 * embedded IPv4 address is in a default range or is our own (a NAT64 gateway
 * next to the server would deliver `64:ff9b::a00:5` to 10.0.0.5), and explicit
 * IPv4 `deny` entries apply to the embedded address too. `allow` entries do
 * not: allow 127.0.0.1 and you still cannot reach it as `64:ff9b::7f00:1`. The
 * local-use NAT64 prefix `64:ff9b:1::/48` is refused outright. Mapped
 * `::ffff:a.b.c.d` addresses are simply IPv4 (see cidr.ts).
 *
 * Entry syntax: `CIDR | IP | HOST | *.suffix | *` with an optional
 * `:PORTS` (`:443`, `:80,443`, `:8000-9000`); IPv6 with ports in brackets
 * (`[::1]:22`, `[fc00::/7]:443`); a bare IPv6 entry ending in `:digits`
 * (`::1:22`) is refused as ambiguous. `*.example.com` matches example.com and
 * every name under it. Names are case-insensitive.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { nullLogger } from '../core/logger.js';
import { normalizeHostName } from '../core/address.js';
import { CidrSet, embeddedIpv4, formatIp, parseIp, tryParseCidr } from './cidr.js';
import type { Cidr, Ip } from './cidr.js';

/** Why a default range is refused. */
export type DefaultDenyReason =
  | 'this-network'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'link-local'
  | 'ietf-protocol'
  | 'documentation'
  | 'benchmark'
  | 'multicast'
  | 'reserved'
  | 'broadcast'
  | 'unspecified'
  | 'unique-local'
  | 'site-local'
  | 'discard'
  | 'nat64-local'
  | 'own-address';

/** Every reason a decision may carry. */
export type PolicyReason =
  | DefaultDenyReason
  | 'bad-name'
  | 'bad-address'
  | 'bad-port'
  | 'port-not-allowed'
  | 'deny-rule'
  | 'not-allowed'
  | 'allow-rule'
  | 'public'
  | 'name-ok';

/** The answer of a check. `rule` names the entry or range that decided, when there is one. */
export interface PolicyDecision {
  readonly allowed: boolean;
  readonly reason: PolicyReason;
  readonly rule?: string;
}

/** The built-in deny list, most of RFC 6890's special-purpose registry. */
export const DEFAULT_DENY: readonly (readonly [string, DefaultDenyReason])[] = [
  ['0.0.0.0/8', 'this-network'],
  ['127.0.0.0/8', 'loopback'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['169.254.0.0/16', 'link-local'],
  ['192.0.0.0/24', 'ietf-protocol'],
  ['192.0.2.0/24', 'documentation'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['198.18.0.0/15', 'benchmark'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['255.255.255.255/32', 'broadcast'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
  ['fc00::/7', 'unique-local'],
  ['ff00::/8', 'multicast'],
  ['100::/64', 'discard'],
  ['2001:db8::/32', 'documentation'],
  ['64:ff9b:1::/48', 'nat64-local'],
];

const DEFAULTS = new CidrSet<DefaultDenyReason>();
for (const [c, r] of DEFAULT_DENY) DEFAULTS.add(c, r);

/** Construction options for {@link DestinationPolicy}. */
export interface DestinationPolicyInit {
  /** Entries that override the default deny ranges. @default [] */
  allow?: readonly string[];
  /** Entries that are always refused (they beat `allow`). @default [] */
  deny?: readonly string[];
  /** When set, every other port is refused. Numbers or `'8000-9000'`. @default undefined (all ports) */
  allowPorts?: readonly (number | string)[];
  /** Ports refused for every destination (same as `deny: ['*:PORT']`). @default [] */
  denyPorts?: readonly (number | string)[];
  /** What happens to a public destination no entry mentions. @default 'allow' */
  otherwise?: 'allow' | 'deny';
  /** Refuse the server's own interface addresses. @default true */
  denyOwnAddresses?: boolean;
  /** Source of own addresses (inject in tests). @default os.networkInterfaces */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  /** How long an interface snapshot is trusted before re-reading. @default 30000 */
  ownAddressTtlMs?: number;
  /** Monotonic clock in ms. @default performance.now */
  now?: () => number;
  /** Prefix for ConfigError locations, e.g. `'config.yaml:egress'`. @default 'policy' */
  where?: string;
  /** @default nullLogger */
  logger?: Logger;
}

type PortRanges = readonly (readonly [number, number])[];
type Target =
  | { readonly kind: 'any' }
  | { readonly kind: 'cidr'; readonly cidr: Cidr }
  | { readonly kind: 'host'; readonly name: string }
  | { readonly kind: 'suffix'; readonly suffix: string };

export { normalizeHostName };

/** One parsed `allow`/`deny` entry. */
export interface PolicyRule {
  /** The entry as written (used as `rule` in decisions). */
  readonly text: string;
  readonly target: Target;
  /** Undefined means every port. */
  readonly ports: PortRanges | undefined;
}

function parsePort(s: string): number | undefined {
  if (!/^[1-9][0-9]{0,4}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

/** Parses `443`, `80,443`, `8000-9000` (mixable). Returns an error message on failure. */
export function parsePorts(text: string): PortRanges | string {
  const out: [number, number][] = [];
  for (const part of text.split(',')) {
    const dash = part.indexOf('-');
    const lo = parsePort(dash < 0 ? part : part.slice(0, dash));
    const hi = dash < 0 ? lo : parsePort(part.slice(dash + 1));
    if (lo === undefined || hi === undefined) return `bad port '${part}' (1-65535)`;
    if (hi < lo) return `bad port range '${part}'`;
    out.push([lo, hi]);
  }
  return out;
}

function portIn(ranges: PortRanges | undefined, port: number): boolean {
  if (ranges === undefined) return true;
  for (const [lo, hi] of ranges) if (port >= lo && port <= hi) return true;
  return false;
}

/** Parses one entry; throws ConfigError naming `where` and the entry. */
export function parsePolicyEntry(entry: string, where: string): PolicyRule {
  const fail = (why: string): never => {
    throw new ConfigError(where, `bad entry '${entry}': ${why}`);
  };
  const t = entry.trim();
  if (t === '') fail('empty entry');
  let hostPart = t;
  let portPart: string | undefined;
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0) fail("missing ']'");
    hostPart = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) fail("expected ':PORTS' after ']'");
      portPart = rest.slice(1);
    }
    if (!hostPart.includes(':')) fail('brackets are only for IPv6');
  } else {
    const first = t.indexOf(':');
    // One colon separates ports; more than one is a bare IPv6 address (no ports).
    if (first >= 0 && t.indexOf(':', first + 1) < 0) {
      hostPart = t.slice(0, first);
      portPart = t.slice(first + 1);
    } else if (first >= 0) {
      // `::1:22` is a valid address (::0.1.0.34) but almost surely meant [::1]:22.
      const last = t.lastIndexOf(':');
      if (/^[0-9][0-9,-]*$/.test(t.slice(last + 1)) && typeof tryParseCidr(t.slice(0, last)) !== 'string') {
        fail(`ambiguous: write [${t.slice(0, last)}]:${t.slice(last + 1)} for ports, or [${t}] for the address`);
      }
    }
  }
  let ports: PortRanges | undefined;
  if (portPart !== undefined) {
    const p = parsePorts(portPart);
    if (typeof p === 'string') return fail(p);
    ports = p;
  }
  let target: Target;
  if (hostPart === '*') target = { kind: 'any' };
  else if (hostPart.startsWith('*.')) {
    const s = normalizeHostName(hostPart.slice(2));
    if (s === undefined) return fail('bad domain suffix');
    target = { kind: 'suffix', suffix: s };
  } else if (hostPart.includes(':') || /^[0-9./]+$/.test(hostPart)) {
    const c = tryParseCidr(hostPart);
    if (typeof c === 'string') return fail(c);
    target = { kind: 'cidr', cidr: c };
  } else {
    const n = normalizeHostName(hostPart);
    if (n === undefined) return fail('not an IP, CIDR or host name');
    target = { kind: 'host', name: n };
  }
  return { text: t, target, ports };
}

/** One list (allow or deny), indexed so lookups do not scan every entry. */
class RuleList {
  /** Port-less CIDR entries: longest-prefix lookup, no scan. */
  readonly #cidrAllPorts = new CidrSet<string>();
  /** CIDR entries with ports: scanned (a /32 with the wrong port must not hide a /8 with the right one). */
  readonly #cidrPorts: PolicyRule[] = [];
  readonly #names = new Map<string, PolicyRule[]>();
  readonly #suffixes = new Map<string, PolicyRule[]>();
  readonly #any: PolicyRule[] = [];

  add(r: PolicyRule): void {
    const t = r.target;
    if (t.kind === 'any') this.#any.push(r);
    else if (t.kind === 'cidr') {
      if (r.ports === undefined) this.#cidrAllPorts.add(t.cidr, r.text);
      else this.#cidrPorts.push(r);
    } else {
      const map = t.kind === 'host' ? this.#names : this.#suffixes;
      const key = t.kind === 'host' ? t.name : t.suffix;
      const arr = map.get(key);
      if (arr) arr.push(r);
      else map.set(key, [r]);
    }
  }

  matchAny(port: number): string | undefined {
    for (const r of this.#any) if (portIn(r.ports, port)) return r.text;
    return undefined;
  }

  matchAddress(ip: Ip, port: number): string | undefined {
    const hit = this.#cidrAllPorts.match(ip);
    if (hit !== undefined) return hit;
    for (const r of this.#cidrPorts) {
      if (r.target.kind === 'cidr' && r.target.cidr.contains(ip) && portIn(r.ports, port)) return r.text;
    }
    return undefined;
  }

  /** `name` must be normalised. Checks exact names, then every parent suffix. */
  matchName(name: string, port: number): string | undefined {
    const pick = (rs: PolicyRule[] | undefined): string | undefined => {
      if (rs) for (const r of rs) if (portIn(r.ports, port)) return r.text;
      return undefined;
    };
    const exact = pick(this.#names.get(name));
    if (exact !== undefined) return exact;
    if (this.#suffixes.size === 0) return undefined;
    // a.b.example.com → tries a.b.example.com, b.example.com, example.com, com.
    for (let i = 0; ; ) {
      const hit = pick(this.#suffixes.get(name.slice(i)));
      if (hit !== undefined) return hit;
      const dot = name.indexOf('.', i);
      if (dot < 0) return undefined;
      i = dot + 1;
    }
  }
}

function portList(items: readonly (number | string)[], where: string): PortRanges {
  const out: (readonly [number, number])[] = [];
  for (const item of items) {
    const p = parsePorts(String(item));
    if (typeof p === 'string') throw new ConfigError(where, p);
    out.push(...p);
  }
  return out;
}

const deny = (reason: PolicyReason, rule?: string): PolicyDecision =>
  rule === undefined ? { allowed: false, reason } : { allowed: false, reason, rule };
const allow = (reason: PolicyReason, rule?: string): PolicyDecision =>
  rule === undefined ? { allowed: true, reason } : { allowed: true, reason, rule };

/**
 * Decides whether the server may dial a destination. Immutable after
 * construction except for the own-address snapshot, which it refreshes itself.
 */
export class DestinationPolicy {
  readonly #allow = new RuleList();
  readonly #deny = new RuleList();
  readonly #allowPorts: PortRanges | undefined;
  readonly #otherwise: 'allow' | 'deny';
  readonly #denyOwn: boolean;
  readonly #interfaces: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  readonly #ownTtl: number;
  readonly #now: () => number;
  readonly #log: Logger;
  #own = new CidrSet<string>();
  #ownAt = Number.NEGATIVE_INFINITY;

  /** Parses every entry now; a bad entry throws ConfigError naming it (`policy.deny[2]: bad entry '…'`). */
  constructor(init: DestinationPolicyInit = {}) {
    const where = init.where ?? 'policy';
    (init.allow ?? []).forEach((e, i) => this.#allow.add(parsePolicyEntry(e, `${where}.allow[${i}]`)));
    (init.deny ?? []).forEach((e, i) => this.#deny.add(parsePolicyEntry(e, `${where}.deny[${i}]`)));
    if (init.denyPorts && init.denyPorts.length > 0) {
      const ports = portList(init.denyPorts, `${where}.denyPorts`);
      this.#deny.add({ text: `denyPorts=${init.denyPorts.join(',')}`, target: { kind: 'any' }, ports });
    }
    this.#allowPorts = init.allowPorts ? portList(init.allowPorts, `${where}.allowPorts`) : undefined;
    this.#otherwise = init.otherwise ?? 'allow';
    this.#denyOwn = init.denyOwnAddresses ?? true;
    this.#interfaces = init.interfaces ?? networkInterfaces;
    this.#ownTtl = init.ownAddressTtlMs ?? 30_000;
    this.#now = init.now ?? (() => performance.now());
    this.#log = init.logger ?? nullLogger;
  }

  /**
   * Check before DNS resolution. IP literals (bare or `[v6]`) get the full
   * address check; names get name rules only and `name-ok` means "resolve it,
   * then run {@link checkAddress} on every address".
   */
  checkName(host: string, port: number): PolicyDecision {
    const ip = parseIp(host);
    if (ip !== undefined) return this.checkAddress(ip, port);
    const name = normalizeHostName(host);
    if (name === undefined) return deny('bad-name');
    const pre = this.#checkPort(port);
    if (pre) return pre;
    const denied = this.#deny.matchAny(port) ?? this.#deny.matchName(name, port);
    if (denied !== undefined) return deny('deny-rule', denied);
    const allowed = this.#allow.matchAny(port) ?? this.#allow.matchName(name, port);
    if (allowed !== undefined) return allow('allow-rule', allowed);
    return allow('name-ok');
  }

  /**
   * Check of one address (a literal or a resolved one). Pass the `name` it was
   * resolved from so that name entries apply (see the module comment).
   */
  checkAddress(ip: string | Ip, port: number, name?: string): PolicyDecision {
    const a = typeof ip === 'string' ? parseIp(ip) : ip;
    if (a === undefined) return deny('bad-address');
    const pre = this.#checkPort(port);
    if (pre) return pre;
    const n = name === undefined ? undefined : normalizeHostName(name);
    const emb = embeddedIpv4(a);
    const denied =
      this.#deny.matchAny(port) ??
      this.#deny.matchAddress(a, port) ??
      (emb && this.#deny.matchAddress(emb, port)) ??
      (n === undefined ? undefined : this.#deny.matchName(n, port));
    if (denied !== undefined) return deny('deny-rule', denied);
    const allowed =
      this.#allow.matchAny(port) ??
      this.#allow.matchAddress(a, port) ??
      (n === undefined ? undefined : this.#allow.matchName(n, port));
    if (allowed !== undefined) return allow('allow-rule', allowed);
    const d = this.#defaultDeny(a);
    if (d) return d;
    if (emb) {
      const e = this.#defaultDeny(emb);
      if (e) return deny(e.reason, `${formatIp(a)} embeds ${formatIp(emb)} (${e.rule ?? e.reason})`);
    }
    return this.#otherwise === 'deny' ? deny('not-allowed') : allow('public');
  }

  /** Re-reads the interface addresses now (otherwise done every `ownAddressTtlMs`). */
  refreshOwnAddresses(): void {
    this.#ownAt = this.#now();
    let ifs: NodeJS.Dict<NetworkInterfaceInfo[]>;
    try {
      ifs = this.#interfaces();
    } catch (err) {
      // Keep the previous snapshot: failing every dial because one syscall failed helps nobody.
      this.#log.warn({ err }, 'egress policy: cannot list interface addresses; keeping the previous list');
      return;
    }
    const set = new CidrSet<string>();
    for (const list of Object.values(ifs)) {
      for (const info of list ?? []) {
        const ip = parseIp(info.address);
        if (ip === undefined) continue;
        set.add(tryParseCidr(formatIp(ip)) as Cidr, info.address);
      }
    }
    this.#own = set;
  }

  #checkPort(port: number): PolicyDecision | undefined {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return deny('bad-port');
    if (this.#allowPorts && !portIn(this.#allowPorts, port)) return deny('port-not-allowed', 'allowPorts');
    return undefined;
  }

  #defaultDeny(a: Ip): PolicyDecision | undefined {
    const hit = DEFAULTS.lookup(a);
    if (hit) return deny(hit.value, hit.cidr.toString());
    if (!this.#denyOwn) return undefined;
    if (this.#now() - this.#ownAt >= this.#ownTtl) this.refreshOwnAddresses();
    const own = this.#own.match(a);
    return own === undefined ? undefined : deny('own-address', own);
  }
}
