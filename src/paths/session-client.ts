/**
 * Keeps one session to a server alive over one or several paths: the
 * supervisor for a single server (see supervisor.ts; FailoverClient wraps
 * several). Each path comes from a path source (source.ts: today a direct
 * dial, a carrier + endpoint, optionally a local bind, a role and a weight)
 * and has its own maintenance loop: when it dies it is dialed again (exponential
 * backoff with full jitter) and joins the same session; when every path is
 * gone the first one back resumes the session, so open streams continue with
 * no byte lost or duplicated. If the server no longer knows the session (it
 * restarted, or the grace period ran out) a fresh session replaces it and
 * 'session' is emitted again.
 *
 * Losing every path (a server down, a laptop asleep) is two phases. First
 * the session waits `session.graceMs` (60 s) to be resumed, its paths
 * redialed fast (`backoffBaseMs`…`backoffMaxMs`): open streams survive.
 * Once the grace timer has closed it, those streams fail and a new session
 * is opened — at once, then after 1, 2, 4 … 10 s (`reconnectBaseMs`,
 * `reconnectMaxMs`, jittered) until the server answers, or, with
 * `maxRetries`, until that many retries failed ('gaveUp'). Whatever ends a
 * session we did not close ourselves leads there, except refusals (below).
 * One INFO/WARN line per change: lost → `connected (session resumed)`, or
 * grace over → `reconnecting in Ns` per failed attempt → `connected (new
 * session)`.
 *
 * Refusals are different: when the server will not have this user (its key
 * is unknown, the user is disabled, expired or over quota) or ends the
 * session for such a reason (kicked, quota, expiry), trying again at once
 * cannot help and only loads the server. The client then logs one line
 * saying why (once per reason, not per attempt), emits 'refused', and tries
 * again every `refusedRetryMs` (default 60 s) — so a router comes back by
 * itself once an administrator re-enables the user — or, with 0, stops.
 * This holds wherever the refusal comes from: a path redial, a resume, or
 * opening a replacement session.
 *
 *   reject unauthorized | disabled | expired | quotaExceeded ─┐
 *   CLOSE from the server: kicked | quota | expired ──────────┴─▶ log once, 'refused'
 *        └─▶ retry every refusedRetryMs (0: stop; the CLI then exits non-zero)
 *   a path lost while the others carry the session: that path alone retries slowly
 */
import { EventEmitter } from 'node:events';
import { backoffDelay, sleep } from '../core/abort.js';
import { AbortedError, ClosedError, RejectCode, RejectedError, TimeoutError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { Carrier, Endpoint } from '../carriers/types.js';
import type { CcChoice, UdpMode } from '../arq/cc-choice.js';
import type { ChannelInit } from '../secure/channel.js';
import type { RecordCipher } from '../secure/cipher.js';
import type { KeyPair } from '../secure/keys.js';
import { CloseCode, initialStreamWindow, Session, SessionClosedError, type PathOptions, type PathStats, type SessionOptions } from '../session/session.js';
import { Backoff, FailureCount, formatDelay } from './backoff.js';
import { SessionHistory } from './history.js';
import { registerSupervisorMetrics } from './metrics.js';
import { DEFAULT_REFUSED_RETRY_MS, RefusedError, refusalMessage, refusalOf } from './refusal.js';
import { keepTrying } from './retry.js';
import { DirectDialSource, type PathSource, type ResumeRequest } from './source.js';
import { PacketDialSource } from './packet-source.js';
import type { PathSupervisor, SupervisorStatus } from './supervisor.js';
import { SESSION_WINDOW } from '../core/limits.js';

export { DEFAULT_REFUSED_RETRY_MS, RefusedError, refusalMessage, refusalOf } from './refusal.js';

/** One network path to the server. */
export interface PathSpec extends PathOptions {
  /** A stream carrier (TCP, TLS, WS) or a packet one (UDP: the reliable transport goes on top). */
  carrier: Carrier;
  endpoint: Endpoint;
}

/** How a SessionClient keeps its session up, whatever its paths come from. */
export interface SupervisorOptions {
  logger?: Logger;
  /** Where to register the client's metrics (see paths/metrics.ts). @default nullMetrics */
  metrics?: Metrics;
  session?: SessionOptions;
  /** First path-redial delay ceiling while a session waits to be resumed. @default 200 */
  backoffBaseMs?: number;
  /** @default 10000 */
  backoffMaxMs?: number;
  /** Opening a new session after one was lost: first delay ceiling (see backoff.ts). @default 1000 */
  reconnectBaseMs?: number;
  /** … and the cap. @default 10000 */
  reconnectMaxMs?: number;
  /**
   * Failed attempts in a row to open a replacement session after which the
   * client gives up ('gaveUp' with an UnreachableError); refusals do not
   * count (see refusedRetryMs). @default undefined = never give up
   */
  maxRetries?: number;
  /** Replace a session the server no longer knows with a new one. @default true */
  renew?: boolean;
  /**
   * After a refusal (see {@link refusalOf}), try again this often, ms; 0 =
   * stop trying (a 'refused' event says so). @default 60000
   */
  refusedRetryMs?: number;
}

/** A SessionClient whose paths are dialed directly (carrier + endpoint each). */
export interface SessionClientInit extends ChannelInit, SupervisorOptions {
  /** The first (or only) path. */
  carrier: Carrier;
  endpoint: Endpoint;
  /** Further paths bonded into the same session. */
  extraPaths?: PathSpec[];
  /** Role/weight/label of the first path. */
  firstPath?: PathOptions;
  serverPublicKey: Buffer;
  clientKeyPair: KeyPair;
  /** @default 10000 */
  handshakeTimeoutMs?: number;
  /** Congestion controller of udp paths (both directions; the server may cap a fixed rate). @default bbr */
  cc?: CcChoice | undefined;
  /** ACK knobs of udp paths. @default 'fast' */
  udpMode?: UdpMode;
  /** Largest UDP payload sent on udp paths. @default 1452 */
  maxDatagramSize?: number;
}

/** A SessionClient over any path sources; `sources[0]` opens sessions and names the server in log lines. */
export interface SourcedClientInit extends SupervisorOptions {
  sources: readonly PathSource[];
}

/** The path sources of a client init: a direct dial per path. */
export function sourcesOf(init: SessionClientInit | SourcedClientInit): readonly PathSource[] {
  if ('sources' in init) return init.sources;
  const specs: PathSpec[] = [{ ...init.firstPath, carrier: init.carrier, endpoint: init.endpoint }, ...(init.extraPaths ?? [])];
  return specs.map(({ carrier, endpoint, ...options }) =>
    carrier.kind === 'packet' ? new PacketDialSource(carrier, endpoint, options, init) : new DirectDialSource(carrier, endpoint, options, init),
  );
}

/** A session that lived this long resets the reconnect backoff. */
const STABLE_MS = 30_000;

export class SessionClient extends EventEmitter implements PathSupervisor {
  private readonly log: Logger;
  private current: Session | undefined;
  private readonly ac = new AbortController();
  private closed = false;
  private readonly sources: readonly PathSource[];
  /** The server, for log lines. */
  private readonly server: string;
  /** Path id in the current session → index of its source. */
  private readonly pathSpec = new Map<number, number>();
  private readonly redialing = new Set<number>();
  private renewing = false;
  /** The refusal last logged, until a session is accepted again: the same reason is not logged twice. */
  private refusal: string | undefined;
  /** Paces new sessions; kept across renewals so a server that accepts and at once closes is not hammered. */
  private readonly backoff: Backoff;
  /** When the current session was opened (Date.now()). */
  private openedAt = 0;
  /** Counters for status(). */
  private readonly history: SessionHistory;
  private lastCipher: RecordCipher | undefined;

  /** `track: false` when another supervisor wraps this one and reports status itself. */
  constructor(
    private readonly init: SessionClientInit | SourcedClientInit,
    opts: { track?: boolean } = {},
  ) {
    super();
    this.log = init.logger ?? nullLogger;
    this.sources = sourcesOf(init);
    if (this.sources.length === 0) throw new ClosedError('session client: no path sources');
    this.server = (this.sources[0] as PathSource).name;
    this.backoff = new Backoff({ baseMs: init.reconnectBaseMs, maxMs: init.reconnectMaxMs });
    // Inside a FailoverClient, the outer supervisor says 'the server closed the session' (once, not twice).
    this.history = new SessionHistory(this, opts.track === false ? nullLogger : this.log);
    if (opts.track !== false && init.metrics) registerSupervisorMetrics(this, init.metrics);
  }

  /** Counters and state for status reports. */
  status(): SupervisorStatus {
    return { ...this.history.status(0), ...(this.lastCipher ? { cipher: this.lastCipher } : {}) };
  }

  /** The record cipher the newest path negotiated (undefined before the first, or TLS-bound). */
  get cipher(): RecordCipher | undefined {
    return this.lastCipher;
  }

  /** Path `i`'s name in log lines. */
  private labelOf(i: number): string {
    const source = this.sources[i] as PathSource;
    return source.options.label ?? source.name;
  }

  /** The current session (undefined before connect()). */
  get session(): Session | undefined {
    return this.current;
  }

  /** Dials the first path and opens the session; the other paths join in the background. Fails fast (a refusal too). */
  async connect(signal?: AbortSignal): Promise<Session> {
    if (this.closed) throw new ClosedError('client');
    const session = await this.openSession(signal);
    return session;
  }

  private get refusedRetryMs(): number {
    return this.init.refusedRetryMs ?? DEFAULT_REFUSED_RETRY_MS;
  }

  /**
   * Reports a refusal: one log line per distinct reason, and a 'refused'
   * event (err, retryInMs; null when the client stops trying). Returns
   * whether to try again.
   */
  private refused(why: string, err: Error): boolean {
    const retry = this.refusedRetryMs > 0 && (this.init.renew ?? true);
    if (why !== this.refusal) {
      this.refusal = why;
      const detail = err instanceof SessionClosedError ? { detail: err.message } : {};
      this.log.error({ server: this.server, ...detail }, refusalMessage(why, retry ? this.refusedRetryMs : null));
    }
    this.emit('refused', new RefusedError(why, err), retry ? this.refusedRetryMs : null);
    return retry;
  }

  /** True when `session` is no longer ours to keep alive. */
  private gone(session: Session): boolean {
    return this.closed || session !== this.current || session.state === 'closed' || session.state === 'closing';
  }

  /** A session was accepted: a later refusal is news again. */
  private accepted(): void {
    if (this.refusal === undefined) return;
    this.log.info({ server: this.server, was: this.refusal }, 'server accepts us again');
    this.refusal = undefined;
  }

  private async openSession(signal?: AbortSignal): Promise<Session> {
    this.pathSpec.clear();
    const { session } = await this.dialPath(0, undefined, signal);
    this.accepted();
    this.adopt(session);
    for (let i = 1; i < this.sources.length; i++) void this.maintain(i, session, true);
    return session;
  }

  /** Opens path `i`; with `into`, resumes/joins that session, else opens a new one. */
  private async dialPath(i: number, into: Session | undefined, signal?: AbortSignal): Promise<{ session: Session }> {
    const source = this.sources[i] as PathSource;
    const init = this.init;
    const sig = signal ? AbortSignal.any([signal, this.ac.signal]) : this.ac.signal;
    let resume: ResumeRequest | undefined;
    const { channel, hello } = await source.open({
      // Join or resume is decided once the carrier is up (paths may have come or gone meanwhile).
      resume: into ? () => (resume = { id: into.id, recvSeq: into.receivedSeq, join: into.pathCount > 0, backup: source.options.role === 'backup' }) : undefined,
      streamWindow: initialStreamWindow(init.session),
      sessionWindow: init.session?.sessionWindow ?? SESSION_WINDOW,
      signal: sig,
    });
    const join = resume?.join === true;
    this.lastCipher = channel.info.cipher;
    const session =
      into ??
      new Session({
        ...init.session,
        role: 'client',
        id: hello.sessionId,
        logger: this.log,
        peerStreamWindow: hello.streamWindow,
        peerSessionWindow: hello.sessionWindow,
      });
    const path = session.attach(channel, hello.recvSeq, { ...source.options, join, label: source.options.label ?? source.name });
    if (path) this.pathSpec.set(path.id, i);
    return { session };
  }

  private adopt(session: Session): void {
    this.current = session;
    this.openedAt = Date.now();
    session.on('pathClosed', (st: PathStats, err?: Error) => {
      const i = this.pathSpec.get(st.id);
      this.pathSpec.delete(st.id);
      if (i === undefined || this.closed || session.state === 'closed' || session.state === 'closing') return;
      if (session.pathCount > 0) this.log.warn({ path: st.label, reason: err?.message ?? 'carrier closed' }, 'path lost; traffic moved to the other paths; redialing it');
      void this.maintain(i, session, false);
    });
    session.on('detached', (err?: Error) => {
      const graceS = Math.round(this.graceMs / 100) / 10;
      this.log.warn({ server: this.server, reason: err?.message ?? 'carrier closed' }, `connection to server lost; reconnecting (the session can be resumed for ${graceS} s)`);
      this.emit('detached', err);
    });
    session.once('closed', (err: Error) => {
      this.emit('sessionClosed', session, err);
      if (this.closed || session !== this.current) return;
      this.afterClose(err);
    });
    this.emit('session', session);
  }

  private get graceMs(): number {
    return this.init.session?.graceMs ?? 60_000;
  }

  /**
   * The current session ended without us closing it: say why in one line and
   * open a new one. Refusals (a reject that made maintain() drop the
   * session, or the server's kick/quota/expiry) retry every refusedRetryMs;
   * everything else at once, then with backoff. Without `renew` (a failover
   * probe) nothing is reopened.
   */
  private afterClose(err: Error): void {
    const why = refusalOf(err);
    if (why !== undefined) {
      if (this.refused(why, err)) void this.renew(this.refusedRetryMs);
      return;
    }
    if (!(this.init.renew ?? true)) return;
    const server = this.server;
    if (err instanceof RejectedError && err.reject === RejectCode.sessionUnknown) {
      this.log.warn({ server }, 'server no longer knows this session (it restarted?); open connections are lost; starting a new session');
    } else if (err instanceof SessionClosedError && err.by === 'remote' && (err.closeCode === CloseCode.idle || err.closeCode === CloseCode.shutdown)) {
      this.log.info({ server, reason: err.message }, 'server closed the session; opening a new one');
    } else if (err instanceof TimeoutError) {
      // The grace timer: every path stayed down for graceMs.
      this.log.warn({ server, graceMs: this.graceMs }, 'could not resume the session in time; open connections are lost; starting a new session');
    } else {
      this.log.warn({ server, reason: err.message }, 'session ended; starting a new session');
    }
    // A session that lasted is a fresh start: try at once. One that ended
    // right after opening (a server that accepts, then closes) goes on with the backoff.
    if (Date.now() - this.openedAt >= STABLE_MS) this.backoff.reset();
    void this.renew(this.backoff.attempts === 0 ? 0 : this.backoff.next());
  }

  /** Redials path `i` into `session` until it is attached, the session ends, or we close. */
  private async maintain(i: number, session: Session, first: boolean): Promise<void> {
    if (this.redialing.has(i)) return;
    this.redialing.add(i);
    const started = Date.now();
    /** Set after a refusal while other paths carry the session: this path then retries slowly. */
    let slow = false;
    try {
      for (let attempt = first ? -1 : 0; !this.closed && session === this.current && session.state !== 'closed' && session.state !== 'closing'; attempt++) {
        try {
          if (slow) await sleep(this.refusedRetryMs, this.ac.signal);
          else if (attempt >= 0) await sleep(backoffDelay(attempt, this.init.backoffBaseMs ?? 200, this.init.backoffMaxMs ?? 10_000), this.ac.signal);
          if (this.gone(session)) return; // while we slept
          const wasDetached = session.state === 'detached';
          await this.dialPath(i, session);
          // The grace timer may have closed the session during the handshake: nothing was resumed.
          if (this.gone(session)) return;
          this.accepted();
          if (wasDetached) {
            this.log.info({ afterMs: Date.now() - started, attempts: attempt + 1, framesResent: session.stats.framesResent }, 'connected (session resumed)');
            this.emit('resumed', session);
          } else if (!first) this.log.info({ path: this.labelOf(i) }, 'path rejoined');
          return;
        } catch (err) {
          if (err instanceof AbortedError || this.closed) return;
          if (err instanceof RejectedError && err.reject === RejectCode.sessionUnknown) {
            session.abort(err); // afterClose() says so and opens a new session
            return;
          }
          const why = refusalOf(err);
          if (why !== undefined && session.pathCount > 0) {
            // The server lets a refused user's live session go on: while other
            // paths carry it, only this path waits (or, with retry off, stays down).
            if (!slow) this.log.warn({ path: this.labelOf(i), reason: why }, 'server refused to add this path; the session goes on over the others');
            if (this.refusedRetryMs === 0) return;
            slow = true;
            continue;
          }
          if (why !== undefined) {
            // A session with no path left cannot be resumed: drop it; afterClose()
            // reports the refusal and opens a new session when the server agrees.
            session.abort(err as Error);
            return;
          }
          this.log.debug({ path: i, attempt, err: toError(err).message }, 'dial attempt failed');
        }
      }
    } finally {
      this.redialing.delete(i);
    }
  }

  /** True while the session is gone and a new one is being opened. */
  get reconnecting(): boolean {
    return this.renewing;
  }

  /**
   * Opens a new session, again and again until one opens, we close, or
   * `maxRetries` failures in a row: first after `firstDelayMs`, then with
   * backoff (one `reconnecting in Ns` line and a 'reconnecting' event per
   * failure), or every refusedRetryMs while the server refuses us (refusals
   * do not count against maxRetries).
   */
  private async renew(firstDelayMs: number): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    const started = Date.now();
    const server = this.server;
    const count = new FailureCount(this.backoff, this.init.maxRetries, server);
    try {
      await keepTrying({
        firstDelayMs,
        attempt: async () => {
          const session = await this.openSession();
          this.log.info({ server, afterMs: Date.now() - started, attempts: count.failures + 1, cipher: this.lastCipher }, 'connected (new session)');
          this.emit('renewed', session);
        },
        failed: (err) => {
          if (err instanceof AbortedError || this.closed) return undefined;
          const why = refusalOf(err);
          if (why !== undefined) return this.refused(why, err as Error) ? this.refusedRetryMs : undefined;
          const delay = count.failed(err);
          if (typeof delay !== 'number') {
            this.log.error({ server }, delay.message);
            this.emit('gaveUp', delay);
            return undefined;
          }
          this.log.info({ server, attempt: count.failures, err: toError(err).message }, `reconnecting in ${formatDelay(delay)}`);
          this.emit('reconnecting', delay, toError(err));
          return delay;
        },
        wait: async (ms) => {
          try {
            await sleep(ms, this.ac.signal);
            return !this.closed;
          } catch (err) {
            if (err instanceof AbortedError) return false;
            throw err;
          }
        },
      });
    } finally {
      this.renewing = false;
    }
  }

  /** Closes the session and stops reconnecting. Idempotent. */
  close(code = 0, reason = 'client closing'): void {
    if (this.closed) return;
    this.closed = true;
    this.ac.abort(new ClosedError('client'));
    this.current?.close(code, reason);
  }
}

