/**
 * The `vpn:` section of both configs (VPN mode, src/server/vpn.ts and
 * src/client/vpn.ts), its defaults and checks. schema.ts plugs these in.
 *
 * Server (present when a pool is set, `--tun`):   Client (present with `--tun`):
 *   vpn:                                            vpn:
 *     pool: 10.8.0.0/24,fd00:8::/64                   enabled: true
 *     nat: true                                       routes: [10.20.0.0/16]
 *     tunName: polytun0                               redirectGateway: false
 *     mtu: 1400                                       applyDns: false
 *     clientToClient: false                           mssClamp: false
 *     pushRoutes: [10.20.0.0/16]                      tunName: polytun0
 *     pushDns: [10.20.0.53]                           stateDir: /run/polytun
 *                                                     resolvConf: /etc/resolv.conf
 */
import { isIP } from 'node:net';
import { ConfigError } from '../core/errors.js';
import { parseIpCidr } from '../tun/ipaddr.js';
import { DEFAULT_VPN_MTU } from '../tun/vpn-wire.js';
import { bool, expected, int, listOf, object, optional, str, withDefault, type Check } from './check.js';

/** Defaults of the `vpn:` keys. */
export const VPN_DEFAULTS = { tunName: 'polytun0', mtu: DEFAULT_VPN_MTU, resolvConf: '/etc/resolv.conf' } as const;

/** Server `vpn:` (undefined in the config when VPN mode is off). */
export interface ServerVpnConfig {
  /** Address pool `IPv4CIDR[,IPv6CIDR]` (`--tun`). */
  pool: string;
  /** MASQUERADE pool traffic and enable forwarding (`--nat`). @default false */
  nat: boolean;
  /** TUN device name (`--tun-name`). @default 'polytun0' */
  tunName: string;
  /** TUN MTU, pushed to clients (`--mtu`). @default 1400 */
  mtu: number;
  /** Let clients reach each other (`--client-to-client`). @default false */
  clientToClient: boolean;
  /** Routes pushed to clients (`--push-route`). @default [] */
  pushRoutes: string[];
  /** DNS servers pushed to clients (`--push-dns`). @default [] */
  pushDns: string[];
}

/** Client `vpn:` (undefined in the config when VPN mode is off). */
export interface ClientVpnConfig {
  /** TUN device name (`--tun-name`). @default 'polytun0' */
  tunName: string;
  /** CIDRs routed into the tunnel (`--route`). @default [] */
  routes: string[];
  /** Route everything through the tunnel (`--redirect-gateway`). @default false */
  redirectGateway: boolean;
  /** Write pushed DNS servers to resolvConf (`--apply-dns`). @default false */
  applyDns: boolean;
  /** Clamp TCP MSS to the TUN MTU (`--mss-clamp`). @default false */
  mssClamp: boolean;
  /** Folder of the VPN state file. @default $XDG_RUNTIME_DIR/polytun or /run/polytun */
  stateDir: string | undefined;
  /** The resolver file `applyDns` rewrites (and restores on exit). @default '/etc/resolv.conf' */
  resolvConf: string;
}

/** Client `vpn:` as written in the file: ClientVpnConfig's keys and the switch (docs/config.md is generated from this). */
export interface ClientVpnFile extends ClientVpnConfig {
  /** VPN mode on (`--tun`); needed when any other `vpn:` key is set. Needs root or CAP_NET_ADMIN. */
  enabled: boolean;
}

const cidrText = (family?: 4 | 6): Check<string> =>
  str('a CIDR like 10.8.0.0/24', (s) => {
    try {
      const c = parseIpCidr(s, 'cidr');
      return family !== undefined && c.family !== family ? `expected an IPv${family} CIDR, got ${s}` : undefined;
    } catch (err) {
      return err instanceof ConfigError ? err.message.replace(/^cidr: /, '') : String(err);
    }
  });

const ipText: Check<string> = str('an IP address', (s) => (isIP(s) === 0 ? `not an IP address: ${s}` : undefined));
const tunName: Check<string> = str('a device name', (s) => (/^[A-Za-z0-9_.-]{1,15}$/.test(s) ? undefined : `device names are 1-15 of A-Z a-z 0-9 _ . - (got ${s})`));

/** `10.8.0.0/24`, `10.8.0.0/24,fd00::/64` or a list of one or two CIDRs → `v4[,v6]`. */
const pool: Check<string> = (v, path, ctx) => {
  const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',').map((s) => s.trim()) : undefined;
  if (parts === undefined || parts.length < 1 || parts.length > 2) return expected(ctx, path, 'IPv4CIDR[,IPv6CIDR]', v);
  const v4 = cidrText(4)(parts[0], [...path, 0], ctx);
  const v6 = parts.length === 2 ? cidrText(6)(parts[1], [...path, 1], ctx) : undefined;
  if (typeof v4 === 'string' && /\/(3[12])$/.test(v4)) ctx.issue(path, `${v4} has no room for clients: use /30 or shorter`);
  return v6 === undefined ? v4 : `${v4},${v6}`;
};

const serverShape = object({
  pool: optional(pool),
  nat: withDefault(bool, () => false),
  tunName: withDefault(tunName, () => VPN_DEFAULTS.tunName),
  mtu: withDefault(int(576, 65535), () => VPN_DEFAULTS.mtu),
  clientToClient: withDefault(bool, () => false),
  pushRoutes: withDefault(listOf(cidrText()), () => []),
  pushDns: withDefault(listOf(ipText), () => []),
});

/** Checks the server's `vpn:`; undefined (VPN off) when absent. */
export const serverVpn: Check<ServerVpnConfig | undefined> = (v, path, ctx) => {
  const c = serverShape(v, path, ctx);
  if (c === undefined) return undefined;
  if (c.pool === undefined) {
    ctx.issue([...path, 'pool'], 'is required when other vpn keys are set (--tun CIDR[,CIDR6])');
    return undefined;
  }
  if (c.pool.includes(',') && c.mtu < 1280) ctx.issue([...path, 'mtu'], 'must be at least 1280 with an IPv6 pool (IPv6 minimum MTU)');
  return { ...c, pool: c.pool };
};

const clientShape = object({
  enabled: optional(bool),
  tunName: withDefault(tunName, () => VPN_DEFAULTS.tunName),
  routes: withDefault(listOf(cidrText()), () => []),
  redirectGateway: withDefault(bool, () => false),
  applyDns: withDefault(bool, () => false),
  mssClamp: withDefault(bool, () => false),
  stateDir: optional(str('a directory path')),
  resolvConf: withDefault(str('a file path'), () => VPN_DEFAULTS.resolvConf),
});

/** Checks the client's `vpn:`; undefined (VPN off) when absent or `enabled: false`. */
export const clientVpn: Check<ClientVpnConfig | undefined> = (v, path, ctx) => {
  const c = clientShape(v, path, ctx);
  if (c === undefined) return undefined;
  if (c.enabled !== true) {
    const others = Object.keys(v as object).filter((k) => k !== 'enabled');
    if (c.enabled === undefined && others.length > 0) ctx.issue([...path, 'enabled'], `is required for ${others.map((k) => `vpn.${k}`).join(', ')} (--tun)`);
    return undefined;
  }
  const { enabled: _enabled, ...rest } = c;
  return rest;
};

/** The `vpn` prop of each role's shape (absent = VPN off). */
export const serverVpnProp = optional(serverVpn);
export const clientVpnProp = optional(clientVpn);
