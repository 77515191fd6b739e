/**
 * Checks for the value types polytun's config uses: `HOST:PORT` addresses,
 * listen URLs, `-L`/`-R` forward specs, policy entries, port ranges, links.
 * Each one parses text into a typed value, so the rest of the program never
 * re-parses a string the config already checked.
 */
import { isIP } from 'node:net';
import { formatHostPort, normalizeHostName, parseHostPort } from '../core/address.js';
import { ConfigError } from '../core/errors.js';
import { decodeLink, type ClientLink } from './link.js';
import { parsePolicyEntry, parsePorts } from '../server/policy.js';
import { expected, type Check, type ConfigPath, type ValidationContext } from './check.js';

/** A host and a port. The host is an IP literal (IPv6 without brackets) or a name. */
export interface HostPort {
  host: string;
  port: number;
}

/** Carriers a server can listen on. */
export const LISTEN_SCHEMES = ['tcp', 'tls', 'ws', 'wss', 'udp'] as const;
/** A carrier a server can listen on. */
export type ListenScheme = (typeof LISTEN_SCHEMES)[number];

/** One parsed `listen` URL, e.g. `tls://0.0.0.0:443`. */
export interface ListenUrl extends HostPort {
  scheme: ListenScheme;
  /** Canonical text (`tcp://[::]:4433`), for logs and messages. */
  url: string;
  /** `tcp://HOST:PORT?mptcp`: a kernel MPTCP listener (IP literal host, native addon). */
  mptcp?: true;
}

/** One `-L` / `-R` forward: listen on bind host:port, connect to host:port on the other side. */
export interface ForwardSpec {
  bindHost: string;
  bindPort: number;
  host: string;
  port: number;
  /** `/udp` suffix: forward datagrams instead of a byte stream (`-L` only). */
  udp: boolean;
  /** The spec as written, for logs. */
  spec: string;
}

/** Inclusive port ranges, `[[1024, 65535]]`. */
export type PortRangeList = [number, number][];

/** Where a forward listens when the spec names no bind address: loopback, like ssh. */
export const DEFAULT_FORWARD_BIND = '127.0.0.1';

/** Strips a ConfigError's own `where: ` prefix so our location can replace it. */
function bare(err: unknown, where: string): string {
  if (err instanceof ConfigError && err.message.startsWith(`${where}: `)) return err.message.slice(where.length + 2);
  return err instanceof Error ? err.message : String(err);
}

function isHost(h: string): boolean {
  return (isIP(h) !== 0 && !h.includes('%')) || normalizeHostName(h) !== undefined;
}

/** `HOST:PORT` / `[v6]:PORT`. Port 0 (pick a free port) only for listen addresses when `allowZero`. */
export function hostPort(allowZero = false): Check<HostPort> {
  const what = 'HOST:PORT';
  return (v, path, ctx) => {
    if (typeof v !== 'string') return expected(ctx, path, what, v);
    try {
      const d = parseHostPort(v);
      if (d.port === 0 && !allowZero) return expected(ctx, path, `${what} with a port from 1 to 65535`, v);
      return { host: d.host, port: d.port };
    } catch {
      return expected(ctx, path, what, v);
    }
  };
}

/** A host name or IP literal (no port). */
export const host: Check<string> = (v, path, ctx) =>
  typeof v === 'string' && isHost(v) ? v : expected(ctx, path, 'a host name or IP address', v);

/** A loopback `HOST:PORT` (127.0.0.0/8, ::1, localhost): for endpoints that must not face the network. */
export function loopbackHostPort(): Check<HostPort> {
  const inner = hostPort(true);
  return (v, path, ctx) => {
    const hp = inner(v, path, ctx);
    if (hp !== undefined && !isLoopbackHost(hp.host)) {
      ctx.issue(path, `must be a loopback address (127.0.0.1, ::1 or localhost), got ${JSON.stringify(v)}`);
    }
    return hp;
  };
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(h: string): boolean {
  const l = h.toLowerCase();
  return l === 'localhost' || l === '::1' || /^(?:::ffff:)?127\.\d+\.\d+\.\d+$/.test(l);
}

/** Parses `scheme://HOST:PORT[?mptcp]`; returns the error text on failure. */
export function parseListenUrl(text: string): ListenUrl | string {
  let body = text.trim();
  let mptcp = false;
  const q = body.indexOf('?');
  if (q >= 0) {
    const query = body.slice(q + 1);
    if (query !== 'mptcp') return `unknown listen option '?${query}' in ${JSON.stringify(text)} (only tcp://HOST:PORT?mptcp)`;
    mptcp = true;
    body = body.slice(0, q);
  }
  const m = /^([a-z][a-z0-9+]*):\/\/(.+?)\/?$/i.exec(body);
  const schemes = LISTEN_SCHEMES.join('|');
  if (!m) return `expected ${schemes}://HOST:PORT, got ${JSON.stringify(text)}`;
  const scheme = (m[1] ?? '').toLowerCase();
  if (!(LISTEN_SCHEMES as readonly string[]).includes(scheme)) return `unknown listen scheme '${scheme}' (${LISTEN_SCHEMES.join(', ')})`;
  if (mptcp && scheme !== 'tcp') return `?mptcp works on tcp:// listeners only, got ${JSON.stringify(text)}`;
  try {
    const d = parseHostPort(m[2] ?? '');
    if (mptcp && isIP(d.host) === 0) return `an MPTCP listener needs an IP address, got ${JSON.stringify(d.host)} in ${JSON.stringify(text)}`;
    return { scheme: scheme as ListenScheme, host: d.host, port: d.port, url: `${scheme}://${formatHostPort(d)}${mptcp ? '?mptcp' : ''}`, ...(mptcp ? { mptcp: true as const } : {}) };
  } catch (err) {
    return `bad address in ${JSON.stringify(text)}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** A listen URL: `tcp://`, `tls://`, `ws://` or `wss://HOST:PORT` (ws/wss: users are told apart by their URL path). */
export const listenUrl: Check<ListenUrl> = (v, path, ctx) => {
  if (typeof v !== 'string') return expected(ctx, path, `${LISTEN_SCHEMES.join('|')}://HOST:PORT`, v);
  const r = parseListenUrl(v);
  if (typeof r === 'string') {
    ctx.issue(path, r);
    return undefined as unknown as ListenUrl;
  }
  return r;
};

/** Splits on ':' outside `[...]`, so `[::1]:80:host:80` has four parts. */
function splitColons(s: string): string[] | undefined {
  const parts: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of s) {
    if (ch === '[') depth++;
    else if (ch === ']') depth--;
    if (depth < 0 || depth > 1) return undefined;
    if (ch === ':' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) return undefined;
  parts.push(cur);
  return parts.map((p) => (p.startsWith('[') && p.endsWith(']') ? p.slice(1, -1) : p));
}

function port(s: string, allowZero: boolean): number | undefined {
  if (!/^[0-9]{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n > 65535 || (n === 0 && !allowZero) ? undefined : n;
}

/**
 * Parses `[BIND:]PORT:HOST:PORT[/udp]`. `udp` is refused when `allowUdp` is
 * false (reverse forwards carry streams only). Returns the error text on failure.
 */
export function parseForward(text: string, allowUdp: boolean): ForwardSpec | string {
  const form = `[BIND:]PORT:HOST:PORT${allowUdp ? '[/udp]' : ''}`;
  let body = text.trim();
  let udp = false;
  const slash = body.lastIndexOf('/');
  if (slash >= 0) {
    const proto = body.slice(slash + 1).toLowerCase();
    if (proto === 'udp' && allowUdp) udp = true;
    else if (proto !== 'tcp') return `expected ${form}, got ${JSON.stringify(text)} (unknown suffix '/${proto}')`;
    body = body.slice(0, slash);
  }
  const parts = splitColons(body);
  if (!parts || (parts.length !== 3 && parts.length !== 4)) return `expected ${form}, got ${JSON.stringify(text)}`;
  const [bindHost, bindPortText, targetHost, targetPortText] = parts.length === 4 ? parts : [DEFAULT_FORWARD_BIND, ...parts];
  const bindPort = port(bindPortText ?? '', false);
  const targetPort = port(targetPortText ?? '', false);
  if (bindPort === undefined) return `bad listen port in ${JSON.stringify(text)} (1-65535)`;
  if (targetPort === undefined) return `bad target port in ${JSON.stringify(text)} (1-65535)`;
  if (!isHost(bindHost ?? '')) return `bad bind address '${bindHost ?? ''}' in ${JSON.stringify(text)}`;
  if (!isHost(targetHost ?? '')) return `bad target host '${targetHost ?? ''}' in ${JSON.stringify(text)}`;
  return { bindHost: bindHost ?? '', bindPort, host: targetHost ?? '', port: targetPort, udp, spec: text.trim() };
}

/** A forward spec (`-L` when `allowUdp`, `-R` otherwise). */
export function forward(allowUdp: boolean): Check<ForwardSpec> {
  return (v, path, ctx) => {
    if (typeof v !== 'string') return expected(ctx, path, `[BIND:]PORT:HOST:PORT${allowUdp ? '[/udp]' : ''}`, v);
    const r = parseForward(v, allowUdp);
    if (typeof r === 'string') {
      ctx.issue(path, r);
      return undefined as unknown as ForwardSpec;
    }
    return r;
  };
}

/** A destination policy entry (syntax in src/server/policy.ts), kept as text. */
export const policyEntry: Check<string> = (v, path, ctx) => {
  if (typeof v !== 'string') return expected(ctx, path, 'a policy entry (CIDR, IP, HOST or *.suffix, optional :PORTS)', v);
  try {
    parsePolicyEntry(v, 'entry');
  } catch (err) {
    ctx.issue(path, bare(err, 'entry'));
  }
  return v;
};

/** Port ranges: a list of `443`, `'8000-9000'`, `'80,443'`. */
export const portRanges: Check<PortRangeList> = (v, path, ctx) => {
  if (!Array.isArray(v)) return expected(ctx, path, "a list of ports or ranges (443, '8000-9000')", v);
  const out: PortRangeList = [];
  v.forEach((item, i) => {
    const r = typeof item === 'number' || typeof item === 'string' ? parsePorts(String(item)) : undefined;
    if (r === undefined || typeof r === 'string') {
      ctx.issue([...path, i], r ?? `expected a port or range, got ${typeof item}`);
      return;
    }
    for (const [lo, hi] of r) out.push([lo, hi]);
  });
  return out;
};

/** A polytun:// link, decoded. The credential never appears in messages. */
export const link: Check<ClientLink> = (v, path: ConfigPath, ctx: ValidationContext) => {
  if (typeof v !== 'string') return expected(ctx, path, 'a polytun:// link', v, true);
  try {
    return decodeLink(v, 'link');
  } catch (err) {
    ctx.issue(path, bare(err, 'link'));
    return undefined as unknown as ClientLink;
  }
};
