/**
 * The multi-user gateway, server side: the user store (SQLite in the data
 * dir, or PostgreSQL shared by a fleet) behind an in-memory cache, as the
 * SessionServer's user directory and as the WSS route; per-user proxying
 * (fixed destination, policy overrides), traffic accounting, and quota,
 * expiry and kick enforcement on live sessions.
 *
 *   WSS upgrade ─route: cache.byPath(path)─▶ meta.userId ─┐            (unknown path → decoy)
 *     on wsTokenPath: cache.byBearer(Authorization)─▶ ────┤            (missing/wrong token → decoy)
 *   tcp/tls/ws(s) conn ─▶ handshake ─byKey(key, meta)──────┴─▶ same user? known? refuse()?
 *                                                              │ accept
 *                              'session' ─▶ attachProxy(user's egress, dst, meter.counters)
 *   store change ─▶ cache ─▶ onUserChange ─▶ quota crossed? close CloseCode.quota
 *   meters' flush ─▶ history.record('user', id, …) ─▶ 1-minute and 1-hour points in the store
 *   every second ─▶ expired users' sessions ─▶ close CloseCode.expired
 *
 * Live changes follow the store: a new user connects at once, a disabled or
 * deleted one cannot open new sessions, but its live sessions go on (mtt
 * semantics) unless an admin kicks them. Quota and expiry do end them.
 */
import { parseHostPort } from '../core/address.js';
import { RejectCode, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { LogLimiter } from '../core/log-limiter.js';
import type { Metrics } from '../core/metrics.js';
import { requestPath, type RouteDecision } from '../carriers/ws-server.js';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { CloseCode } from '../session/session.js';
import { openStore, TrafficHistory, UserCache, userRefusal, type User, type UserStore } from '../store/index.js';
import type { DataDir } from './datadir.js';
import { EgressDialer } from './egress.js';
import { importJsonUsers } from './import-users.js';
import { MTT_IDLE_MS, isMttUser, mttSubprotocol, serveMtt, type MttSubprotocol } from './mtt-passthrough.js';
import { DestinationPolicy } from './policy.js';
import { attachProxy, type ProxyServerInit, type ReverseInit } from './proxy-server.js';
import type { SessionEntry, SessionServer, UserLookup } from './session-server.js';
import { UserMeters, type UserMeter } from './user-meter.js';

export { importJsonUsers } from './import-users.js';

/** Options of {@link Gateway.open}. */
export interface GatewayInit {
  /** User store URL (see openStore): '' = SQLite `users.db` in the data dir, `postgres://…` for a fleet. */
  readonly storeUrl: string;
  /** The opened data dir; its users.json is imported into the store once. */
  readonly dataDir: DataDir;
  /** Server-wide destination policy; a user's own entries are added to these. */
  readonly policy: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  /** Reverse forwards for users without a fixed destination. @default off */
  readonly reverse?: ReverseInit;
  /** Traffic counters go to the store this often, ms. @default 10000 */
  readonly trafficFlushMs?: number;
  /** Live sessions of expired users are looked for this often, ms. @default 1000 */
  readonly expiryCheckMs?: number;
  /**
   * The shared ws/wss URL path on which a token user is selected by the
   * bearer value its client sends in the upgrade request (see
   * `wsBearerFromToken`); null: only per-user paths select. @default '/'
   */
  readonly wsTokenPath?: string | null;
  /** mtt compatibility mode: a connection without a byte either way for this long is closed, ms (mtt's -timeout); 0 = never. @default 60000 */
  readonly mttIdleMs?: number;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** Clock. @default Date.now */
  readonly now?: () => number;
  /** Where to register the per-user traffic and the proxy's counters (see user-meter.ts). @default nullMetrics */
  readonly metrics?: Metrics;
  /** Keep per-user traffic history in the store (1-minute points for 7 days, 1-hour for 90). @default true */
  readonly history?: boolean;
  /** This server's name among the servers sharing one PostgreSQL (its history rows are its own). @default os.hostname() */
  readonly historyNode?: string;
}

/** One live session as the management APIs show it (admin's SessionInfo). Plain data: safe to serialize. */
export interface GatewaySession {
  /** Session id, lowercase hex (the SessionServer's map key). */
  readonly id: string;
  /** Store id of the session's user; null when the user is not a store user. */
  readonly userId: string | null;
  /** Name of the user at the time the session opened; null when unknown. */
  readonly userName: string | null;
  /** Remote address of the newest path (`ip:port`). */
  readonly remote: string;
  /** When the session opened, ms since the epoch. */
  readonly startedAt: number;
  /** Session state ('open', 'detached', 'closing', …). */
  readonly state: string;
  /** Open streams. */
  readonly streams: number;
  /** Live paths (carrier connections) of the session. */
  readonly paths: number;
  /** Smoothed round-trip time; null before the first measurement. */
  readonly rttMs: number | null;
  /** Bytes the server sent to the client on this session. */
  readonly bytesSent: number;
  /** Bytes the server received from the client on this session. */
  readonly bytesReceived: number;
}

/** The credentials of `Authorization: Bearer <credentials>` (scheme case-insensitive, RFC 6750); undefined otherwise. */
function bearerValue(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 1024) return undefined;
  const m = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header);
  return m?.[1];
}

/** Reject code for each reason a known user is refused. */
const REFUSAL_CODE = { disabled: RejectCode.disabled, expired: RejectCode.expired, quota: RejectCode.quotaExceeded } as const;
const QUOTA_REASON = 'traffic quota exceeded';
const EXPIRED_REASON = 'account expired';

/** The gateway. Create with {@link Gateway.open}; `close()` flushes traffic and closes the store. */
export class Gateway {
  /** The user store; the management APIs write through it, the gateway follows. */
  readonly store: UserStore;
  /** In-memory view of the users. */
  readonly cache: UserCache;
  /** Names of the users this start imported from users.json (the default user on a first start). */
  readonly imported: readonly string[];
  /** Per-user traffic over time (fed by the meters' flushes); undefined when off or the store keeps none. */
  readonly history: TrafficHistory | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly meters: UserMeters;
  private readonly byUser = new Map<string, Set<SessionEntry<User>>>();
  private readonly egress: EgressDialer;
  /** The server-wide destination policy (users without overrides use it). */
  readonly policy: DestinationPolicy;
  private readonly perUser = new Map<string, { updatedAt: number; proxy: Pick<ProxyServerInit, 'egress' | 'policy' | 'reverse' | 'fixedDestination'> }>();
  private readonly expiryTimer: NodeJS.Timeout;
  private readonly tokenPath: string | null;
  private server: SessionServer<User> | undefined;
  private closed = false;
  /** Rate limit of the "unknown mtt path" warning: when the last one was logged, and how many since went unlogged. */
  /** Refused mtt upgrades: one line per 10 s, then a count. */
  private readonly limitLog = new LogLimiter({ intervalMs: 10_000, maxKeys: 1 });
  /** Live mtt-mode connections (not sessions: they have no polytun session). */
  private mttLive = 0;

  private constructor(
    private readonly init: GatewayInit,
    store: UserStore,
    cache: UserCache,
    imported: readonly string[],
  ) {
    this.store = store;
    this.cache = cache;
    this.imported = imported;
    this.log = init.logger ?? nullLogger;
    this.now = init.now ?? Date.now;
    this.tokenPath = init.wsTokenPath === undefined ? '/' : init.wsTokenPath;
    this.policy = new DestinationPolicy({ allow: init.policy.allow, deny: init.policy.deny, logger: this.log });
    this.egress = new EgressDialer({ policy: this.policy, logger: this.log });
    this.history =
      init.history === false || store.history === undefined
        ? undefined
        : new TrafficHistory({ store: store.history, logger: this.log, now: this.now, ...(init.historyNode === undefined ? {} : { node: init.historyNode }), ...(init.metrics === undefined ? {} : { metrics: init.metrics }) });
    this.meters = new UserMeters({
      store,
      logger: this.log,
      onBytes: (m) => this.checkQuota(m),
      now: this.now,
      ...(init.trafficFlushMs === undefined ? {} : { flushMs: init.trafficFlushMs }),
      ...(init.metrics === undefined ? {} : { metrics: init.metrics }),
      ...(this.history === undefined ? {} : { history: this.history }),
    });
    cache.onUserChange((id, user) => this.userChanged(id, user));
    this.expiryTimer = setInterval(() => this.closeExpired(), init.expiryCheckMs ?? 1000);
    this.expiryTimer.unref();
  }

  /** Opens the store, imports users.json once, loads the cache. */
  static async open(init: GatewayInit): Promise<Gateway> {
    const log = init.logger ?? nullLogger;
    const store = await openStore(init.storeUrl, { dataDir: init.dataDir.dir, logger: log });
    try {
      const imported = await importJsonUsers(store, init.dataDir, log);
      const cache = await UserCache.open({ store, logger: log });
      return new Gateway(init, store, cache, imported);
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /**
   * The SessionServer's user directory. A connection routed by a WSS path
   * carries that user's id in its meta: the handshake key must then belong
   * to the same user, so one user's path cannot carry another user's key.
   */
  readonly lookup: UserLookup<User> = {
    byKey: (clientKey, meta) => {
      const user = this.cache.byKey(clientKey);
      if (user === undefined) return undefined;
      if (meta.userId !== undefined && meta.userId !== user.id) return undefined;
      return user;
    },
    nameOf: (user) => user.name,
    udpMaxRateOf: (user) => user.udpMaxRate,
    refuse: (user) => {
      const why = userRefusal(user, this.now()) ?? (this.overQuota(user) ? 'quota' : undefined);
      return why === undefined ? undefined : REFUSAL_CODE[why];
    },
  };

  /**
   * The WsServer route: a user's own URL path picks it; on the shared token
   * path, `Authorization: Bearer <value>` picks the token user it belongs
   * to. Anything else (unknown path, missing or wrong bearer) gets the
   * decoy. The header is never logged.
   *
   * Why a bearer header, not a `Sec-WebSocket-Protocol` value: reverse
   * proxies (nginx, Caddy, HAProxy, CDNs) forward Authorization unchanged
   * and leave it out of their default access logs, and it needs no answer;
   * a subprotocol must be echoed in the 101 (copying the secret into the
   * response), or RFC 6455 clients fail the handshake. A browser cannot set
   * it, but a browser has no polytun key either: to anything without a
   * valid value this path is the decoy, as to a browser.
   */
  readonly route = (req: IncomingMessage): RouteDecision => {
    const path = requestPath(req);
    // mtt-client always offers smux_on or smux_off; a polytun client never does.
    const mtt = mttSubprotocol(req);
    if (mtt !== undefined) return this.mttRoute(req, path, mtt);
    if (path === this.tokenPath) {
      const bearer = bearerValue(req.headers.authorization);
      const byToken = bearer === undefined ? undefined : this.cache.byBearer(bearer);
      if (byToken !== undefined) return { accept: true, meta: { userId: byToken.id } };
    }
    const user = this.cache.byPath(path);
    return user === undefined ? { accept: false } : { accept: true, meta: { userId: user.id } };
  };

  /**
   * An upgrade from an mtt-client: only an mtt-mode user's path is
   * accepted, and the socket goes to the passthrough (no polytun
   * handshake: the path is the only secret). Everything else gets the
   * decoy, and a rate-limited warning (a deployed mtt-client with a stale
   * path is worth knowing about; a scanner does not offer smux_*).
   */
  private mttRoute(req: IncomingMessage, path: string, protocol: MttSubprotocol): RouteDecision {
    const user = this.cache.byPath(path);
    if (user === undefined || !isMttUser(user) || userRefusal(user, this.now()) !== undefined || this.overQuota(user)) {
      this.mttMiss(req, path, user === undefined ? 'unknown path' : !isMttUser(user) ? 'user not in mtt mode' : 'user refused (disabled, expired or over quota)');
      return { accept: false };
    }
    const dst = parseHostPort(user.dst as string);
    return {
      accept: true,
      meta: { userId: user.id },
      protocol,
      takeover: (socket: Socket, head: Buffer) => {
        const meter = this.meters.meterFor(user.id);
        meter.refs++;
        this.mttLive++;
        serveMtt(socket, {
          dst,
          protocol,
          head,
          idleMs: this.init.mttIdleMs ?? MTT_IDLE_MS,
          logger: this.log.child({ userId: user.id, mtt: protocol }),
          onClose: ({ up, down }) => {
            this.mttLive--;
            meter.counters.bytesUp += up;
            meter.counters.bytesDown += down;
            meter.refs--;
          },
        });
      },
    };
  }

  private mttMiss(req: IncomingMessage, path: string, why: string): void {
    // A path that failed is not a live secret; cut to keep the line short.
    this.limitLog.log(this.log, 'warn', 'mtt-miss', { path: path.slice(0, 64), why, remote: req.socket.remoteAddress }, 'mtt-client upgrade refused (answered with the decoy)');
  }

  /** Live mtt-mode connections. */
  get mttConnections(): number {
    return this.mttLive;
  }

  /** Serves the proxy on every session `server` opens, with the user's settings and meter. */
  serve(server: SessionServer<User>, base: Omit<ProxyServerInit, 'egress' | 'policy' | 'reverse' | 'counters' | 'fixedDestination'> = {}): void {
    this.server = server;
    server.on('session', (e: SessionEntry<User>) => {
      const user = e.user;
      let proxy: ReturnType<Gateway['proxyFor']>;
      try {
        proxy = this.proxyFor(user);
      } catch (err) {
        // The store checks policy entries' shape, not their syntax: one bad entry must not take the server down.
        this.log.error({ user: user.name, err: toError(err).message }, "the user's destination policy is invalid; closing its session");
        // After the SessionServer attached the path (right after this event), so the reason reaches the client.
        queueMicrotask(() => e.session.close(CloseCode.normal, 'server-side configuration error for this user'));
        return;
      }
      const meter = this.meters.meterFor(user.id);
      meter.refs++;
      let set = this.byUser.get(user.id);
      if (set === undefined) this.byUser.set(user.id, (set = new Set()));
      set.add(e);
      const h = attachProxy(e.session, { ...base, ...proxy, counters: meter.counters, user: user.name, logger: (base.logger ?? this.log).child({ user: user.name }) });
      e.session.once('closed', () => {
        h.close();
        meter.refs--;
        set.delete(e);
        if (set.size === 0 && this.byUser.get(user.id) === set) this.byUser.delete(user.id);
      });
    });
  }

  /** The live sessions. */
  sessions(): GatewaySession[] {
    const out: GatewaySession[] = [];
    for (const [id, e] of this.server?.sessions ?? []) {
      const st = e.session.stats;
      out.push({
        id,
        userId: e.user.id,
        userName: e.user.name,
        remote: e.remote,
        startedAt: e.startedAt,
        state: st.state,
        streams: st.streams,
        paths: e.session.pathCount,
        rttMs: st.rttMs ?? null,
        bytesSent: st.bytesSent,
        bytesReceived: st.bytesReceived,
      });
    }
    return out;
  }

  /** Closes one session (CloseCode.kicked). False when no session has this id. */
  kickSession(id: string, reason: string): boolean {
    const e = this.server?.sessions.get(id);
    if (e === undefined) return false;
    e.session.close(CloseCode.kicked, reason);
    return true;
  }

  /** Closes every live session of `userId` (CloseCode.kicked); returns how many. */
  kickUser(userId: string, reason: string): number {
    return this.closeUser(userId, CloseCode.kicked, reason);
  }

  /** Writes pending traffic counters, then the traffic history, to the store now. */
  async flushTraffic(): Promise<void> {
    await this.meters.flush();
    await this.history?.flush();
  }

  /** Writes pending traffic, stops following the store and closes it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.expiryTimer);
    await this.meters.close();
    await this.history?.close();
    this.cache.close();
    await this.store.close();
  }

  /** Proxy settings for `user`, rebuilt when the user changes. */
  private proxyFor(user: User): Pick<ProxyServerInit, 'egress' | 'policy' | 'reverse' | 'fixedDestination'> {
    const hit = this.perUser.get(user.id);
    if (hit !== undefined && hit.updatedAt === user.updatedAt) return hit.proxy;
    const allow = user.policy.allow ?? [];
    const deny = [...this.init.policy.deny, ...(user.policy.deny ?? [])];
    let proxy: Pick<ProxyServerInit, 'egress' | 'policy' | 'reverse' | 'fixedDestination'>;
    if (user.dst !== null) {
      // An admin-set destination is trusted (it is usually a local backend,
      // which the default ranges refuse); explicit deny entries still apply.
      // Such a user gets nothing else: no UDP, no reverse listeners.
      const trusted = new DestinationPolicy({ allow: ['*'], deny, denyOwnAddresses: false, logger: this.log });
      const d = parseHostPort(user.dst);
      proxy = {
        egress: new EgressDialer({ policy: trusted, logger: this.log }),
        policy: new DestinationPolicy({ deny: ['*'] }),
        reverse: { enabled: false },
        fixedDestination: { host: d.host, port: d.port },
      };
    } else if (allow.length > 0 || (user.policy.deny ?? []).length > 0) {
      const policy = new DestinationPolicy({ allow: [...this.init.policy.allow, ...allow], deny, logger: this.log, where: `user '${user.name}' policy` });
      proxy = { egress: new EgressDialer({ policy, logger: this.log }), policy, reverse: this.init.reverse ?? { enabled: false } };
    } else {
      proxy = { egress: this.egress, policy: this.policy, reverse: this.init.reverse ?? { enabled: false } };
    }
    this.perUser.set(user.id, { updatedAt: user.updatedAt, proxy });
    return proxy;
  }

  /** True when the user's live total (stored + counted here since) reached its quota. */
  private overQuota(user: User): boolean {
    if (user.quotaBytes === null) return false;
    const unseen = this.meters.get(user.id)?.unseen ?? 0;
    return user.bytesUp + user.bytesDown + unseen >= user.quotaBytes;
  }

  private checkQuota(m: UserMeter): void {
    const user = this.cache.byId(m.userId);
    if (user === undefined || user.quotaBytes === null || !this.byUser.has(m.userId) || !this.overQuota(user)) return;
    // Not from inside the relay's data handler: the close resets the very streams that are calling us.
    queueMicrotask(() => {
      const n = this.closeUser(m.userId, CloseCode.quota, QUOTA_REASON);
      if (n > 0) {
        this.log.info({ user: user.name, sessions: n }, 'traffic quota reached; closed the user\'s sessions');
        // Tell the store (and through it every server of a fleet) now rather than at the next flush.
        void this.meters.flush();
      }
    });
  }

  private userChanged(id: string, user: User | undefined): void {
    this.perUser.delete(id);
    const m = this.meters.get(id);
    // The fresh row includes everything already flushed; not what is pending or being written.
    if (m !== undefined) m.unseen = m.pendingUp + m.pendingDown + m.inflight;
    if (user === undefined || !this.byUser.has(id)) return;
    if (userRefusal(user, this.now()) === 'quota' || this.overQuota(user)) {
      const n = this.closeUser(id, CloseCode.quota, QUOTA_REASON);
      if (n > 0) this.log.info({ user: user.name, sessions: n }, 'user is over its traffic quota; closed its sessions');
    }
  }

  private closeExpired(): void {
    const now = this.now();
    for (const id of [...this.byUser.keys()]) {
      const u = this.cache.byId(id);
      if (u?.expiresAt === null || u?.expiresAt === undefined || now < u.expiresAt) continue;
      const n = this.closeUser(id, CloseCode.expired, EXPIRED_REASON);
      if (n > 0) this.log.info({ user: u.name, sessions: n }, 'user account expired; closed its sessions');
    }
  }

  private closeUser(userId: string, code: number, reason: string): number {
    const set = this.byUser.get(userId);
    if (set === undefined) return 0;
    let n = 0;
    for (const e of [...set]) {
      if (e.session.state === 'closed' || e.session.state === 'closing') continue;
      try {
        e.session.close(code, reason);
        n++;
      } catch (err) {
        this.log.warn({ err: toError(err).message, user: e.user.name }, 'closing a session failed');
      }
    }
    return n;
  }
}
