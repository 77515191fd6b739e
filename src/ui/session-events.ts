/**
 * The client's recent history for the dashboard (failover and path events):
 * a bounded ring of what the supervisor and its sessions went through, newest
 * last — connected, resumed, detached, reconnecting, refused, a new session,
 * another server of the list taking over, a path coming up or going down.
 *
 * Fed by the supervisor's typed events (paths/supervisor.ts) and each
 * session's path events; keeps `max` entries (the oldest go first), so a
 * flapping link costs a fixed amount of memory.
 */
import type { PathStats, Session } from '../session/session.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import { pathSeriesId } from './path-traffic.js';

/** What happened. */
export type SessionEventKind = 'connected' | 'detached' | 'resumed' | 'renewed' | 'reconnecting' | 'refused' | 'gave-up' | 'server' | 'path-up' | 'path-down';

/** One entry of the ring. */
export interface SessionEvent {
  /** Ms since the epoch. */
  readonly at: number;
  readonly kind: SessionEventKind;
  /** One line for people. */
  readonly message: string;
  /** The path's stable id (carrier://endpoint or its --path spec), for path events. */
  readonly path?: string;
  /** The server in use (host:port), for connected / server events. */
  readonly server?: string;
}

/** Options of {@link SessionEventLog}. */
export interface SessionEventLogInit {
  readonly supervisor: PathSupervisor;
  /** host:port of each server, in the supervisor's order. */
  readonly servers: readonly string[];
  /** Entries kept. @default 200 */
  readonly max?: number;
  /** Wall time, ms since the epoch. @default Date.now */
  readonly now?: () => number;
}

/** See the file comment. */
export class SessionEventLog {
  private readonly ring: SessionEvent[] = [];
  private readonly max: number;
  private readonly now: () => number;
  private serverIndex = 0;
  private first = true;

  constructor(private readonly init: SessionEventLogInit) {
    this.max = Math.max(1, init.max ?? 200);
    this.now = init.now ?? Date.now;
    const sup = init.supervisor;
    const server = (): string => init.servers[this.serverIndex] ?? init.servers[0] ?? '';
    sup.on('session', (s) => {
      this.add({ kind: 'connected', message: `${this.first ? 'connected' : 'new session'} to ${server()}`, server: server() });
      this.first = false;
      this.follow(s);
    });
    sup.on('detached', (err) => this.add({ kind: 'detached', message: `every path lost (${err?.message ?? 'connection lost'}); waiting for one to come back` }));
    sup.on('resumed', () => this.add({ kind: 'resumed', message: 'a path came back: the session and its open streams go on' }));
    sup.on('renewed', () => this.add({ kind: 'renewed', message: 'the old session was lost for good: a new one replaced it' }));
    sup.on('reconnecting', (delayMs, err) => this.add({ kind: 'reconnecting', message: `${err.message}; trying again in ${Math.round(delayMs / 100) / 10} s` }));
    sup.on('refused', (err, retryInMs) => this.add({ kind: 'refused', message: `${err.message}${retryInMs === null ? '' : `; trying again in ${Math.round(retryInMs / 1000)} s`}` }));
    sup.on('gaveUp', (err) => this.add({ kind: 'gave-up', message: err.message }));
    sup.on('server', (index) => {
      this.serverIndex = index;
      this.add({ kind: 'server', message: `${index === 0 ? 'back on the first server' : `failed over to server ${index + 1}`}: ${server()}`, server: server() });
    });
    // A session handed over before this log was made (the dashboard started late) still reports its paths.
    if (sup.session !== undefined) this.follow(sup.session);
  }

  private readonly onPathUp = (st: PathStats): void => this.add({ kind: 'path-up', message: `path ${st.label} (${st.carrier}) is up`, path: pathSeriesId(st) });
  private readonly onPathClosed = (st: PathStats, err?: Error): void =>
    this.add({ kind: 'path-down', message: `path ${st.label} (${st.carrier}) went down${err?.message ? `: ${err.message}` : ''}`, path: pathSeriesId(st) });
  private session: Session | undefined;

  /** Reports the paths of `s` only: a replaced session's stragglers are not this client's paths any more. */
  private follow(s: Session): void {
    if (this.session === s) return;
    this.session?.off('pathUp', this.onPathUp).off('pathClosed', this.onPathClosed);
    this.session = s;
    s.on('pathUp', this.onPathUp).on('pathClosed', this.onPathClosed);
  }

  private add(e: Omit<SessionEvent, 'at'>): void {
    this.ring.push({ at: this.now(), ...e });
    if (this.ring.length > this.max) this.ring.splice(0, this.ring.length - this.max);
  }

  /** The entries, oldest first (a copy). */
  list(): SessionEvent[] {
    return [...this.ring];
  }
}
