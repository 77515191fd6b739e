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
 *   UDP flows ──▶ ProxyClient ── flow id ──▶ that UdpAssociation
 * ```
 *
 * It asks its getter for the session on every call, so after SessionClient
 * replaces a lost session new work lands on the new one; with `events` it
 * also installs the dispatcher there at once and tells `onSession` listeners
 * (reverse forwards re-register their binds).
 */
import { abortSocket, relay } from '../core/relay.js';
import { AddressError, classifyHost, decodeDestination, type Destination } from '../core/address.js';
import { AbortedError, ClosedError, ConfigError, PolytunError, ProtocolError, TimeoutError, isBenignClose, toError } from '../core/errors.js';
import { LogLimiter } from '../core/log-limiter.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { decodeOpen, decodeUdp, encodeOpen, encodeUdp, OPEN_ACCEPTED, STATUS_OK, UDP_FLOW_FIRST, UDP_FLOW_LAST } from '../proxy/wire.js';
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, Socket, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Session } from '../session/session.js';
import { ResetCode, type PolyStream } from '../session/stream.js';
import type { SessionClient } from './session-client.js';

/** Something that announces replacement sessions (SessionClient does). */
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

/** The server refused a CONNECT or BIND with a SOCKS5-style status. */
export class ProxyStatusError extends PolytunError {
  /** The status byte the server sent. */
  readonly status: number;
  constructor(what: string, status: number) {
    super('ERR_PROXY_STATUS', `${what} refused by the server (status 0x${status.toString(16).padStart(2, '0')})`);
    this.status = status;
  }
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

/** One UDP association: a flow id on the datagram lane. */
export interface UdpAssociation {
  /** The flow id (unique within this ProxyClient). */
  readonly flow: number;
  /** Sends `data` to `dest` through the server. False when the datagram was dropped (no path, queue full, too large, closed). */
  send(dest: Destination, data: Buffer): boolean;
  /**
   * Sets the receiver of replies. `data` is a view into the received record:
   * copy it if it must outlive the callback.
   */
  onMessage(handler: (src: Destination, data: Buffer) => void): void;
  /** Stops receiving and frees the flow id. Idempotent. */
  close(): void;
}

/** UDP relayed by one ProxyClient (SOCKS5 UDP ASSOCIATE and -L …/udp), since it was made. */
export interface UdpTraffic {
  /** Datagrams handed to the session towards the server, and their payload bytes. */
  udpDatagramsSent: number;
  udpBytesSent: number;
  /** Datagrams received from the server for a live association, and their payload bytes. */
  udpDatagramsReceived: number;
  udpBytesReceived: number;
}

/** Most ACCEPTED streams held while a BIND reply is still being read. */
const MAX_HELD = 64;

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
  private readonly flows = new Map<number, UdpAssociationImpl>();
  private readonly listeners = new Set<(s: Session) => void>();
  /** Calls waiting for the first session (see sessionSoon). */
  private readonly firstWaiters = new Set<() => void>();
  private nextFlow = 1;
  private readonly udp: UdpTraffic = { udpDatagramsSent: 0, udpBytesSent: 0, udpDatagramsReceived: 0, udpBytesReceived: 0 };

  constructor(private readonly init: ProxyClientInit) {
    this.getSession = init.session;
    this.log = init.logger ?? nullLogger;
    this.statusTimeoutMs = init.statusTimeoutMs ?? 30_000;
    init.events?.on('session', this.onNewSession);
  }

  /** A ProxyClient that follows `client`'s sessions. */
  static forSessionClient(client: SessionClient, init: Omit<ProxyClientInit, 'session' | 'events'> = {}): ProxyClient {
    return new ProxyClient({ ...init, session: () => client.session, events: client });
  }

  /** UDP counters (a copy): the session's byte counters count stream data only. */
  get udpTraffic(): UdpTraffic {
    return { ...this.udp };
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
      d = new SessionDispatch(s, this.log, (flow, payload) => this.onDatagram(flow, payload));
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
    let flow = this.nextFlow;
    // Only ids of the proxy's datagram lane (the others belong to other applications).
    while (this.flows.has(flow) || flow < UDP_FLOW_FIRST || flow > UDP_FLOW_LAST) flow = flow >= UDP_FLOW_LAST ? UDP_FLOW_FIRST : (flow + 1) >>> 0;
    this.nextFlow = (flow + 1) >>> 0;
    const a = new UdpAssociationImpl(this, flow);
    this.flows.set(flow, a);
    return a;
  }

  /** @internal */
  sendUdp(flow: number, dest: Destination, data: Buffer): boolean {
    let s: Session;
    try {
      s = this.current();
    } catch (err) {
      this.log.debug({ err: toError(err).message }, 'udp datagram dropped: no session');
      return false;
    }
    if (!s.sendDatagram(flow, encodeUdp(dest, data))) return false;
    this.udp.udpDatagramsSent++;
    this.udp.udpBytesSent += data.length;
    return true;
  }

  /** @internal */
  releaseFlow(a: UdpAssociationImpl): void {
    if (this.flows.get(a.flow) === a) this.flows.delete(a.flow);
  }

  private onDatagram(flow: number, payload: Buffer): void {
    const a = this.flows.get(flow);
    if (!a) return; // an association closed while replies were in flight
    let msg: { addr: Destination; data: Buffer };
    try {
      msg = decodeUdp(payload);
    } catch (err) {
      this.log.debug({ flow, err: toError(err).message }, 'malformed udp datagram from server dropped');
      return;
    }
    this.udp.udpDatagramsReceived++;
    this.udp.udpBytesReceived += msg.data.length;
    a.deliver(msg.addr, msg.data);
  }

  private logStreamError(err: Error): void {
    if (isBenignClose(err)) this.log.debug({ err: err.message }, 'proxy stream closed');
    else this.log.debug({ err: err.message, code: (err as { code?: string }).code }, 'proxy stream error');
  }
}

class UdpAssociationImpl implements UdpAssociation {
  private handler: ((src: Destination, data: Buffer) => void) | undefined;
  private closed = false;

  constructor(private readonly owner: ProxyClient, readonly flow: number) {}

  send(dest: Destination, data: Buffer): boolean {
    if (this.closed) return false;
    return this.owner.sendUdp(this.flow, dest, data);
  }

  onMessage(handler: (src: Destination, data: Buffer) => void): void {
    this.handler = handler;
  }

  deliver(src: Destination, data: Buffer): void {
    if (!this.closed) this.handler?.(src, data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = undefined;
    this.owner.releaseFlow(this);
  }
}

// ───────────────────────── reading the reply head ─────────────────────────

/** Parses a reply head: `undefined` = need more bytes, else the value and bytes used. */
type HeadParser<T> = (buf: Buffer) => { value: T; used: number } | undefined;

const statusParser: HeadParser<number> = (buf) => (buf.length >= 1 ? { value: buf[0] as number, used: 1 } : undefined);

interface BindReply {
  status: number;
  id: number;
  bound: Destination;
}

/*
 * BIND reply:
 * +--------+-------------+------------------------------+
 * | STATUS | BIND ID u32 | bound address (address codec)|   (id and address only when STATUS = 0)
 * +--------+-------------+------------------------------+
 */
const unspecified: Destination = { host: '0.0.0.0', port: 0, kind: 'ipv4' };
const bindReplyParser: HeadParser<BindReply> = (buf) => {
  if (buf.length < 1) return undefined;
  const status = buf[0] as number;
  if (status !== STATUS_OK) return { value: { status, id: 0, bound: unspecified }, used: 1 };
  if (buf.length < 6) return undefined;
  try {
    const { dest, bytesRead } = decodeDestination(buf, 5);
    return { value: { status, id: buf.readUInt32BE(1), bound: dest }, used: 5 + bytesRead };
  } catch (err) {
    if (err instanceof AddressError && err.reason === 'truncated') return undefined;
    throw err;
  }
};

/** Longest reply head we buffer (status + id + a 255-byte domain address). */
const MAX_HEAD = 1 + 4 + 1 + 1 + 255 + 2;

/**
 * Reads a reply head off the front of `stream` and puts back whatever
 * follows it, so the stream's next reader sees only the payload. Destroys
 * the stream on timeout, abort, or a malformed head.
 */
function readHead<T>(stream: PolyStream, parse: HeadParser<T>, timeoutMs: number, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let acc: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      cleanup();
      stream.destroy(err instanceof TimeoutError || err instanceof AbortedError ? undefined : err);
      reject(err);
    };
    const onReadable = (): void => {
      for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) {
        acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk]);
        let got: { value: T; used: number } | undefined;
        try {
          got = parse(acc);
        } catch (err) {
          fail(new ProtocolError('malformed reply from the server', { cause: err }));
          return;
        }
        if (got) {
          cleanup();
          if (got.used < acc.length) stream.unshift(acc.subarray(got.used));
          resolve(got.value);
          return;
        }
        if (acc.length > MAX_HEAD) {
          fail(new ProtocolError('reply head from the server is too long'));
          return;
        }
      }
    };
    const onEnd = (): void => fail(new ProtocolError('server ended the stream before its status'));
    const onClose = (): void => {
      cleanup();
      reject(new ClosedError('proxy stream (before its status)', { cause: stream.errored ?? undefined }));
    };
    const onAbort = (): void => fail(new AbortedError(signal?.reason));
    const timer = setTimeout(() => fail(new TimeoutError('waiting for the server status')), timeoutMs);
    timer.unref();
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ───────────────────────────── relaying ─────────────────────────────

/** Options of {@link splice}. */
export interface SpliceInit {
  /** Pipe only a → b until `startBtoA()` (a 0-RTT connect whose status is pending). @default false */
  deferBtoA?: boolean;
  /** Called once: when both directions finished (no error), or on the first error or early close. */
  onDone?: (err: Error | undefined) => void;
}

/** Control over a running {@link splice}. */
export interface Splice {
  /** Starts the b → a direction (after `deferBtoA`). Idempotent. */
  startBtoA(): void;
  /** Tears both sides down now. Idempotent. */
  destroy(err?: Error): void;
}

/**
 * Relays bytes both ways between two duplexes with backpressure (see
 * core/relay.ts) and passes half-closes through: 'end' on one side ends the other's writable.
 * Once both directions have finished, or either side errors or closes
 * early, both are destroyed and `onDone` runs once. On an error or an early
 * close, a socket side is reset (RST), so its application sees the transfer
 * fail instead of a clean end after what its kernel still buffered. Sockets
 * given here must allow half-open connections, or their automatic end()
 * races the relay.
 */
export function splice(a: Duplex, b: Duplex, init: SpliceInit = {}): Splice {
  let done = false;
  let finished = 0;
  let bToA = false;
  const stops: (() => void)[] = [];
  const settle = (err?: Error): void => {
    if (done) return;
    done = true;
    for (const stop of stops) stop();
    for (const s of [a, b]) {
      if (err !== undefined && s instanceof Socket) abortSocket(s);
      else s.destroy();
    }
    init.onDone?.(err);
  };
  const onFinish = (): void => {
    if (++finished === 2) settle();
  };
  const watch = (s: Duplex): void => {
    s.on('error', settle);
    s.once('finish', onFinish);
    s.once('close', () => {
      // A clean close of one side leaves the other to finish flushing.
      if (!(s.writableFinished && s.readableEnded)) settle(s.errored ?? new ClosedError('relayed connection (closed early)'));
    });
  };
  watch(a);
  watch(b);
  stops.push(relay(a, b));
  const startBtoA = (): void => {
    if (bToA || done) return;
    bToA = true;
    stops.push(relay(b, a));
  };
  if (!init.deferBtoA) startBtoA();
  return { startBtoA, destroy: settle };
}

// ───────────────────────────── local listeners ─────────────────────────────

/** A local listen address. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Username and password a front requires. */
export interface Credentials {
  username: string;
  password: string;
}

/** Compares credentials in constant time (digests first, so lengths do not leak either). */
export function checkCredentials(want: Credentials, got: Credentials): boolean {
  const h = (c: Credentials): Buffer => createHash('sha256').update(c.username).update('\0').update(c.password).digest();
  return timingSafeEqual(h(want), h(got));
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost') return true;
  const kind = classifyHost(h);
  if (kind === 'ipv4') return h.startsWith('127.');
  if (kind === 'ipv6') return h === '::1' || /^::ffff:127\./i.test(h) || /^0*:(0*:){6}0*1$/.test(h);
  return false;
}

/**
 * @param where what the error names (the flag and its value, e.g. `--socks 0.0.0.0:1080`)
 * @param howToAuth how the user adds credentials, e.g. `add --socks-auth USER:PASS`
 * @throws ConfigError when a proxy front would listen off loopback without credentials.
 */
export function requireAuthOffLoopback(front: string, host: string, auth: Credentials | undefined, where = `${front}.listen`, howToAuth = 'set a username and password'): void {
  if (auth === undefined && !isLoopbackHost(host)) {
    throw new ConfigError(where, `refusing to listen on ${host} without authentication (anyone who reaches it could use the tunnel); ${howToAuth}, or listen on 127.0.0.1`);
  }
}

/**
 * Sends a last reply and half-closes, discarding whatever the client still
 * sends; destroys the socket if the client has not closed within `lingerMs`.
 * (Destroying at once could turn unread input into an RST that loses the reply.)
 */
export function endWithReply(sock: Socket, reply: Buffer | null, lingerMs = 5000): void {
  if (reply) sock.end(reply);
  else sock.end();
  sock.resume();
  const t = setTimeout(() => sock.destroy(), lingerMs);
  t.unref();
  sock.once('close', () => clearTimeout(t));
}

/** Options of {@link TcpFront}. */
export interface TcpFrontInit {
  /** For log lines. */
  name: string;
  listen: ListenAddress;
  /** Connections at once; more are closed on accept. */
  maxConnections: number;
  logger: Logger;
  /** Each accepted socket (half-open allowed, no-delay set, 'error' logged). */
  onConnection: (sock: Socket) => void;
  /**
   * A connection over `maxConnections`: told why in its own protocol (a
   * SOCKS5 `general failure`, an HTTP 503) instead of a bare close. At most
   * `maxConnections / 8` (at least 16) such connections are held at once;
   * beyond that they are closed on accept. Without it they are closed.
   */
  onOverLimit?: (sock: Socket) => void;
}

/** A TCP listener that tracks its sockets, caps them, and closes them all on close(). */
export class TcpFront {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Connections over the limit being refused in their protocol. */
  private readonly refusing = new Set<Socket>();
  private closing: Promise<void> | undefined;
  /** A flood over the limit is one line and a count, not a line per connection. */
  private readonly limitLog = new LogLimiter();

  constructor(private readonly init: TcpFrontInit) {}

  /** Listens. Rejects with the listen error (EADDRINUSE …). */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.init.listen.port, this.init.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.init.logger.error({ err: err.message }, `${this.init.name} listener error`));
    this.init.logger.info({ listen: this.address }, `${this.init.name} listening`);
  }

  /** The bound address (after start). */
  get address(): ListenAddress {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new ClosedError(`${this.init.name} listener (not started)`);
    return { host: a.address, port: a.port };
  }

  /** Open connections now. */
  get connections(): number {
    return this.sockets.size;
  }

  private accept(sock: Socket): void {
    if (this.sockets.size >= this.init.maxConnections) {
      const answer = this.init.onOverLimit !== undefined && this.refusing.size < Math.max(16, this.init.maxConnections >> 3);
      this.limitLog.log(
        this.init.logger, 'warn', 'limit', { limit: this.init.maxConnections },
        `${this.init.name}: ${this.init.maxConnections} connections open, the most it serves at once; refusing new ones until some close`,
      );
      if (!answer) {
        sock.destroy();
        return;
      }
      this.track(sock, this.refusing);
      this.init.onOverLimit?.(sock);
      return;
    }
    this.track(sock, this.sockets);
    this.init.onConnection(sock);
  }

  private track(sock: Socket, set: Set<Socket>): void {
    set.add(sock);
    sock.once('close', () => set.delete(sock));
    sock.setNoDelay(true);
    sock.on('error', (err: Error) => {
      if (!isBenignClose(err)) this.init.logger.debug({ err: err.message }, `${this.init.name} client socket error`);
    });
  }

  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    this.closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
      for (const s of this.refusing) s.destroy();
      this.limitLog.flush();
    });
    return this.closing;
  }
}
