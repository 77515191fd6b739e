/**
 * The PostgreSQL user store: one database shared by a fleet of servers.
 *
 * Every write notifies in the same statement (or transaction) as the change,
 * so the notification is delivered exactly when the change commits:
 *
 *   NOTIFY polytun_users, '<op>:<id>'      op = insert | update | delete
 *
 * onChange is fed only by a dedicated LISTEN connection (pg-listener.ts), for
 * changes made by this process and by every other one alike: one path, one
 * event per change. The listener reconnects with backoff and then emits
 * 'resync', because notifications sent while it was away are gone.
 */
import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import { ClosedError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { PostgresHistory } from './history-postgres.js';
import type { HistoryStore } from './history-types.js';
import { migratePostgres } from './migrations.js';
import { PgListener } from './pg-listener.js';
import { StoreError } from './types.js';
import type { ListOptions, NewUser, ReadOptions, StoreChange, TrafficEntry, User, UserKind, UserPatch, UserPolicy, UserStore } from './types.js';
import { COLUMN, ChangeHub, aggregateTraffic, conflictField, listBounds, IdGenerator, prepareNew, preparePatch, userColumns } from './user.js';
import type { UserRowOf, UserValues } from './user.js';

/** Options of {@link PostgresStore.open}. */
export interface PostgresStoreInit {
  /** `postgres://user@host:port/db`. */
  readonly url: string;
  /** Schema to keep the tables in (created when missing); also names the channel `polytun_users_<schema>`. @default the connection's search_path, channel `polytun_users` */
  readonly schema?: string;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** @default 10 */
  readonly poolSize?: number;
  /** Shown in pg_stat_activity; the LISTEN connection gets `<name>:listen`. @default 'polytun' */
  readonly applicationName?: string;
  /** LISTEN reconnect backoff bounds. @default 100 and 5000 */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

type Row = UserRowOf<UserPolicy, string, Date, boolean>;

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,40}$/;
const CHANGE_RE = /^(insert|update|delete):(.+)$/;

// bigint columns arrive as strings (pg does not guess); our counters stay below 2^53.
const num = (s: string | null): number | null => (s === null ? null : Number(s));

function toUser(r: Row): User {
  const u: User = {
    id: r.id,
    name: r.name,
    kind: r.kind as UserKind,
    publicKey: r.public_key,
    wssPath: r.wss_path,
    dst: r.dst,
    policy: r.policy,
    quotaBytes: num(r.quota_bytes),
    expiresAt: r.expires_at === null ? null : r.expires_at.getTime(),
    enabled: r.enabled,
    mtt: r.mtt,
    udpMaxRate: num(r.udp_max_rate),
    createdAt: r.created_at.getTime(),
    updatedAt: r.updated_at.getTime(),
    bytesUp: Number(r.bytes_up),
    bytesDown: Number(r.bytes_down),
  };
  return r.secret_plaintext === undefined ? u : { ...u, secret: r.secret_plaintext };
}

function pgValue<K extends keyof UserValues>(key: K, v: UserValues[K]): unknown {
  if (key === 'policy') return JSON.stringify(v);
  if (key === 'expiresAt') return v === null ? null : new Date(v as number);
  return v;
}

/** The PostgreSQL backend of {@link UserStore}. Create with {@link PostgresStore.open}. */
export class PostgresStore implements UserStore {
  readonly backend = 'postgres' as const;
  private closed = false;
  private readonly hub: ChangeHub;
  private readonly ids = new IdGenerator();
  /** The traffic history, in the same database (history-postgres.ts). */
  readonly history: HistoryStore;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly listener: PgListener,
    private readonly channel: string,
    hub: ChangeHub,
    private readonly log: Logger,
  ) {
    this.hub = hub;
    this.history = new PostgresHistory({ q: (sql, params, client) => this.q(sql, params, client), tx: (fn) => this.tx(fn) });
  }

  /** Runs `fn` in a transaction on one pooled connection; a connection whose ROLLBACK failed is discarded. */
  private async tx<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new ClosedError('user store');
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw new StoreError('ERR_STORE_BACKEND', undefined, `PostgreSQL user store: ${(err as Error).message}`, { cause: err });
    }
    let out: T;
    try {
      await this.q('BEGIN', [], client);
      out = await fn(client);
      await this.q('COMMIT', [], client);
    } catch (err) {
      let broken: Error | undefined;
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        this.log.warn({ err: rollbackErr }, 'user store: ROLLBACK failed; discarding the connection');
        broken = rollbackErr as Error;
      });
      client.release(broken);
      throw err;
    }
    client.release();
    return out;
  }

  /** Connects, migrates (under an advisory lock) and starts listening. Rejects with StoreError. */
  static async open(init: PostgresStoreInit): Promise<PostgresStore> {
    const log = init.logger ?? nullLogger;
    if (init.schema !== undefined && !SCHEMA_RE.test(init.schema)) {
      throw new StoreError('ERR_STORE_INVALID', 'url', `schema must match ${SCHEMA_RE.source}`);
    }
    const app = init.applicationName ?? 'polytun';
    const base: pg.ClientConfig = { connectionString: init.url, keepAlive: true };
    if (init.schema !== undefined) base.options = `-c search_path=${init.schema}`;
    const channel = init.schema === undefined ? 'polytun_users' : `polytun_users_${init.schema}`;
    const pool = new pg.Pool({ ...base, application_name: app, max: init.poolSize ?? 10 });
    // An idle pooled connection that dies emits here; the pool replaces it on next use.
    pool.on('error', (err) => log.warn({ err }, 'user store: idle PostgreSQL connection failed'));
    const hub = new ChangeHub(log);
    // The listener starts before the store object exists (open must not resolve
    // before LISTEN is active); notifications until then have no subscriber anyway.
    const ref: { store?: PostgresStore } = {};
    const listener = new PgListener({
      config: { ...base, application_name: `${app}:listen` },
      channel,
      log,
      onNotify: (payload) => ref.store?.notified(payload),
      onReconnect: () => hub.emit({ op: 'resync' }),
      ...(init.minBackoffMs === undefined ? {} : { minBackoffMs: init.minBackoffMs }),
      ...(init.maxBackoffMs === undefined ? {} : { maxBackoffMs: init.maxBackoffMs }),
    });
    try {
      const client = await pool.connect();
      try {
        await migratePostgres(client, init.schema, log);
      } finally {
        client.release();
      }
      await listener.start();
    } catch (err) {
      await listener.close();
      await pool.end();
      throw new StoreError('ERR_STORE_BACKEND', 'url', `cannot open the PostgreSQL user store: ${(err as Error).message}`, { cause: err });
    }
    ref.store = new PostgresStore(pool, listener, channel, hub, log);
    return ref.store;
  }

  private notified(payload: string): void {
    const m = CHANGE_RE.exec(payload);
    if (m === null) {
      this.log.debug({ payload }, 'user store: ignoring an unknown notification');
      return;
    }
    this.hub.emit({ op: m[1] as 'insert' | 'update' | 'delete', userId: m[2] as string });
  }

  /** Runs one query, translating pg errors into StoreError. */
  private async q<R extends QueryResultRow>(sql: string, params: unknown[], client?: PoolClient): Promise<pg.QueryResult<R>> {
    if (this.closed) throw new ClosedError('user store');
    try {
      return await (client ?? this.pool).query<R>(sql, params);
    } catch (err) {
      const e = err as { code?: string; constraint?: string; message?: string };
      if (e.code === '23505') {
        const field = conflictField(e.constraint ?? e.message ?? '');
        throw new StoreError('ERR_STORE_CONFLICT', field, `another user already has this ${field}`, { cause: err });
      }
      throw new StoreError('ERR_STORE_BACKEND', undefined, `PostgreSQL user store: ${e.message ?? String(err)}`, { cause: err });
    }
  }

  async createUser(input: NewUser): Promise<User> {
    const v = prepareNew(input);
    const now = new Date();
    const keys = Object.keys(COLUMN) as (keyof UserValues)[];
    const params: unknown[] = [this.ids.next(now.getTime()), ...keys.map((k) => pgValue(k, v[k])), now, now, this.channel];
    const marks = params.slice(0, -1).map((_, i) => `$${i + 1}`);
    const res = await this.q<Row>(
      `WITH ins AS (
         INSERT INTO users (id, ${keys.map((k) => COLUMN[k]).join(', ')}, created_at, updated_at)
         VALUES (${marks.join(', ')}) RETURNING ${userColumns(true)})
       SELECT ins.*, pg_notify($${params.length}, 'insert:' || ins.id) FROM ins`,
      params,
    );
    return toUser(res.rows[0] as Row);
  }

  async getUser(idOrName: string, opts?: ReadOptions): Promise<User | undefined> {
    // An id match wins over a user whose name happens to be another user's id.
    const res = await this.q<Row>(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1`, [idOrName]);
    return res.rows[0] === undefined ? undefined : toUser(res.rows[0]);
  }

  async findByPublicKey(publicKey: Buffer, opts?: ReadOptions): Promise<User | undefined> {
    const res = await this.q<Row>(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE public_key = $1`, [publicKey]);
    return res.rows[0] === undefined ? undefined : toUser(res.rows[0]);
  }

  async findByPath(wssPath: string, opts?: ReadOptions): Promise<User | undefined> {
    const res = await this.q<Row>(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE wss_path = $1`, [wssPath]);
    return res.rows[0] === undefined ? undefined : toUser(res.rows[0]);
  }

  async listUsers(opts: ListOptions = {}): Promise<User[]> {
    const { limit, offset } = listBounds(opts.limit, opts.offset);
    const res = await this.q<Row>(`SELECT ${userColumns(opts.withSecret)} FROM users WHERE id > $1 ORDER BY id LIMIT $2 OFFSET $3`, [opts.afterId ?? '', limit, offset]);
    return res.rows.map(toUser);
  }

  async updateUser(id: string, patch: UserPatch): Promise<User> {
    const { values, resetTraffic } = preparePatch(patch);
    const keys = (Object.keys(COLUMN) as (keyof UserValues)[]).filter((k) => values[k] !== undefined);
    const params: unknown[] = keys.map((k) => pgValue(k, values[k] as UserValues[typeof k]));
    const sets = keys.map((k, i) => `${COLUMN[k]} = $${i + 1}`);
    if (resetTraffic) sets.push('bytes_up = 0', 'bytes_down = 0');
    params.push(new Date(), id, this.channel);
    sets.push(`updated_at = $${params.length - 2}`);
    const res = await this.q<Row>(
      `WITH upd AS (UPDATE users SET ${sets.join(', ')} WHERE id = $${params.length - 1} RETURNING ${userColumns(false)})
       SELECT upd.*, pg_notify($${params.length}, 'update:' || upd.id) FROM upd`,
      params,
    );
    if (res.rows[0] === undefined) throw new StoreError('ERR_STORE_NOT_FOUND', 'id', `no user with id ${id}`);
    return toUser(res.rows[0]);
  }

  async deleteUser(id: string): Promise<boolean> {
    const res = await this.q(`WITH del AS (DELETE FROM users WHERE id = $1 RETURNING id) SELECT pg_notify($2, 'delete:' || del.id) FROM del`, [id, this.channel]);
    return res.rowCount === 1;
  }

  async addTraffic(entries: readonly TrafficEntry[]): Promise<void> {
    const sums = aggregateTraffic(entries);
    if (sums.length === 0) return;
    const ids = sums.map((s) => s.userId);
    await this.tx(async (client) => {
      // Lock the rows in id order first: two batches touching the same users
      // then queue instead of deadlocking.
      await this.q('SELECT 1 FROM users WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [ids], client);
      await this.q(
        `WITH t AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[]) AS t(id, up, down)),
         upd AS (UPDATE users u SET bytes_up = u.bytes_up + t.up, bytes_down = u.bytes_down + t.down FROM t WHERE u.id = t.id
                 RETURNING u.id, u.quota_bytes, u.bytes_up + u.bytes_down AS total, t.up + t.down AS added)
         SELECT pg_notify($4, 'update:' || upd.id) FROM upd
         WHERE upd.quota_bytes IS NOT NULL AND upd.total >= upd.quota_bytes AND upd.total - upd.added < upd.quota_bytes`,
        [ids, sums.map((s) => s.up), sums.map((s) => s.down), this.channel],
        client,
      );
    });
  }

  async resetAll(): Promise<number> {
    const res = await this.q(`WITH del AS (DELETE FROM users RETURNING id) SELECT pg_notify($1, 'delete:' || del.id) FROM del`, [this.channel]);
    return res.rowCount ?? 0;
  }

  async count(): Promise<number> {
    const res = await this.q<{ n: number }>('SELECT count(*)::int AS n FROM users', []);
    return res.rows[0]?.n ?? 0;
  }

  onChange(listener: (change: StoreChange) => void): () => void {
    return this.hub.add(listener);
  }

  /** True while the LISTEN connection is up (for health checks). */
  get listening(): boolean {
    return this.listener.listening;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.hub.clear();
    await this.listener.close();
    await this.pool.end();
  }
}
