/**
 * The proxy's counters, in a file of their own so that the proxy server and
 * the parts it owns (reverse binds, UDP flows) all depend on them without
 * depending on each other.
 */

/**
 * Counters of one session's proxy (and, through `ProxyServerInit.counters`,
 * of whatever group shares a counters object: a user, the whole server).
 * `bytesUp` is payload from the client towards targets, `bytesDown` towards
 * the client, over TCP relays (CONNECT and reverse) and UDP together.
 * Fields ending in `Active` are gauges; all others only grow.
 */
export interface ProxyCounters {
  bytesUp: number;
  bytesDown: number;
  /** Malformed or unexpected OPEN payloads. */
  badOpens: number;
  connects: number;
  connectFailures: number;
  /** Relayed TCP connections alive now (CONNECT and accepted reverse connections). */
  connectionsActive: number;
  idleTimeouts: number;
  binds: number;
  bindsRefused: number;
  bindsActive: number;
  /** Connections accepted on reverse listeners. */
  bindAccepts: number;
  /** Accepted connections the client refused or that could not be handed to it. */
  bindAcceptsFailed: number;
  udpFlowsOpened: number;
  udpFlowsActive: number;
  /** Datagrams of new flows dropped because the flow limit was reached. */
  udpFlowsRefused: number;
  udpDatagramsUp: number;
  udpDatagramsDown: number;
  udpMalformed: number;
  /** Datagrams to destinations the policy refuses. */
  udpDenied: number;
  /** Datagrams lost for other reasons (send error, session queue full, resolution failed, queue full). */
  udpDropped: number;
  /** Datagrams from addresses the flow never sent to (filtered, like a port-restricted NAT). */
  udpUnsolicited: number;
}

/** Adds `n` (default 1, may be negative for gauges) to one counter. */
export type Tally = (key: keyof ProxyCounters, n?: number) => void;

/** A zeroed counters object (share one between sessions to aggregate them). */
export function createProxyCounters(): ProxyCounters {
  return {
    bytesUp: 0, bytesDown: 0, badOpens: 0, connects: 0, connectFailures: 0, connectionsActive: 0, idleTimeouts: 0,
    binds: 0, bindsRefused: 0, bindsActive: 0, bindAccepts: 0, bindAcceptsFailed: 0,
    udpFlowsOpened: 0, udpFlowsActive: 0, udpFlowsRefused: 0, udpDatagramsUp: 0, udpDatagramsDown: 0,
    udpMalformed: 0, udpDenied: 0, udpDropped: 0, udpUnsolicited: 0,
  };
}
