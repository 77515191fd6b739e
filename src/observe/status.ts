/**
 * One status snapshot model: what a running client reports (the local
 * status endpoint, `polytun status`) and what a gateway reports (the admin
 * API's `GET /api/status`), each a typed object built here from the layers
 * that own the numbers, instead of being assembled in cli/.
 *
 * The client snapshot is a JSON contract: `polytun status --json` prints it
 * as is and scripts read it, so its keys keep their names and their order.
 */
import type { UdpTraffic } from '../client/udp-flows.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import type { PathStats } from '../session/session.js';

/**
 * What a client reports. Every field is optional for the reader (`polytun
 * status` prints what it finds); the client fills in what it knows.
 */
export interface StatusReport {
  role?: 'client' | 'server';
  version?: string;
  /** Session state: connecting, open, detached (waiting to be resumed), reconnecting (opening a new session), closed. */
  state?: string;
  /** The server's host:port. */
  server?: string;
  carrier?: string;
  /** The record cipher (chacha20-poly1305 or aes-256-gcm) the handshake chose; absent when records ride TLS-bound. */
  cipher?: string;
  /** When the current session started, ISO 8601. */
  since?: string;
  rttMs?: number;
  bytesSent?: number;
  bytesReceived?: number;
  /** UDP relayed (SOCKS5 UDP ASSOCIATE, -L …/udp): datagrams and payload bytes each way. */
  udpDatagramsSent?: number;
  udpBytesSent?: number;
  udpDatagramsReceived?: number;
  udpBytesReceived?: number;
  /** Open streams. */
  streams?: number;
  /** Resumes plus new sessions after the first. */
  reconnects?: number;
  /** The session was resumed after a connection loss (open streams survived). */
  resumes?: number;
  /** New sessions after the first (the old one was lost for good, or another server took over). */
  newSessions?: number;
  /** Age of the current session, ms (`since` to now). */
  sessionAgeMs?: number;
  /** Listening fronts, e.g. `{ kind: 'socks5', listen: '127.0.0.1:1080' }`. */
  fronts?: { kind: string; listen: string }[];
  /** The last error, a short message. */
  lastError?: string;
}

/** A client's snapshot: the report plus its session's paths. */
export type ClientStatus = StatusReport & { paths: PathStats[] };

/** What a client's snapshot is built from. */
export interface ClientStatusSources {
  supervisor: PathSupervisor;
  /** host:port of each server, in the supervisor's order (the link's first, then backups). */
  servers: readonly string[];
  /** The link's carrier scheme. */
  carrier: string;
  /** UDP relayed by the proxy client. */
  udp: UdpTraffic;
  fronts: readonly { kind: string; listen: string }[];
}

/** The client's status now. */
export function clientStatus(src: ClientStatusSources, now = Date.now()): ClientStatus {
  const sup = src.supervisor;
  const s = sup.session;
  const stats = s?.stats;
  const state = s?.state ?? 'connecting';
  const h = sup.status();
  return {
    role: 'client',
    // A closed session is being replaced (the client gave up or stopped otherwise).
    state: state === 'closed' ? 'reconnecting' : state,
    server: src.servers[h.serverIndex] ?? (src.servers[0] as string),
    carrier: src.carrier,
    ...(h.cipher ? { cipher: h.cipher } : {}),
    since: h.since.toISOString(),
    sessionAgeMs: now - h.since.getTime(),
    ...(stats?.rttMs !== undefined ? { rttMs: Math.round(stats.rttMs * 1000) / 1000 } : {}),
    bytesSent: stats?.bytesSent ?? 0,
    bytesReceived: stats?.bytesReceived ?? 0,
    ...src.udp,
    streams: stats?.streams ?? 0,
    reconnects: h.resumes + h.newSessions,
    resumes: h.resumes,
    newSessions: h.newSessions,
    fronts: src.fronts.map((f) => ({ kind: f.kind, listen: f.listen })),
    ...(h.lastError ? { lastError: h.lastError } : {}),
    paths: stats?.paths ?? [],
  };
}

/** What `GET /api/status` reports about a running gateway; `L` is the listener shape the admin API names. */
export interface GatewayStatus<L = { readonly carrier: string; readonly address: string; readonly port: number }> {
  /** polytun version. */
  readonly version: string;
  /** When the gateway started, ms since the epoch. */
  readonly startedAt: number;
  /** True once the gateway refuses new sessions while live ones finish. */
  readonly draining: boolean;
  /** Live sessions right now. */
  readonly sessions: number;
  readonly listeners: readonly L[];
  /** Handshake counters (accepted, resumed, rejected, dropped, overload…). */
  readonly counters: Readonly<Record<string, number>>;
}

/** What a gateway's snapshot is built from. */
export interface GatewayStatusSources<L> {
  version: string;
  startedAt: number;
  draining: boolean;
  /** The session server: its live sessions and handshake counters. */
  server: { readonly sessions: { readonly size: number }; readonly counters: Readonly<Record<string, number>> };
  listeners: readonly L[];
}

/** The gateway's status now (counters copied: the snapshot does not change under the reader). */
export function gatewayStatus<L>(src: GatewayStatusSources<L>): GatewayStatus<L> {
  return {
    version: src.version,
    startedAt: src.startedAt,
    draining: src.draining,
    sessions: src.server.sessions.size,
    listeners: src.listeners,
    counters: { ...src.server.counters },
  };
}
