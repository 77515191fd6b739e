/**
 * Reverse port forwards (`-R [BIND:]PORT:HOST:PORT`): the server listens on
 * BIND:PORT for as long as our BIND stream stays open, and each connection
 * it accepts arrives here as an ACCEPTED stream that we connect to HOST:PORT
 * on this side.
 *
 * ```
 *   server listener ◀── BIND stream (status, bind id, bound address; held open)
 *   peer ─▶ server ── ACCEPTED(bind id, peer) ─▶ connect HOST:PORT ─┬─ ok:   status 0, splice
 *                                                                  └─ fail: status 0x05/0x04…, end
 * ```
 *
 * Streams survive a path loss, so the bind does too. When SessionClient
 * replaces a lost session, the server has dropped the listener with the old
 * session, and we bind again on the new one ('bound' is emitted again).
 */
import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { backoffDelay, sleep } from '../core/abort.js';
import { formatHostPort, makeDestination, type Destination } from '../core/address.js';
import { AbortedError, ClosedError, isBenignClose, TimeoutError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { PolyStream } from '../session/stream.js';
import type { Session } from '../session/session.js';
import type { ProxyBind, ProxyClient } from './proxy-client.js';
import { splice, type Splice } from './splice.js';
import type { ListenAddress } from './tcp-front.js';

/** Options of {@link ReverseForward}. */
export interface ReverseForwardInit {
  /** Where the server listens (port 0: the server picks; see 'bound'). */
  bind: ListenAddress;
  /** Where accepted connections go, from this machine. */
  target: Destination;
  proxy: ProxyClient;
  logger?: Logger;
  /** Deadline for connecting to `target`. @default 10000 */
  connectTimeoutMs?: number;
  /** Attempts to bind again on a replacement session. @default 8 */
  rebindAttempts?: number;
}

/** Status for a failed local connect (SOCKS5 reply codes, as on the wire). */
function statusForLocalError(err: unknown): number {
  const code = (err as { code?: unknown }).code;
  if (code === 'ECONNREFUSED') return 0x05;
  if (code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 0x03;
  if (err instanceof TimeoutError || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 0x04;
  return 0x01;
}

/**
 * See the file comment. Events: `'bound'(addr: Destination)` each time the
 * server listens (first start and after a session renewal).
 */
export class ReverseForward extends EventEmitter {
  private readonly log: Logger;
  private readonly bindDest: Destination;
  private current: ProxyBind | undefined;
  private readonly links = new Set<Splice>();
  private readonly pending = new Set<Socket>();
  private readonly ac = new AbortController();
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(private readonly init: ReverseForwardInit) {
    super();
    this.bindDest = makeDestination(init.bind.host, init.bind.port);
    this.log = (init.logger ?? nullLogger).child({ reverse: `${formatHostPort(init.bind)} → ${formatHostPort(init.target)}` });
  }

  /** The server's listen address while bound. */
  get bound(): Destination | undefined {
    return this.current?.bound;
  }

  /**
   * Binds on the current session and follows session renewals from then on.
   * Resolves with the address the server listens on.
   * @throws ProxyStatusError when the server refuses the bind, ClosedError, TimeoutError
   */
  async start(): Promise<Destination> {
    if (this.closed) throw new ClosedError('reverse forward');
    this.unsubscribe ??= this.init.proxy.onSession((s) => void this.rebind(s));
    try {
      return (await this.bindOnce()).bound;
    } catch (err) {
      // Not bound: do not start binding on later sessions behind the caller's back.
      this.unsubscribe();
      this.unsubscribe = undefined;
      throw err;
    }
  }

  private async bindOnce(): Promise<ProxyBind> {
    const b = await this.init.proxy.bind(this.bindDest, (s, peer) => this.onAccepted(s, peer), { signal: this.ac.signal });
    if (this.closed) {
      b.close();
      throw new ClosedError('reverse forward');
    }
    this.current = b;
    this.log.info({ bound: formatHostPort(b.bound) }, `server listening on ${formatHostPort(b.bound)}, forwarding to ${formatHostPort(this.init.target)}`);
    void b.closed.then(() => {
      if (this.current !== b) return;
      this.current = undefined;
      if (!this.closed && b.session.state !== 'closed') this.log.warn({}, 'server released the reverse forward listener');
    });
    this.emit('bound', b.bound);
    return b;
  }

  /** A replacement session: the old listener died with the old session; bind again. */
  private async rebind(session: Session): Promise<void> {
    const attempts = this.init.rebindAttempts ?? 8;
    for (let i = 0; i < attempts && !this.closed; i++) {
      try {
        if (i > 0) await sleep(backoffDelay(i, 200, 5000), this.ac.signal);
        if (session.state === 'closed') return; // an even newer session will call us again
        await this.bindOnce();
        return;
      } catch (err) {
        if (err instanceof AbortedError || this.closed) return;
        this.log.warn({ attempt: i + 1, err: toError(err).message }, 'could not bind the reverse forward again on the new session');
      }
    }
  }

  private onAccepted(stream: PolyStream, peer: Destination): void {
    if (this.closed) {
      stream.destroy();
      return;
    }
    const target = this.init.target;
    const sock = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.pending.add(sock);
    const timer = setTimeout(() => sock.destroy(new TimeoutError(`connect to ${formatHostPort(target)}`)), this.init.connectTimeoutMs ?? 10_000);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      this.pending.delete(sock);
      const status = statusForLocalError(err);
      this.log.info({ peer: formatHostPort(peer), err: err.message }, `reverse forward: cannot reach ${formatHostPort(target)}`);
      stream.end(Buffer.from([status]));
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      this.pending.delete(sock);
      sock.setNoDelay(true);
      stream.write(Buffer.from([0]));
      const link = splice(sock, stream, {
        onDone: (err) => {
          this.links.delete(link);
          if (err && !isBenignClose(err)) this.log.debug({ peer: formatHostPort(peer), err: err.message }, 'reverse forwarded connection ended with an error');
        },
      });
      this.links.add(link);
    });
  }

  /** Releases the server's listener (ends the BIND stream) and closes every forwarded connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ac.abort(new ClosedError('reverse forward'));
    this.unsubscribe?.();
    this.current?.close();
    this.current = undefined;
    for (const s of this.pending) s.destroy(new ClosedError('reverse forward'));
    for (const l of [...this.links]) l.destroy();
  }
}
