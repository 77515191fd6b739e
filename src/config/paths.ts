/**
 * Bonding paths on the command line and in the config:
 *
 *   --path URL[,bind=IFACE|ADDR][,role=primary|backup][,weight=N][,mptcp]
 *
 * URL is a carrier URL (`tcp://HOST:PORT`, `tls://HOST:PORT`, `udp://HOST:PORT`) of the same
 * server (or a server of the same fleet: same key) that the link names.
 * `bind` is a local interface name (SO_BINDTODEVICE, needs the native addon
 * and root/CAP_NET_RAW) or a local address (source address selection).
 */
import { isIP } from 'node:net';
import type { Check } from './check.js';
import { expected } from './check.js';

export interface PathConfig {
  scheme: 'tcp' | 'tls' | 'udp';
  host: string;
  port: number;
  /** Local interface to bind to. */
  device?: string;
  /** Local source address. */
  localAddress?: string;
  role: 'primary' | 'backup';
  weight: number;
  /** Use a kernel MPTCP socket for this path. */
  mptcp: boolean;
  /** The spec as written (for logs). */
  spec: string;
}

const IFACE = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** Parses one path spec; returns the error text on failure. */
export function parsePathSpec(text: string): PathConfig | string {
  const [urlText, ...opts] = text.split(',').map((s) => s.trim());
  let url: URL;
  try {
    url = new URL(urlText ?? '');
  } catch {
    return `expected URL[,bind=IFACE|ADDR][,role=primary|backup][,weight=N], got ${JSON.stringify(text)}`;
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme !== 'tcp' && scheme !== 'tls' && scheme !== 'udp') return `path carrier must be tcp://, tls:// or udp://, got '${scheme}://'`;
  const port = Number(url.port);
  if (!url.port || !Number.isInteger(port) || port < 1 || port > 65535) return `path URL needs a port: ${JSON.stringify(urlText)}`;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!host) return `path URL needs a host: ${JSON.stringify(urlText)}`;
  const out: PathConfig = { scheme, host, port, role: 'primary', weight: 1, mptcp: false, spec: text.trim() };
  for (const o of opts) {
    const eq = o.indexOf('=');
    const k = eq < 0 ? o : o.slice(0, eq);
    const v = eq < 0 ? '' : o.slice(eq + 1);
    if (k === 'bind') {
      if (isIP(v)) out.localAddress = v;
      else if (IFACE.test(v)) out.device = v;
      else return `bad bind '${v}': an interface name or an IP address`;
    } else if (k === 'role') {
      if (v !== 'primary' && v !== 'backup') return `bad role '${v}': primary or backup`;
      out.role = v;
    } else if (k === 'weight') {
      const w = Number(v);
      if (!Number.isFinite(w) || w <= 0 || w > 1000) return `bad weight '${v}': a number above 0 (at most 1000)`;
      out.weight = w;
    } else if (k === 'mptcp' && v === '') out.mptcp = true;
    else return `unknown path option '${k}' (bind=, role=, weight=, mptcp)`;
  }
  if (out.mptcp && out.scheme === 'udp') return `mptcp is a TCP option, not for a udp:// path: ${JSON.stringify(text)}`;
  if (out.device !== undefined && out.scheme === 'udp') return `bind=IFACE is not supported on udp:// paths yet; bind to the interface's address instead: ${JSON.stringify(text)}`;
  return out;
}

/** A path spec check for the config validator. */
export const pathSpec: Check<PathConfig> = (v, path, ctx) => {
  if (typeof v !== 'string') return expected(ctx, path, 'URL[,bind=IFACE|ADDR][,role=primary|backup][,weight=N]', v);
  const r = parsePathSpec(v);
  if (typeof r === 'string') {
    ctx.issue(path, r);
    return undefined as unknown as PathConfig;
  }
  return r;
};
