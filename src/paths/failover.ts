/**
 * Master/backup servers. The client keeps a session to the first server of an
 * ordered list; when that session has had no path for `failoverAfterMs` it
 * opens a session to the next server that answers and moves there (new
 * connections use it at once; connections that were open on the lost
 * session end, and applications reconnect — separate server processes share
 * no session state). While on a backup it probes the master; once the master
 * has been reachable for `failbackAfterMs` new connections go back to it and
 * the backup session drains (its open connections finish undisturbed).
 *
 * ```
 *  on master ──detached > failoverAfterMs──▶ on backup ──master healthy ≥ failbackAfterMs──▶ on master
 * ```
 *
 * When no other server answers either, the failover is tried again with
 * backoff until one does or the active server comes back (its SessionClient
 * keeps resuming, then opening new sessions, by itself meanwhile).
 */
import { EventEmitter } from 'node:events';
import { sleep } from '../core/abort.js';
import { Backoff } from './backoff.js';
import { AbortedError, ClosedError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { CloseCode, SessionClosedError, type Session } from '../session/session.js';
import { SessionHistory } from './history.js';
import { registerSupervisorMetrics } from './metrics.js';
import { keepTrying, waitUnlessAborted } from './retry.js';
import { SessionClient, sourcesOf, type SessionClientInit, type SourcedClientInit } from './session-client.js';
import type { PathSource } from './source.js';
import type { PathSupervisor, SupervisorStatus } from './supervisor.js';

type ServerInit = SessionClientInit | SourcedClientInit;

export interface FailoverInit {
  /** Servers in order of preference; [0] is the master. */
  servers: ServerInit[];
  logger?: Logger;
  /** Detached this long on the active server → move to the next. @default 5000 */
  failoverAfterMs?: number;
  /** Master reachable this long → move back. @default 30000 */
  failbackAfterMs?: number;
  /** How often to probe the master while on a backup. @default 5000 */
  probeIntervalMs?: number;
  /** Where to register the client's metrics (see paths/metrics.ts). @default nullMetrics */
  metrics?: Metrics;
}

export class FailoverClient extends EventEmitter implements PathSupervisor {
  private readonly log: Logger;
  private active: { index: number; client: SessionClient } | undefined;
  private closed = false;
  private readonly ac = new AbortController();
  private detachTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private readonly history: SessionHistory;
  /** Each server's name for log lines. */
  private readonly names: string[];

  constructor(private readonly init: FailoverInit) {
    super();
    if (init.servers.length === 0) throw new ClosedError('failover: no servers');
    this.log = init.logger ?? nullLogger;
    this.names = init.servers.map((s) => (sourcesOf(s)[0] as PathSource).name);
    this.history = new SessionHistory(this, this.log);
    if (init.metrics) registerSupervisorMetrics(this, init.metrics);
  }

  /** Counters and state for status reports. */
  status(): SupervisorStatus {
    const cipher = this.active?.client.cipher;
    return { ...this.history.status(this.active?.index ?? 0), ...(cipher ? { cipher } : {}) };
  }

  /** True while the server in use is opening a new session (its old one was lost for good). */
  get reconnecting(): boolean {
    return this.active?.client.reconnecting ?? false;
  }

  /** The session new connections should use. */
  get session(): Session | undefined {
    return this.active?.client.session;
  }

  /** Index of the server in use (0 = master). */
  get serverIndex(): number | undefined {
    return this.active?.index;
  }

  private name(i: number): string {
    return this.names[i] as string;
  }

  /** Connects to the first server that answers, in order. */
  async connect(signal?: AbortSignal): Promise<Session> {
    let last: unknown;
    for (let i = 0; i < this.init.servers.length; i++) {
      try {
        return await this.use(i, signal);
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        last = err;
        this.log.warn({ server: this.name(i), err: toError(err).message }, 'server unreachable; trying the next one');
      }
    }
    throw last;
  }

  private async use(i: number, signal?: AbortSignal): Promise<Session> {
    const client = new SessionClient(this.init.servers[i] as ServerInit, { track: false });
    const session = await client.connect(signal);
    const previous = this.active;
    this.active = { index: i, client };
    this.watch(client, i);
    this.emit('session', session);
    this.emit('server', i);
    if (previous) this.retire(previous.client);
    if (i !== 0) void this.probeMaster();
    return session;
  }

  /** Lets the old server's open connections finish, then closes it. */
  private retire(client: SessionClient): void {
    const s = client.session;
    if (!s || s.state !== 'open') {
      client.close(0, 'moved to another server');
      return;
    }
    void s.drain().finally(() => client.close(0, 'moved to another server'));
  }

  private watch(client: SessionClient, i: number): void {
    client.on('session', (s: Session) => {
      if (this.active?.client === client) this.emit('session', s);
    });
    const arm = (): void => {
      if (this.active?.client !== client || this.init.servers.length < 2) return;
      clearTimeout(this.detachTimer);
      this.detachTimer = setTimeout(() => {
        if (this.active?.client !== client || client.session?.state === 'open' || this.closed) return;
        this.log.warn({ server: this.name(i), afterMs: this.init.failoverAfterMs ?? 5000 }, 'server not answering; failing over');
        void this.failover(i);
      }, this.init.failoverAfterMs ?? 5000);
      this.detachTimer.unref();
    };
    client.on('detached', arm);
    // A server shutting down closes its sessions (the client then tries to
    // open new ones there): if none opens in time, move on just the same.
    client.on('sessionClosed', (_s: Session, err: Error) => {
      if (err instanceof SessionClosedError && err.by === 'remote' && err.closeCode === CloseCode.shutdown) arm();
    });
    client.on('resumed', (s: Session) => {
      clearTimeout(this.detachTimer);
      if (this.active?.client === client) this.emit('resumed', s);
    });
    client.on('detached', (err?: Error) => {
      if (this.active?.client === client) this.emit('detached', err);
    });
    client.on('refused', (err: Error, retryInMs: number | null) => {
      if (this.active?.client === client) this.emit('refused', err, retryInMs);
    });
    // The active server's session client opened a new session by itself, is trying to, or gave up.
    for (const event of ['renewed', 'reconnecting', 'gaveUp'] as const) {
      client.on(event, (...args: unknown[]) => {
        if (this.active?.client === client) this.emit(event, ...args);
      });
    }
  }

  private failingOver = false;

  /**
   * Moves to the next server that answers. When none does, tries the round
   * again with backoff, until one answers, the active server's session is
   * open again, or we close. Each unreachable server is logged once per
   * failover, not per round.
   */
  private async failover(from: number): Promise<void> {
    if (this.failingOver) return;
    this.failingOver = true;
    const n = this.init.servers.length;
    const backoff = new Backoff();
    const warned = new Set<number>();
    const stillDown = (): boolean => !this.closed && this.active?.index === from && this.active.client.session?.state !== 'open';
    /** A round found no server that answers. */
    const noneAnswered = new Error('no server answered');
    try {
      await keepTrying({
        firstDelayMs: 0,
        // One round over the other servers, in order.
        attempt: async () => {
          for (let k = 1; k < n && stillDown(); k++) {
            const i = (from + k) % n;
            try {
              const old = this.active?.client;
              await this.use(i);
              old?.close(0, 'failed over');
              this.log.info({ server: this.name(i), backup: i !== 0 }, 'now using this server');
              return;
            } catch (err) {
              if (err instanceof AbortedError) return;
              if (!warned.has(i)) this.log.warn({ server: this.name(i), err: toError(err).message }, 'failover target unreachable');
              warned.add(i);
            }
          }
          if (stillDown()) throw noneAnswered;
        },
        failed: (err) => {
          if (err !== noneAnswered) throw err;
          return backoff.next();
        },
        // Then again, unless the active server came back (or we closed) meanwhile.
        wait: async (ms) => (await waitUnlessAborted(this.ac.signal, true)(ms)) && stillDown(),
      });
    } finally {
      this.failingOver = false;
    }
  }

  /** While on a backup: probe the master; once healthy long enough, move back. */
  private async probeMaster(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const failbackAfter = this.init.failbackAfterMs ?? 30_000;
    try {
      while (!this.closed && this.active && this.active.index !== 0) {
        try {
          await sleep(this.init.probeIntervalMs ?? 5000, this.ac.signal);
        } catch {
          return; // closed while waiting
        }
        const probe = new SessionClient({ ...(this.init.servers[0] as ServerInit), renew: false }, { track: false });
        try {
          const s = await probe.connect(this.ac.signal);
          const since = Date.now();
          // Healthy = the session stays open and answers pings for failbackAfter.
          while (Date.now() - since < failbackAfter && s.state === 'open' && !this.closed) {
            await s.ping(this.ac.signal);
            await sleep(Math.min(1000, failbackAfter), this.ac.signal);
          }
          if (s.state !== 'open' || this.closed) {
            probe.close();
            continue;
          }
          const old = this.active;
          this.active = { index: 0, client: probe };
          this.watch(probe, 0);
          this.log.info({ server: this.name(0), healthyMs: Date.now() - since }, 'master is back; new connections go to it');
          this.emit('session', s);
          this.emit('server', 0);
          if (old) this.retire(old.client);
          return;
        } catch (err) {
          probe.close();
          if (err instanceof AbortedError) return;
          this.log.debug({ err: toError(err).message }, 'master probe failed');
        }
      }
    } finally {
      this.probing = false;
    }
  }

  close(code = 0, reason = 'client closing'): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.detachTimer);
    this.ac.abort(new ClosedError('failover client'));
    this.active?.client.close(code, reason);
  }
}
