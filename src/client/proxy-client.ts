/**
 * The client end of the proxy protocol (src/proxy/wire.ts) over whichever
 * session is current: CONNECT streams with their status byte, UDP
 * associations on the datagram lane, and BIND registrations for reverse
 * forwards. Every front (SOCKS5, HTTP, -L, -R) goes through one ProxyClient,
 * which takes the proxy's lanes of the session (ACCEPTED streams, UDP flows;
 * session/lanes.ts) and dispatches by bind id and flow id:
 *
 * ```
 *   ACCEPTED streams ──▶ SessionDispatch ── bindId ──▶ that bind's handler
 *   UDP flows ──▶ UdpFlows ── flow id ──▶ that UdpAssociation
 * ```
 *
 * Beside it, by job: udp-flows.ts (UDP associations and their counters),
 * reply-head.ts (reading the status/BIND reply off a stream), splice.ts
 * (relaying a local socket and a stream), tcp-front.ts (what the local
 * fronts share: the listener, credentials, the loopback rule).
 *
 * It asks its getter for the session on every call, so after SessionClient
 * replaces a lost session new work lands on the new one; with `events` it
 * also installs the dispatcher there at once and tells `onSession` listeners
 * (reverse forwards re-register their binds).
 */
import type { Destination } from '../core/address.js';
import { AbortedError, ClosedError, ProtocolError, isBenignClose, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { decodeOpen, encodeOpen, OPEN_ACCEPTED, STATUS_OK, UDP_FLOW_FIRST, UDP_FLOW_LAST } from '../proxy/wire.js';
import type { Session } from '../session/session.js';
import { ResetCode, type PolyStream } from '../session/stream.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import { bindReplyParser, readHead, statusParser, ProxyStatusError, type BindReply } from './reply-head.js';
import { UdpFlows, type UdpAssociation, type UdpTraffic } from './udp-flows.js';
import { MAX_HELD_ACCEPTS as MAX_HELD } from '../core/limits.js';

export { ProxyStatusError } from './reply-head.js';
export type { UdpAssociation, UdpTraffic } from './udp-flows.js';

/** Something that announces replacement sessions (every PathSupervisor does). */
export interface SessionEvents {
  on(event: 'session', listener: (s: Session) => void): unknown;
  off(event: 'session', listener: (s: Session) => void): unknown;
}

/** Options of {@link ProxyClient}. */
export interface ProxyClientInit {
  /** Returns the session to use now, e.g. `() => sessionClient.session`. */
  session: () => Session | undefined;
  /** Source of 'session' events for sessions that replace a lost one. */
  events?: SessionEvents;
  logger?: Logger;
  /** How long to wait for the server's status byte on CONNECT / BIND. @default 30000 */
  statusTimeoutMs?: number;
  /** Where to register the UDP counters. @default none */
  metrics?: Metrics;
}

/** Per-call options of {@link ProxyClient.connect}. */
export interface ConnectOptions {
  /** Aborting before the status arrives destroys the stream and rejects. */
  signal?: AbortSignal;
  /** Resolve only once the server's status byte has arrived. @default false */
  waitStatus?: boolean;
  /**
   * Bytes the local client already sent: written before the OPEN leaves, so
   * both travel in one record (one carrier write, one wake-up of the server,
   * and the server writes them to the target as soon as it connects).
   */
  initial?: Buffer;
}

/**
 * A CONNECT stream. Reading yields only what follows the status byte; in
 * 0-RTT mode start reading after `status` resolved. On a non-zero status the
 * server has ended the stream: destroy it.
 */
export interface ProxyConnection<S> {
  stream: PolyStream;
  /** The server's status: 0 success, else a SOCKS5 reply code (0x02 not allowed, 0x05 refused …). */
  status: S;
}

/** Receives the server's ACCEPTED streams of one bind: `peer` is who connected to the server's listener. */
export type AcceptHandler = (stream: PolyStream, peer: Destination) => void;

/** A live server-side listener (one BIND stream). */
export interface ProxyBind {
  /** The server's id for this bind (per session). */
  readonly id: number;
  /** Address the server listens on. */
  readonly bound: Destination;
  /** The session the bind lives on. */
  readonly session: Session;
  /** Resolves once the bind is gone (released, refused later, or its session ended). */
  readonly closed: Promise<void>;
  /** Releases the listener on the server (ends the BIND stream). Idempotent. */
  close(): void;
}

/** The proxy's lanes of one session: ACCEPTED streams by bind id, UDP flows to the ProxyClient. */
class SessionDispatch {
  readonly binds = new Map<number, AcceptHandler>();
  private pending = 0;
  private held: { stream: PolyStream; bindId: number; peer: Destination }[] = [];

  constructor(session: Session, private readonly log: Logger, onDatagram: (flow: number, payload: Buffer) => void) {
    session.lanes.streams([OPEN_ACCEPTED], (s) => this.onStream(s));
    session.lanes.datagrams(UDP_FLOW_FIRST, UDP_FLOW_LAST, onDatagram);
  }

  /** A BIND is in flight: an ACCEPTED stream may overtake our reading of its reply. */
  bindStarted(): void {
    this.pending++;
  }

  bindSettled(): void {
    this.pending--;
    const held = this.held;
    this.held = [];
    for (const h of held) this.route(h.stream, h.bindId, h.peer);
  }

  private onStream(s: PolyStream): void {
    s.on('error', (err: Error) => this.log.debug({ err: err.message }, 'accepted stream error'));
    let bindId: number;
    let peer: Destination;
    try {
      const req = decodeOpen(s.openPayload);
      if (req.kind !== 'accepted') throw new ProtocolError(`server opened a ${req.kind} stream`);
      bindId = req.bindId;
      peer = req.peer;
    } catch (err) {
      this.log.warn({ err: toError(err).message }, 'refusing a stream from the server');
      s.reset(ResetCode.refused);
      return;
    }
    this.route(s, bindId, peer);
  }

  private route(s: PolyStream, bindId: number, peer: Destination): void {
    const handler = this.binds.get(bindId);
    if (handler) handler(s, peer);
    else if (this.pending > 0 && this.held.length < MAX_HELD) this.held.push({ stream: s, bindId, peer });
    else {
      this.log.debug({ bindId }, 'ACCEPTED stream for an unknown bind; refusing');
      s.reset(ResetCode.refused);
    }
  }
}

/** See the file comment. */
export class ProxyClient {
  private readonly getSession: () => Session | undefined;
  private readonly log: Logger;
  private readonly statusTimeoutMs: number;
  private readonly dispatchers = new WeakMap<Session, SessionDispatch>();
  private readonly listeners = new Set<(s: Session) => void>();
  /** Calls waiting for the first session (see sessionSoon). */
  private readonly firstWaiters = new Set<() => void>();
  /** UDP associations on the datagram lane. */
  private readonly udpFlows: UdpFlows;

  constructor(private readonly init: ProxyClientInit) {
    this.getSession = init.session;
    this.log = init.logger ?? nullLogger;
    this.statusTimeoutMs = init.statusTimeoutMs ?? 30_000;
    this.udpFlows = new UdpFlows(() => this.current(), this.log);
    if (init.metrics) this.udpFlows.registerMetrics(init.metrics);
    init.events?.on('session', this.onNewSession);
  }

  /** A ProxyClient that follows the sessions `client` (a SessionClient, a FailoverClient…) hands over. */
  static forSessionClient(client: PathSupervisor, init: Omit<ProxyClientInit, 'session' | 'events'> = {}): ProxyClient {
    return new ProxyClient({ ...init, session: () => client.session, events: client });
  }

  /** UDP counters (a copy): the session's byte counters count stream data only. */
  get udpTraffic(): UdpTraffic {
    return this.udpFlows.traffic;
  }

  /** Calls `listener` with each session that replaces a lost one. Returns the unsubscribe function. */
  onSession(listener: (s: Session) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops following session events (associations and binds are not touched). */
  dispose(): void {
    this.init.events?.off('session', this.onNewSession);
    this.listeners.clear();
  }

  private readonly onNewSession = (s: Session): void => {
    this.dispatcher(s);
    for (const w of [...this.firstWaiters]) w();
    for (const l of [...this.listeners]) l(s);
  };

  /**
   * The current session; before the first one exists (the client opens its
   * local ports before it dials), waits for it, at most `statusTimeoutMs`:
   * a request that arrives a moment early is served, not refused.
   * @throws ClosedError (no session in time, or it has ended), AbortedError
   */
  private async sessionSoon(signal?: AbortSignal): Promise<Session> {
    if (this.getSession() !== undefined || this.init.events === undefined) return this.current();
    if (signal?.aborted) throw new AbortedError(signal.reason);
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        done();
        resolve(); // on the timeout too: current() below says why
      };
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.firstWaiters.delete(wake);
      };
      const onAbort = (): void => {
        done();
        reject(new AbortedError(signal?.reason));
      };
      const timer = setTimeout(wake, this.statusTimeoutMs);
      timer.unref();
      this.firstWaiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return this.current();
  }

  /** The session to use now, with our dispatcher on it. @throws ClosedError when there is none or it has ended */
  current(): Session {
    const s = this.getSession();
    if (!s) throw new ClosedError('session (not connected yet)');
    // Between a session lost for good and its replacement: say so, not just "closed" (the reconnect lines in the log tell the rest).
    if (s.state === 'closed' || s.state === 'closing') throw new ClosedError('session (reconnecting to the server)', { cause: s.error });
    this.dispatcher(s);
    return s;
  }

  private dispatcher(s: Session): SessionDispatch {
    let d = this.dispatchers.get(s);
    if (!d) {
      d = new SessionDispatch(s, this.log, (flow, payload) => this.udpFlows.receive(flow, payload));
      this.dispatchers.set(s, d);
    }
    return d;
  }

  /**
   * Opens a CONNECT stream to `dest` (the server resolves domains). Without
   * `waitStatus` it resolves at once: write right away (the bytes leave with
   * the OPEN), and read once `status` resolved. With `waitStatus` it resolves
   * after the status byte, whatever its value.
   * @throws ClosedError (no usable session), LimitError (stream limit); the
   *   status rejects with TimeoutError, AbortedError, or the stream's error
   */
  connect(dest: Destination, opts: ConnectOptions & { waitStatus: true }): Promise<ProxyConnection<number>>;
  connect(dest: Destination, opts?: ConnectOptions): Promise<ProxyConnection<Promise<number>>>;
  async connect(dest: Destination, opts: ConnectOptions = {}): Promise<ProxyConnection<number> | ProxyConnection<Promise<number>>> {
    if (opts.signal?.aborted) throw new AbortedError(opts.signal.reason);
    const stream = (await this.sessionSoon(opts.signal)).openStream(encodeOpen({ kind: 'connect', dest }));
    stream.on('error', (err: Error) => this.logStreamError(err));
    // Synchronously, before the session's flush (a microtask) sends the OPEN.
    if (opts.initial !== undefined && opts.initial.length > 0) stream.write(opts.initial);
    const status = readHead(stream, statusParser, this.statusTimeoutMs, opts.signal);
    if (opts.waitStatus) return { stream, status: await status };
    // Observed here so a caller that drops the connection never leaves an unhandled rejection.
    status.then(undefined, (err: unknown) => this.log.debug({ err: toError(err).message }, 'connect status not received'));
    return { stream, status };
  }

  /**
   * Asks the server to listen on `dest` and routes its ACCEPTED streams to
   * `onAccepted` until the bind is closed or its session ends.
   * @throws ProxyStatusError when the server refuses, TimeoutError, ClosedError
   */
  async bind(dest: Destination, onAccepted: AcceptHandler, opts: { signal?: AbortSignal } = {}): Promise<ProxyBind> {
    const session = await this.sessionSoon(opts.signal);
    const d = this.dispatcher(session);
    const stream = session.openStream(encodeOpen({ kind: 'bind', dest }));
    stream.on('error', (err: Error) => this.logStreamError(err));
    d.bindStarted();
    let reply: BindReply;
    try {
      reply = await readHead(stream, bindReplyParser, this.statusTimeoutMs, opts.signal);
      if (reply.status !== STATUS_OK) {
        stream.destroy();
        throw new ProxyStatusError('bind', reply.status);
      }
      d.binds.set(reply.id, onAccepted);
    } finally {
      d.bindSettled();
    }
    const id = reply.id;
    const closed = new Promise<void>((resolve) => {
      stream.once('close', () => {
        if (d.binds.get(id) === onAccepted) d.binds.delete(id);
        resolve();
      });
    });
    // Nothing more comes on a BIND stream; reading it lets us see the server end it.
    stream.on('end', () => stream.end());
    stream.resume();
    return {
      id,
      bound: reply.bound,
      session,
      closed,
      close: () => {
        if (d.binds.get(id) === onAccepted) d.binds.delete(id);
        if (session.state === 'closed') stream.destroy();
        else stream.end();
      },
    };
  }

  /** A new UDP association with a fresh flow id. */
  udpAssociation(): UdpAssociation {
    return this.udpFlows.associate();
  }

  private logStreamError(err: Error): void {
    if (isBenignClose(err)) this.log.debug({ err: err.message }, 'proxy stream closed');
    else this.log.debug({ err: err.message, code: (err as { code?: string }).code }, 'proxy stream error');
  }
}
