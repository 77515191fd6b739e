/**
 * The userspace network impairment relay used by tests and namespace labs
 * (this kernel has no netem). Import from here:
 *
 * - `TcpRelay`: delay, order-preserving jitter, rate limit, cuts (RST/FIN),
 *   cut after N bytes, blackhole, refuse — see relay-tcp.ts;
 * - `UdpRelay`: loss, duplication, reordering, delay, jitter, rate limit with
 *   a bounded router queue, blackhole, seeded — see relay-udp.ts;
 * - `ControlServer` / `runControlCommand`: the line-based control port that
 *   lets a lab drive a relay running in another namespace;
 * - `parseRate`, `parseHostPort`, `formatHostPort`: the CLI's parsers.
 *
 * The command-line wrapper is relay-cli.ts.
 */
export { TcpRelay, type TcpRelayInit, type TcpRelayStats, type CutOptions } from './relay-tcp.js';
export { UdpRelay, type UdpRelayInit, type UdpRelayStats, type UdpDirectionStats } from './relay-udp.js';
export { ControlServer, runControlCommand, type AnyRelay } from './relay-control.js';
export {
  parseRate,
  parseHostPort,
  formatHostPort,
  seededRandom,
  type CutMode,
  type Direction,
  type HostPort,
  type LinkImpairment,
  type PacketImpairment,
} from './relay-shared.js';
