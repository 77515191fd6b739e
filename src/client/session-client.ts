/**
 * Keeps one session to a server alive over one or several paths. Each path
 * (a carrier + endpoint, optionally a local bind, a role and a weight) has
 * its own maintenance loop: when it dies it is dialed again (exponential
 * backoff with full jitter) and joins the same session; when every path is
 * gone the first one back resumes the session, so open streams continue with
 * no byte lost or duplicated. If the server no longer knows the session (it
 * restarted, or the grace period ran out) a fresh session replaces it and
 * 'session' is emitted again.
 */
import { EventEmitter } from 'node:events';
import { backoffDelay, sleep } from '../core/abort.js';
import { AbortedError, ClosedError, RejectCode, RejectedError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { formatEndpoint, type Endpoint, type StreamCarrier } from '../carriers/types.js';
import type { ChannelInit } from '../secure/channel.js';
import { clientHandshake } from '../secure/handshake.js';
import type { KeyPair } from '../secure/keys.js';
import { CloseCode, Session, SessionClosedError, type PathOptions, type PathStats, type SessionOptions } from '../session/session.js';

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
  /** First reconnect delay ceiling. @default 200 */
  backoffBaseMs?: number;
  /** @default 10000 */
  backoffMaxMs?: number;
  /** Replace a session the server no longer knows with a new one. @default true */
  renew?: boolean;
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

  constructor(private readonly init: SessionClientInit) {
    super();
    this.log = init.logger ?? nullLogger;
    this.specs = [{ ...init.firstPath, carrier: init.carrier, endpoint: init.endpoint }, ...(init.extraPaths ?? [])];
  }

  /** The current session (undefined before connect()). */
  get session(): Session | undefined {
    return this.current;
  }

  /** Dials the first path and opens the session; the other paths join in the background. Fails fast. */
  async connect(signal?: AbortSignal): Promise<Session> {
    if (this.closed) throw new ClosedError('client');
    const session = await this.openSession(signal);
    return session;
  }

  private async openSession(signal?: AbortSignal): Promise<Session> {
    this.pathSpec.clear();
    const { session } = await this.dialPath(0, undefined, signal);
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
        streamWindow: init.session?.streamWindow ?? 1 << 20,
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
    session.on('pathClosed', (st: PathStats, err?: Error) => {
      const i = this.pathSpec.get(st.id);
      this.pathSpec.delete(st.id);
      if (i === undefined || this.closed || session.state === 'closed' || session.state === 'closing') return;
      if (session.pathCount > 0) this.log.warn({ path: st.label, reason: err?.message ?? 'carrier closed' }, 'path lost; traffic moved to the other paths; redialing it');
      void this.maintain(i, session, false);
    });
    session.on('detached', (err?: Error) => {
      this.log.warn({ server: formatEndpoint(this.init.endpoint), reason: err?.message ?? 'carrier closed' }, 'connection to server lost; reconnecting');
      this.emit('detached', err);
    });
    session.once('closed', (err: Error) => {
      this.emit('sessionClosed', session, err);
      // The server closed an idle session, or is restarting: open a new one
      // (backoff applies). Kicks, quota and expiry are final.
      const code = err instanceof SessionClosedError && err.by === 'remote' ? err.closeCode : undefined;
      if (!this.closed && session === this.current && (code === CloseCode.idle || code === CloseCode.shutdown) && (this.init.renew ?? true)) {
        this.log.info({ reason: err.message }, 'server closed the session; opening a new one');
        void this.renew();
      }
    });
    this.emit('session', session);
  }

  /** Redials path `i` into `session` until it is attached, the session ends, or we close. */
  private async maintain(i: number, session: Session, first: boolean): Promise<void> {
    if (this.redialing.has(i)) return;
    this.redialing.add(i);
    const started = Date.now();
    try {
      for (let attempt = first ? -1 : 0; !this.closed && session === this.current && session.state !== 'closed' && session.state !== 'closing'; attempt++) {
        try {
          if (attempt >= 0) await sleep(backoffDelay(attempt, this.init.backoffBaseMs ?? 200, this.init.backoffMaxMs ?? 10_000), this.ac.signal);
          const wasDetached = session.state === 'detached';
          await this.dialPath(i, session);
          if (wasDetached) {
            this.log.info({ afterMs: Date.now() - started, attempts: attempt + 1, framesResent: session.stats.framesResent }, 'session resumed');
            this.emit('resumed', session);
          } else if (!first) this.log.info({ path: this.specs[i]?.label ?? formatEndpoint((this.specs[i] as PathSpec).endpoint) }, 'path rejoined');
          return;
        } catch (err) {
          if (err instanceof AbortedError || this.closed) return;
          if (err instanceof RejectedError && err.reject === RejectCode.sessionUnknown) {
            this.log.warn({}, 'server no longer knows this session; open connections are lost, starting a new session');
            session.abort(err);
            if (this.init.renew ?? true) await this.renew();
            return;
          }
          if (err instanceof RejectedError && err.reject === RejectCode.unauthorized) {
            this.log.error({}, 'server refused our key (user removed or disabled); giving up');
            session.abort(err);
            return;
          }
          this.log.debug({ path: i, attempt, err: toError(err).message }, 'dial attempt failed');
        }
      }
    } finally {
      this.redialing.delete(i);
    }
  }

  private async renew(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          await sleep(backoffDelay(attempt, this.init.backoffBaseMs ?? 200, this.init.backoffMaxMs ?? 10_000), this.ac.signal);
          await this.openSession();
          return;
        } catch (err) {
          if (err instanceof AbortedError || this.closed) return;
          this.log.debug({ attempt, err: toError(err).message }, 'new session attempt failed');
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
