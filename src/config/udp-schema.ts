/**
 * The `udp:` section: the udp carrier's transport (issue 17). Every key has
 * a flag or a default; schema.ts plugs the section in.
 *
 *   udp:                 # client                       # server
 *     cc: bbr            # --cc bbr|cubic|fixed:RATE    # --cc: when the client asks for none
 *                        #   (unset on the client: it sends with bbr, the server with its own)
 *     mode: fast         # --udp-mode normal|fast|fast2|fast3
 *     maxRate: 200mbit   #                              # --udp-max-rate: cap on a client's fixed:RATE
 *     datagramSize: 1452 # largest UDP payload sent (both roles)
 */
import { ConfigError } from '../core/errors.js';
import { DEFAULT_UDP_MODE, UDP_MODES, parseBitRate, parseCc, type CcChoice, type UdpMode } from '../arq/cc-choice.js';
import { DEFAULT_UDP_DATAGRAM as DEFAULT_DATAGRAM_SIZE } from '../paths/packet-source.js';
import { int, object, oneOf, optional, str, withDefault } from './check.js';

/** `udp:` of a client. */
export interface ClientUdpConfig {
  /**
   * Congestion controller of udp paths (`--cc`): `bbr` (model-based; random
   * loss is not taken for congestion), `cubic` (shares fairly with TCP) or
   * `fixed:RATE` (send at RATE, e.g. `fixed:40mbit`, whatever is lost, like
   * hysteria's Brutal; for a link you know). The client asks the server to
   * send its way too; the server may cap a fixed rate. Unset: this side
   * sends with bbr and the server with its own `udp.cc`.
   */
  cc: string | undefined;
  /**
   * ACK knobs of both ends, named after kcptun's modes (`--udp-mode`):
   * `normal` holds an ACK up to 25 ms, `fast` 10 ms, `fast2` 5 ms, `fast3`
   * 2 ms; once a flow is under way, `normal` and `fast` acknowledge every
   * 10th packet (every 2nd toward a cubic sender), `fast2` every 4th,
   * `fast3` every packet. Faster modes repair a lost tail
   * sooner and send more ACKs; none turns congestion control off. @default 'fast'
   */
  mode: UdpMode;
  /**
   * Largest UDP payload this side sends, bytes. 1452 fits any path with a
   * 1500-byte MTU (IPv4 or IPv6), so a VPN's 1400-byte packets ride as
   * datagrams of their own; lower it on smaller paths (PPPoE with IPv6:
   * 1444; 1200 fits everything). @default 1452
   */
  datagramSize: number;
}

/** `udp:` of a server. */
export interface ServerUdpConfig {
  /** Congestion controller of the server's sending side when a client asks for none (`--cc`); see the client's. @default 'bbr' */
  cc: string;
  /** Highest `fixed:RATE` a client may make the server send at (`--udp-max-rate`, e.g. `200mbit`); undefined = no cap. */
  maxRate: string | undefined;
  /** Largest UDP payload the server sends, bytes; see the client's. @default 1452 */
  datagramSize: number;
}

const ccText = str('bbr, cubic or fixed:RATE', (s) => {
  const r = parseCc(s);
  return typeof r === 'string' ? r : undefined;
});
const rateText = str('a rate such as 200mbit', (s) => {
  const r = parseBitRate(s);
  return typeof r === 'string' ? r : undefined;
});

export const clientUdpProp = withDefault(
  object({ cc: optional(ccText), mode: withDefault(oneOf(UDP_MODES), () => DEFAULT_UDP_MODE), datagramSize: withDefault(int(1200, 1452), () => DEFAULT_DATAGRAM_SIZE) }),
  (): ClientUdpConfig => ({ cc: undefined, mode: DEFAULT_UDP_MODE, datagramSize: DEFAULT_DATAGRAM_SIZE }),
);

export const serverUdpProp = withDefault(
  object({ cc: withDefault(ccText, () => 'bbr'), maxRate: optional(rateText), datagramSize: withDefault(int(1200, 1452), () => DEFAULT_DATAGRAM_SIZE) }),
  (): ServerUdpConfig => ({ cc: 'bbr', maxRate: undefined, datagramSize: DEFAULT_DATAGRAM_SIZE }),
);

/** A validated `udp.cc` as the controller choice. */
export function ccOf(text: string): CcChoice {
  const c = parseCc(text);
  if (typeof c === 'string') throw new ConfigError('udp.cc', c);
  return c;
}

/** A validated `udp.maxRate` in bytes per second, or undefined. */
export function maxRateOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const r = parseBitRate(text);
  if (typeof r === 'string') throw new ConfigError('udp.maxRate', r);
  return r;
}
