/**
 * Accepts carrier connections, runs the handshake, and binds each to a new
 * session or to the detached session it resumes. Holds the session table.
 * Unauthenticated work is bounded: past `maxPendingHandshakes` new
 * connections are dropped at once instead of queued.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { RejectCode, RejectedError, isBenignClose, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { LIMIT_LOG_INTERVAL_MS, LogLimiter } from '../core/log-limiter.js';
import { nullMetrics, type Metrics } from '../core/metrics.js';
import type { StreamConn } from '../carriers/types.js';
import { ReplayGuard, SilentDropError, serverHandshake, type Admission } from '../secure/handshake.js';
import type { ClientHello } from '../secure/hello.js';
import { PacketResponder, type PacketResponderStats } from '../secure/packet-responder.js';
import type { RecordChannel } from '../secure/record-channel.js';
import { capCc, decodeTransportParams, type CcChoice } from '../arq/cc-choice.js';
import { realClock, type Clock } from '../core/clock.js';
import { DEFAULT_UDP_DATAGRAM, udpTransport } from '../paths/packet-source.js';
import type { ChannelInit } from '../secure/channel.js';
import type { KeyPair } from '../secure/keys.js';
import { CloseCode, initialStreamWindow, Session, type SessionOptions } from '../session/session.js';
import { SessionTable } from '../paths/session-table.js';
import { MAX_PENDING_HANDSHAKES, SESSION_WINDOW } from '../core/limits.js';
import { addEnded, newEndedTotals, registerServerMetrics } from './server-metrics.js';

export type { SessionOptions };

/** The user directory the server consults for each authenticated client key. */
export interface UserLookup<U> {
  /** Returns the user for a client static public key, or undefined if unknown. */
  byKey(clientKey: Buffer, meta: Readonly<Record<string, string>>): U | undefined;
  /** A reject code when a known user may not connect now (disabled, over quota). */
  refuse?(user: U): number | undefined;
  /** The user's name for log lines (session opened/closed). */
  nameOf?(user: U): string;
  /** The user's own cap on a udp client's fixed rate, bytes per second (below the listener's); undefined or null: none. */
  udpMaxRateOf?(user: U): number | null | undefined;
}

export interface SessionServerInit<U> extends ChannelInit {
  staticKeyPair: KeyPair;
  users: UserLookup<U>;
  logger?: Logger;
  session?: SessionOptions;
  /** @default 10000 */
  handshakeTimeoutMs?: number;
  /** Handshakes in progress at once; more are dropped. @default 256 */
  maxPendingHandshakes?: number;
  /** @default 10000 */
  maxSessions?: number;
  /** Accepted client clock skew. @default 300000 */
  maxSkewMs?: number;
  /** Where to register the server's metrics (read from `counters`, `drops` and the table when collected; see server-metrics.ts). @default nullMetrics */
  metrics?: Metrics;
}

/** Options of {@link SessionServer.packetResponder}. */
export interface PacketServeOptions {
  /** Carrier name in channels' info and logs. @default 'udp' */
  carrier?: string;
  /** Congestion controller of our sending side on these paths when the client asks for none. @default bbr */
  cc?: CcChoice;
  /** Cap on the fixed rate a client may ask us to send at (bytes per second). @default none */
  maxFixedRate?: number;
  /** Largest datagram sent, bytes. @default 1452 (a 1500-byte path) */
  maxDatagramSize?: number;
  /** @default realClock */
  clock?: Clock;
}

export interface SessionEntry<U> {
  session: Session;
  user: U;
  clientKey: Buffer;
  remote: string;
  startedAt: number;
}

export class SessionServer<U> extends EventEmitter {
  private readonly log: Logger;
  private readonly replay: ReplayGuard;
  private pending = 0;
  private readonly overloadLog = new LogLimiter({ intervalMs: LIMIT_LOG_INTERVAL_MS, maxKeys: 1 });
  private draining = false;
  /** Live sessions by id, where resumes and path joins are looked up. */
  readonly sessions = new SessionTable<SessionEntry<U>>();
  /** Counters for status and metrics. */
  readonly counters = { accepted: 0, resumed: 0, rejected: 0, dropped: 0, overload: 0 };
  /** Silent handshake drops (counted in `dropped`) by reason, as handshake.ts names them. */
  readonly drops: Record<string, number> = {};
  readonly #responders = new Set<PacketResponder>();
  #udpMetrics = false;
  /** The final stats of closed sessions, for the metrics' sums. */
  private readonly ended = newEndedTotals();

  constructor(private readonly init: SessionServerInit<U>) {
    super();
    this.log = init.logger ?? nullLogger;
    this.replay = new ReplayGuard(2 * (init.maxSkewMs ?? 300_000));
    registerServerMetrics(init.metrics ?? nullMetrics, {
      counters: this.counters,
      drops: this.drops,
      ended: this.ended,
      sessions: () => this.sessions.values(),
      size: () => this.sessions.size,
      pending: () => this.pending,
    });
  }

  /** Feeds one carrier connection to the server. */
  handle(conn: StreamConn, carrier = 'tcp'): void {
    if (this.pending >= (this.init.maxPendingHandshakes ?? MAX_PENDING_HANDSHAKES)) {
      this.counters.overload++;
      conn.stream.destroy();
      this.overloadLog.log(this.log, 'warn', 'overload', { max: this.init.maxPendingHandshakes ?? MAX_PENDING_HANDSHAKES, carrier }, 'too many handshakes in progress: closing new connections (a flood, or raise limits.maxPendingHandshakes)');
      return;
    }
    this.pending++;
    conn.stream.on('error', (err: Error) => this.log.debug({ remote: conn.remote, err: err.message }, 'carrier error'));
    let user: U | undefined;
    const admit = (clientKey: Buffer, hello: ClientHello): Admission => {
      const r = this.#admit(clientKey, hello, conn.meta);
      user = r.user;
      return r.admission;
    };
    serverHandshake(
      { stream: conn.stream, remote: conn.remote, local: conn.local, carrier },
      {
        ...this.init,
        admit,
        replay: this.replay,
        timeoutMs: this.init.handshakeTimeoutMs,
        maxSkewMs: this.init.maxSkewMs,
        onDrop: (reason, detail) => {
          this.counters.dropped++;
          this.drops[reason] = (this.drops[reason] ?? 0) + 1;
          // A known client with a bad clock is worth a warning; probes are not.
          if (reason === 'clock-skew') this.log.warn({ remote: conn.remote, ...detail }, 'handshake refused: client clock is off; fix its NTP or raise maxSkewMs');
          else this.log.debug({ remote: conn.remote, reason }, 'handshake dropped silently');
        },
      },
    ).then(
      ({ channel, clientKey, hello, admission }) => {
        this.pending--;
        conn.authenticated?.(); // the listener stops counting it as unauthenticated
        this.#adopt(channel, clientKey, hello, admission, conn.remote, user as U);
      },
      (err: unknown) => {
        this.pending--;
        if (err instanceof SilentDropError) return;
        if (err instanceof RejectedError) {
          this.counters.rejected++;
          this.log.info({ remote: conn.remote, reject: err.message }, 'client rejected');
          return;
        }
        this.log.debug({ remote: conn.remote, err: toError(err).message }, 'handshake failed');
      },
    );
  }

  /**
   * A responder for a packet carrier's associations (`responder.accept(conn)`
   * for each): clients it admits get sessions as handle()'s do, with the
   * reliable transport (arq) on their packet channel. Close it with the
   * listener.
   */
  packetResponder(opts: PacketServeOptions = {}): PacketResponder {
    this.#registerUdpMetrics();
    const responder = new PacketResponder({
      clock: opts.clock ?? realClock,
      staticKeyPair: this.init.staticKeyPair,
      replay: this.replay,
      carrier: opts.carrier ?? 'udp',
      ...(this.init.maxSkewMs !== undefined ? { maxSkewMs: this.init.maxSkewMs } : {}),
      ...(this.init.cipher !== undefined ? { cipher: this.init.cipher } : {}),
      ...(this.init.aesAccelerated !== undefined ? { aesAccelerated: this.init.aesAccelerated } : {}),
      maxDatagramSize: opts.maxDatagramSize ?? DEFAULT_UDP_DATAGRAM,
      admit: (clientKey, hello) => {
        const { admission } = this.#admit(clientKey, hello, {});
        if (!admission.accept) this.counters.rejected++;
        return admission;
      },
    });
    responder.onSession((s) => {
      // The responder admits and hands the session over in one turn (admit is synchronous): the same lookup finds the same user.
      const user = this.init.users.byKey(s.clientKey, {});
      if (user === undefined) return s.channel.abort();
      // The client says how it wants our side to send (its --cc, its --udp-mode); a fixed rate is capped by
      // the listener's udp.maxRate and the user's own udpMaxRate, whichever is lower.
      const params = decodeTransportParams(s.transportParams);
      const userCap = this.init.users.udpMaxRateOf?.(user) ?? undefined;
      const cap = userCap === undefined ? opts.maxFixedRate : Math.min(userCap, opts.maxFixedRate ?? Infinity);
      const cc = capCc(params.cc ?? opts.cc ?? { kind: 'bbr' }, cap);
      const channel = udpTransport(s.channel, { cc, peerCc: params.cc ?? { kind: 'bbr' }, mode: params.mode, clock: opts.clock ?? realClock });
      this.#adopt(channel, s.clientKey, s.hello, s.admission, s.channel.port.remote, user);
    });
    this.#responders.add(responder);
    return responder;
  }

  /** The packet responders' counters, summed over every udp listener, once per server. */
  #registerUdpMetrics(): void {
    if (this.#udpMetrics) return;
    this.#udpMetrics = true;
    const m = this.init.metrics ?? nullMetrics;
    const sum = (k: keyof PacketResponderStats): number => {
      let n = 0;
      for (const r of this.#responders) n += r.stats[k];
      return n;
    };
    m.registerCounterGroup('polytun_udp_datagrams_dropped_total', {
      help: 'Datagrams a udp listener dropped without answering, by reason: garbage and probes (unauthenticated), truncated, oversized, forged or replayed transport datagrams, failed handshakes, clock skew, replayed initiations',
      label: 'reason',
      collect: () => ({
        unauthenticated: sum('unauthenticated'), truncated: sum('truncated'), oversized: sum('oversized'), transport: sum('transportDropped'),
        handshake: sum('handshakeFailed'), skew: sum('skewed'), replayed: sum('replayedInitiations'), busy: sum('busy'),
      }),
    });
    m.registerCounterGroup('polytun_udp_handshakes_total', {
      help: 'udp handshake outcomes: sessions admitted, clients rejected, cookie replies sent under load, clients followed to a new address (roaming)',
      label: 'outcome',
      collect: () => ({ session: sum('sessions'), rejected: sum('rejected'), cookie: sum('cookieReplies'), roamed: sum('roamed') }),
    });
  }

  /** Decides on an authenticated client key: its user, and resume/new session or a reject. */
  #admit(clientKey: Buffer, hello: ClientHello, meta: Readonly<Record<string, string>>): { admission: Admission; user: U | undefined } {
    const user = this.init.users.byKey(clientKey, meta);
    if (user === undefined) return { admission: { accept: false, reject: RejectCode.unauthorized }, user };
    const refused = this.init.users.refuse?.(user);
    if (refused !== undefined) return { admission: { accept: false, reject: refused }, user };
    if (this.draining) return { admission: { accept: false, reject: RejectCode.draining }, user };
    const windows = { streamWindow: initialStreamWindow(this.init.session), sessionWindow: this.init.session?.sessionWindow ?? SESSION_WINDOW };
    if (hello.resumeId) {
      const e = this.sessions.resumable(hello.resumeId, clientKey);
      if (!e) return { admission: { accept: false, reject: RejectCode.sessionUnknown }, user };
      return { admission: { accept: true, sessionId: e.session.id, recvSeq: e.session.receivedSeq, resumed: true, ...windows }, user };
    }
    if (this.sessions.size >= (this.init.maxSessions ?? 10_000)) return { admission: { accept: false, reject: RejectCode.busy }, user };
    return { admission: { accept: true, sessionId: randomBytes(16), recvSeq: 0, resumed: false, ...windows }, user };
  }

  /** An authenticated, admitted channel: resumes or joins its session, or opens a new one. */
  #adopt(channel: RecordChannel, clientKey: Buffer, hello: ClientHello, admission: Extract<Admission, { accept: true }>, remote: string, u: U): void {
    if (admission.resumed) {
      const e = this.sessions.claim(admission.sessionId, channel, remote);
      if (!e) return;
      this.counters.resumed++;
      this.log.info({ session: admission.sessionId.toString('hex').slice(0, 8), user: this.init.users.nameOf?.(e.user), remote, join: hello.join === true, carrier: channel.info.carrier }, hello.join ? 'path joined' : 'session resumed');
      this.sessions.attachPath(e, channel, hello, remote);
      return;
    }
    this.counters.accepted++;
    const session = new Session({
      ...this.init.session,
      role: 'server',
      id: admission.sessionId,
      logger: this.log,
      peerStreamWindow: hello.streamWindow,
      peerSessionWindow: hello.sessionWindow,
    });
    const entry: SessionEntry<U> = { session, user: u, clientKey, remote, startedAt: Date.now() };
    const key = this.sessions.open(entry);
    // Who, in every open/close line: "which user was on at 3 a.m." is the usual question.
    const name = this.init.users.nameOf?.(u);
    session.once('closed', (err: Error) => {
      addEnded(this.ended, session);
      const st = session.stats;
      const f = { session: key.slice(0, 8), user: name, reason: err.message, seconds: Math.round((Date.now() - entry.startedAt) / 1000), bytesSent: st.bytesSent, bytesReceived: st.bytesReceived };
      this.log.info(f, isBenignClose(err) || err.name === 'SessionClosedError' ? 'session closed' : 'session ended');
      this.emit('sessionClosed', entry, err);
    });
    this.log.info({ session: key.slice(0, 8), user: name, remote, carrier: channel.info.carrier }, 'session opened');
    this.emit('session', entry);
    session.attach(channel, 0, { label: remote });
  }

  /** Stops admitting new sessions (clients get a typed "draining" reject) and asks live ones to drain. */
  async drain(timeoutMs = 30_000): Promise<void> {
    this.draining = true;
    await Promise.all([...this.sessions.values()].map((e) => e.session.drain(timeoutMs)));
  }

  /** Closes every session now. */
  close(): void {
    this.draining = true;
    for (const e of this.sessions.values()) e.session.close(CloseCode.shutdown, 'server shutting down');
  }
}
