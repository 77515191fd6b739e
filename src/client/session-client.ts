/**
 * Keeps one session to a server alive: dials the carrier, runs the client
 * handshake, and when the path dies reconnects (exponential backoff with full
 * jitter) and resumes the same session, so open streams continue with no
 * byte lost or duplicated. If the server no longer knows the session (it
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
import { Session, type SessionOptions } from '../session/session.js';

export interface SessionClientInit extends ChannelInit {
  carrier: StreamCarrier;
  endpoint: Endpoint;
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
  private reconnecting = false;

  constructor(private readonly init: SessionClientInit) {
    super();
    this.log = init.logger ?? nullLogger;
  }

  /** The current session (undefined before connect()). */
  get session(): Session | undefined {
    return this.current;
  }

  /** Dials and opens the first session. Fails fast (no retry) so a bad link is reported at once. */
  async connect(signal?: AbortSignal): Promise<Session> {
    const s = await this.open(undefined, signal);
    return s;
  }

  private async dialOnce(resume: Session | undefined, signal?: AbortSignal): Promise<{ session: Session; resumed: boolean }> {
    const init = this.init;
    const sig = signal ? AbortSignal.any([signal, this.ac.signal]) : this.ac.signal;
    const conn = await init.carrier.dial(init.endpoint, { signal: sig, timeoutMs: init.handshakeTimeoutMs ?? 10_000 });
    const { channel, hello } = await clientHandshake(
      { stream: conn.stream, remote: conn.remote, local: conn.local, carrier: init.carrier.scheme },
      {
        ...init,
        resume: resume ? { id: resume.id, recvSeq: resume.receivedSeq } : undefined,
        streamWindow: init.session?.streamWindow ?? 1 << 20,
        sessionWindow: init.session?.sessionWindow ?? 16 << 20,
        timeoutMs: init.handshakeTimeoutMs,
        signal: sig,
      },
    );
    if (resume) {
      resume.attach(channel, hello.recvSeq);
      return { session: resume, resumed: true };
    }
    const session = new Session({
      ...init.session,
      role: 'client',
      id: hello.sessionId,
      logger: this.log,
      peerStreamWindow: hello.streamWindow,
      peerSessionWindow: hello.sessionWindow,
    });
    session.attach(channel, hello.recvSeq);
    return { session, resumed: false };
  }

  private async open(resume: Session | undefined, signal?: AbortSignal): Promise<Session> {
    if (this.closed) throw new ClosedError('client');
    const { session } = await this.dialOnce(resume, signal);
    if (session !== this.current) this.adopt(session);
    return session;
  }

  private adopt(session: Session): void {
    this.current = session;
    session.on('detached', (err?: Error) => {
      this.log.warn({ server: formatEndpoint(this.init.endpoint), reason: err?.message ?? 'carrier closed' }, 'connection to server lost; reconnecting');
      this.emit('detached', err);
      void this.reconnect(session);
    });
    session.once('closed', (err: Error) => this.emit('sessionClosed', session, err));
    this.emit('session', session);
  }

  private async reconnect(session: Session): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    const started = Date.now();
    try {
      for (let attempt = 0; !this.closed && session.state === 'detached'; attempt++) {
        try {
          await sleep(backoffDelay(attempt, this.init.backoffBaseMs ?? 200, this.init.backoffMaxMs ?? 10_000), this.ac.signal);
          await this.dialOnce(session);
          const st = session.stats;
          this.log.info({ afterMs: Date.now() - started, attempts: attempt + 1, framesResent: st.framesResent }, 'session resumed');
          this.emit('resumed', session);
          return;
        } catch (err) {
          if (err instanceof AbortedError || this.closed) return;
          if (err instanceof RejectedError && err.reject === RejectCode.sessionUnknown) {
            this.log.warn({}, 'server no longer knows this session; open connections are lost, starting a new session');
            session.abort(err);
            if (this.init.renew ?? true) await this.renewLoop();
            return;
          }
          if (err instanceof RejectedError && err.reject === RejectCode.unauthorized) {
            this.log.error({}, 'server refused our key (user removed or disabled); giving up');
            session.abort(err);
            return;
          }
          this.log.debug({ attempt, err: toError(err).message }, 'reconnect attempt failed');
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  private async renewLoop(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await sleep(backoffDelay(attempt, this.init.backoffBaseMs ?? 200, this.init.backoffMaxMs ?? 10_000), this.ac.signal);
        await this.open(undefined);
        return;
      } catch (err) {
        if (err instanceof AbortedError || this.closed) return;
        this.log.debug({ attempt, err: toError(err).message }, 'new session attempt failed');
      }
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
