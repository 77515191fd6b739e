/**
 * Keeps one session to a server alive over one or several paths. Each path
 * (a carrier + endpoint, optionally a local bind, a role and a weight) has
 * its own maintenance loop: when it dies it is dialed again (exponential
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
import { AbortedError, ClosedError, PolytunError, RejectCode, RejectedError, TimeoutError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { formatEndpoint, type Endpoint, type StreamCarrier } from '../carriers/types.js';
import type { ChannelInit } from '../secure/channel.js';
import { clientHandshake } from '../secure/handshake.js';
import type { KeyPair } from '../secure/keys.js';
import { CloseCode, initialStreamWindow, Session, SessionClosedError, type PathOptions, type PathStats, type SessionOptions } from '../session/session.js';
import { Backoff, UnreachableError, formatDelay, retriesLeft } from './backoff.js';

/** One network path to the server. */
export interface PathSpec extends PathOptions {
  carrier: StreamCarrier;
  endpoint: Endpoint;
}

export interface SessionClientInit extends ChannelInit {
  /** The first (or only) path. */
  carrier: StreamCarrier;
  endpoint: Endpoint;
  /** Further paths bonded into the same session. */
  extraPaths?: PathSpec[];
  /** Role/weight/label of the first path. */
  firstPath?: PathOptions;
  serverPublicKey: Buffer;
  clientKeyPair: KeyPair;
  logger?: Logger;
  session?: SessionOptions;
  /** @default 10000 */
  handshakeTimeoutMs?: number;
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

/** A session that lived this long resets the reconnect backoff. */
const STABLE_MS = 30_000;

/** Default of {@link SessionClientInit.refusedRetryMs}. */
export const DEFAULT_REFUSED_RETRY_MS = 60_000;

/**
 * Why the server will not have us, in words for a log line, when `err` is a
 * refusal that retrying soon cannot fix; undefined for anything else
 * (network errors, busy, draining, a session the server forgot, idle or
 * shutdown closes), which the normal backoff handles.
 */
export function refusalOf(err: unknown): string | undefined {
  if (err instanceof RejectedError) {
    switch (err.reject) {
      case RejectCode.unauthorized:
        return 'key not accepted (no such user: deleted, re-keyed or never added)';
      case RejectCode.disabled:
        return 'user disabled';
      case RejectCode.expired:
        return 'account expired';
      case RejectCode.quotaExceeded:
        return 'traffic quota exceeded';
      default:
        return undefined;
    }
  }
  if (err instanceof SessionClosedError && err.by === 'remote') {
    switch (err.closeCode) {
      case CloseCode.kicked:
        return 'session kicked';
      case CloseCode.quota:
        return 'traffic quota exceeded';
      case CloseCode.expired:
        return 'account expired';
      default:
        return undefined;
    }
  }
  return undefined;
}

/** The server refused us and the client stopped trying (`refusedRetryMs` 0). `cause` is the server's answer. */
export class RefusedError extends PolytunError {
  /** What {@link refusalOf} said. */
  readonly reason: string;
  constructor(reason: string, cause: unknown) {
    super('ERR_REFUSED', `server refused: ${reason}`, { cause });
    this.reason = reason;
  }
}

export class SessionClient extends EventEmitter {
  private readonly log: Logger;
  private current: Session | undefined;
  private readonly ac = new AbortController();
  private closed = false;
  private readonly specs: PathSpec[];
  /** Path id in the current session → index of its spec. */
  private readonly pathSpec = new Map<number, number>();
  private readonly redialing = new Set<number>();
  private renewing = false;
  /** The refusal last logged, until a session is accepted again: the same reason is not logged twice. */
  private refusal: string | undefined;
  /** Paces new sessions; kept across renewals so a server that accepts and at once closes is not hammered. */
  private readonly backoff: Backoff;
  /** When the current session was opened (Date.now()). */
  private openedAt = 0;

  constructor(private readonly init: SessionClientInit) {
    super();
    this.log = init.logger ?? nullLogger;
    this.specs = [{ ...init.firstPath, carrier: init.carrier, endpoint: init.endpoint }, ...(init.extraPaths ?? [])];
    this.backoff = new Backoff({ baseMs: init.reconnectBaseMs, maxMs: init.reconnectMaxMs });
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
      this.log.error({ server: formatEndpoint(this.init.endpoint), ...detail }, refusalMessage(why, retry ? this.refusedRetryMs : null));
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
    this.log.info({ server: formatEndpoint(this.init.endpoint), was: this.refusal }, 'server accepts us again');
    this.refusal = undefined;
  }

  private async openSession(signal?: AbortSignal): Promise<Session> {
    this.pathSpec.clear();
    const { session } = await this.dialPath(0, undefined, signal);
    this.accepted();
    this.adopt(session);
    for (let i = 1; i < this.specs.length; i++) void this.maintain(i, session, true);
    return session;
  }

  /** Dials path `i`; with `into`, resumes/joins that session, else opens a new one. */
  private async dialPath(i: number, into: Session | undefined, signal?: AbortSignal): Promise<{ session: Session }> {
    const spec = this.specs[i] as PathSpec;
    const init = this.init;
    const sig = signal ? AbortSignal.any([signal, this.ac.signal]) : this.ac.signal;
    const conn = await spec.carrier.dial(spec.endpoint, { signal: sig, timeoutMs: init.handshakeTimeoutMs ?? 10_000 });
    const join = into !== undefined && into.pathCount > 0;
    const { channel, hello } = await clientHandshake(
      { stream: conn.stream, remote: conn.remote, local: conn.local, carrier: spec.carrier.scheme },
      {
        ...init,
        resume: into ? { id: into.id, recvSeq: into.receivedSeq, join, backup: spec.role === 'backup' } : undefined,
        streamWindow: initialStreamWindow(init.session),
        sessionWindow: init.session?.sessionWindow ?? 16 << 20,
        timeoutMs: init.handshakeTimeoutMs,
        signal: sig,
      },
    );
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
    const path = session.attach(channel, hello.recvSeq, { ...spec, join, label: spec.label ?? formatEndpoint(spec.endpoint) });
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
      this.log.warn({ server: formatEndpoint(this.init.endpoint), reason: err?.message ?? 'carrier closed' }, `connection to server lost; reconnecting (the session can be resumed for ${graceS} s)`);
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
    const server = formatEndpoint(this.init.endpoint);
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
          } else if (!first) this.log.info({ path: this.specs[i]?.label ?? formatEndpoint((this.specs[i] as PathSpec).endpoint) }, 'path rejoined');
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
            if (!slow) this.log.warn({ path: this.specs[i]?.label ?? formatEndpoint((this.specs[i] as PathSpec).endpoint), reason: why }, 'server refused to add this path; the session goes on over the others');
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
    const backoff = this.backoff;
    const started = Date.now();
    const server = formatEndpoint(this.init.endpoint);
    let failures = 0;
    try {
      let delay = firstDelayMs;
      while (!this.closed) {
        try {
          if (delay > 0) await sleep(delay, this.ac.signal);
          const session = await this.openSession();
          this.log.info({ server, afterMs: Date.now() - started, attempts: failures + 1 }, 'connected (new session)');
          this.emit('renewed', session);
          return;
        } catch (err) {
          if (err instanceof AbortedError || this.closed) return;
          const why = refusalOf(err);
          if (why !== undefined) {
            if (!this.refused(why, err as Error)) return;
            delay = this.refusedRetryMs;
            continue;
          }
          failures++;
          if (!retriesLeft(this.init.maxRetries, failures)) {
            const gaveUp = new UnreachableError(server, failures, this.init.maxRetries ?? 0, err);
            this.log.error({ server }, gaveUp.message);
            this.emit('gaveUp', gaveUp);
            return;
          }
          delay = backoff.next();
          this.log.info({ server, attempt: failures, err: toError(err).message }, `reconnecting in ${formatDelay(delay)}`);
          this.emit('reconnecting', delay, toError(err));
        }
      }
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

/** The one log line of a refusal: `server refused: user disabled; trying again every 60 s`. */
export function refusalMessage(why: string, retryInMs: number | null): string {
  if (retryInMs === null || retryInMs <= 0) return `server refused: ${why}; not trying again`;
  const every = retryInMs < 1000 ? `${retryInMs} ms` : `${Math.round(retryInMs / 100) / 10} s`;
  return `server refused: ${why}; trying again every ${every}`;
}
