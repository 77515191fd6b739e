/**
 * The VPN mode flags of `polytun server` and `polytun client`, and where each
 * lands in the config (the `vpn:` section, src/config/vpn-schema.ts).
 * cmd-server.ts / cmd-client.ts add these options and mappings.
 */
import { Option, type Command } from 'commander';
import { VPN_DEFAULTS } from '../config/vpn-schema.js';
import { collect, type FlagMapping } from './flags.js';

/** Numeric flag text → number (anything else is left for the validator to report). */
const toInt = (v: unknown): unknown => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v);

/** Server flag → config path. */
export const SERVER_VPN_FLAGS: readonly FlagMapping[] = [
  { attr: 'tun', flag: '--tun', path: ['vpn', 'pool'] },
  { attr: 'nat', flag: '--nat', path: ['vpn', 'nat'] },
  { attr: 'tunName', flag: '--tun-name', path: ['vpn', 'tunName'] },
  { attr: 'mtu', flag: '--mtu', path: ['vpn', 'mtu'], map: toInt },
  { attr: 'clientToClient', flag: '--client-to-client', path: ['vpn', 'clientToClient'] },
  { attr: 'pushRoute', flag: '--push-route', path: ['vpn', 'pushRoutes'] },
  { attr: 'pushDns', flag: '--push-dns', path: ['vpn', 'pushDns'] },
];

/** Client flag → config path. */
export const CLIENT_VPN_FLAGS: readonly FlagMapping[] = [
  { attr: 'tun', flag: '--tun', path: ['vpn', 'enabled'] },
  { attr: 'tunName', flag: '--tun-name', path: ['vpn', 'tunName'] },
  { attr: 'route', flag: '--route', path: ['vpn', 'routes'] },
  { attr: 'redirectGateway', flag: '--redirect-gateway', path: ['vpn', 'redirectGateway'] },
  { attr: 'applyDns', flag: '--apply-dns', path: ['vpn', 'applyDns'] },
  { attr: 'mssClamp', flag: '--mss-clamp', path: ['vpn', 'mssClamp'] },
];

/** Adds the server's VPN options to `cmd`; returns `cmd` (for chaining). */
export function withServerVpnOptions(cmd: Command): Command {
  return cmd
    .option('--tun <cidr[,cidr6]>', 'VPN mode: run a TUN device and lease clients addresses from this pool, e.g. 10.8.0.0/24,fd00:8::/64')
    .option('--nat', 'VPN: masquerade pool traffic leaving by other interfaces (iptables) and enable forwarding; undone on exit')
    .option('--tun-name <name>', `VPN: TUN device name (default ${VPN_DEFAULTS.tunName})`)
    .option('--mtu <bytes>', `VPN: TUN MTU, pushed to clients (default ${VPN_DEFAULTS.mtu})`)
    .option('--client-to-client', 'VPN: let clients reach each other (default: off)')
    .addOption(new Option('--push-route <cidr>', 'VPN: ask clients to route CIDR into the tunnel (repeatable)').argParser(collect))
    .addOption(new Option('--push-dns <ip>', 'VPN: suggest this DNS server to clients (repeatable)').argParser(collect));
}

/** Adds the client's VPN options to `cmd`; returns `cmd` (for chaining). */
export function withClientVpnOptions(cmd: Command): Command {
  return cmd
    .option('--tun', 'VPN mode: create a TUN device with the address the server leases (needs root or CAP_NET_ADMIN)')
    .option('--tun-name <name>', `VPN: TUN device name (default ${VPN_DEFAULTS.tunName})`)
    .addOption(new Option('--route <cidr>', 'VPN: route CIDR into the tunnel (repeatable)').argParser(collect))
    .option('--redirect-gateway', 'VPN: route all traffic into the tunnel (0.0.0.0/1 + 128.0.0.0/1, ::/1 + 8000::/1; the server stays reachable via the old gateway)')
    .option('--apply-dns', 'VPN: write the DNS servers the server pushes to /etc/resolv.conf (restored on exit)')
    .option('--mss-clamp', 'VPN: lower the MSS of TCP SYNs to fit the tunnel MTU (for hosts routed through this one)');
}
