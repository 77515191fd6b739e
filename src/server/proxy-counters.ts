/**
 * The proxy's counters, in a file of their own so that the proxy server and
 * the parts it owns (reverse binds, UDP flows) all depend on them without
 * depending on each other.
 */
import type { Metrics } from '../core/metrics.js';

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

/** Adds every counter of `from` to `to` (gauges too: summing groups of sessions). */
export function addProxyCounters(to: ProxyCounters, from: Readonly<ProxyCounters>, sign = 1): void {
  for (const k of Object.keys(to) as (keyof ProxyCounters)[]) to[k] += sign * from[k];
}

/**
 * Registers the proxy's counters as `polytun_proxy_*`, each read from
 * `read()` when the metrics are collected (so once per metric per read:
 * keep it cheap, it is no per-byte cost).
 */
export function registerProxyMetrics(metrics: Metrics, read: () => Readonly<ProxyCounters>): void {
  const counter = (name: string, help: string, key: keyof ProxyCounters): void => void metrics.registerCounter(name, { help, collect: () => read()[key] });
  const gauge = (name: string, help: string, key: keyof ProxyCounters): void => void metrics.registerGauge(name, { help, collect: () => read()[key] });
  metrics.registerCounterGroup('polytun_proxy_bytes_total', {
    help: 'Payload bytes relayed, TCP and UDP (up: client to targets, down: targets to client)',
    label: 'direction',
    collect: () => {
      const c = read();
      return { up: c.bytesUp, down: c.bytesDown };
    },
  });
  counter('polytun_proxy_connects_total', 'CONNECT requests', 'connects');
  counter('polytun_proxy_connect_failures_total', 'CONNECT requests refused or failed (policy, DNS, dial)', 'connectFailures');
  counter('polytun_proxy_bad_opens_total', 'Malformed or unexpected OPEN payloads', 'badOpens');
  gauge('polytun_proxy_connections', 'Relayed TCP connections open now (CONNECT and reverse)', 'connectionsActive');
  counter('polytun_proxy_idle_timeouts_total', 'Relayed TCP connections reset for being idle', 'idleTimeouts');
  counter('polytun_proxy_binds_total', 'Reverse listeners opened', 'binds');
  counter('polytun_proxy_binds_refused_total', 'Reverse listeners refused', 'bindsRefused');
  gauge('polytun_proxy_binds', 'Reverse listeners open now', 'bindsActive');
  counter('polytun_proxy_bind_accepts_total', 'Connections accepted on reverse listeners', 'bindAccepts');
  counter('polytun_proxy_bind_accepts_failed_total', 'Accepted reverse connections the client refused or that could not reach it', 'bindAcceptsFailed');
  counter('polytun_proxy_udp_flows_opened_total', 'UDP flows opened', 'udpFlowsOpened');
  gauge('polytun_proxy_udp_flows', 'UDP flows open now', 'udpFlowsActive');
  counter('polytun_proxy_udp_flows_refused_total', 'Datagrams of new UDP flows dropped at the flow limit', 'udpFlowsRefused');
  metrics.registerCounterGroup('polytun_proxy_udp_datagrams_total', {
    help: 'UDP datagrams relayed (up: client to targets, down: targets to client)',
    label: 'direction',
    collect: () => {
      const c = read();
      return { up: c.udpDatagramsUp, down: c.udpDatagramsDown };
    },
  });
  metrics.registerCounterGroup('polytun_proxy_udp_dropped_total', {
    help: 'UDP datagrams dropped, by reason (malformed, denied by policy, unsolicited source, other: send error, queue full, resolution failed)',
    label: 'reason',
    collect: () => {
      const c = read();
      return { malformed: c.udpMalformed, denied: c.udpDenied, unsolicited: c.udpUnsolicited, other: c.udpDropped };
    },
  });
}
