/**
 * The SQLite user store (better-sqlite3): the zero-setup default for one
 * server. WAL mode so readers never wait for the writer, prepared statements
 * cached per SQL text, change notifications in-process (emitted right after
 * each committed write). Another process writing the same file is not seen
 * through onChange: a fleet uses PostgreSQL.
 */
import { closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { ClosedError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { migrateSqlite } from './migrations.js';
import { StoreError } from './types.js';
import type { ListOptions, NewUser, ReadOptions, StoreChange, TrafficEntry, User, UserKind, UserPatch, UserStore } from './types.js';
import { COLUMN, ChangeHub, aggregateTraffic, conflictField, crossedQuota, listBounds, looksLikeId, IdGenerator, prepareNew, preparePatch, userColumns } from './user.js';
import type { UserValues } from './user.js';

/** Options of {@link SqliteStore}. */
export interface SqliteStoreInit {
  /** Database file (created 0600 when missing), or ':memory:'. */
  readonly path: string;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** How long a write waits for another process holding the lock. @default 5000 */
  readonly busyTimeoutMs?: number;
}

interface Row {
  id: string;
  name: string;
  public_key: Buffer;
  kind: string;
  secret_plaintext?: string | null;
  wss_path: string | null;
  dst: string | null;
  policy: string;
  quota_bytes: number | null;
  expires_at: number | null;
  enabled: number;
  mtt: number;
  created_at: number;
  updated_at: number;
  bytes_up: number;
  bytes_down: number;
}


function toUser(r: Row): User {
  const u: User = {
    id: r.id,
    name: r.name,
    kind: r.kind as UserKind,
    publicKey: r.public_key,
    wssPath: r.wss_path,
    dst: r.dst,
    policy: JSON.parse(r.policy) as User['policy'],
    quotaBytes: r.quota_bytes,
    expiresAt: r.expires_at,
    enabled: r.enabled !== 0,
    mtt: r.mtt !== 0,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    bytesUp: r.bytes_up,
    bytesDown: r.bytes_down,
  };
  return r.secret_plaintext === undefined ? u : { ...u, secret: r.secret_plaintext };
}

function sqlValue<K extends keyof UserValues>(key: K, v: UserValues[K]): unknown {
  if (key === 'policy') return JSON.stringify(v);
  if (key === 'enabled' || key === 'mtt') return v === true ? 1 : 0;
  return v;
}

/** The SQLite backend of {@link UserStore}. */
export class SqliteStore implements UserStore {
  readonly backend = 'sqlite' as const;
  private db: BetterSqlite3.Database | undefined;
  private readonly stmts = new Map<string, BetterSqlite3.Statement>();
  private readonly hub: ChangeHub;
  private readonly ids = new IdGenerator();

  /** Opens (creating if needed) and migrates the database. Throws StoreError. */
  constructor(init: SqliteStoreInit) {
    const log = init.logger ?? nullLogger;
    this.hub = new ChangeHub(log);
    try {
      // The file holds secrets in clear: create it owner-only (SQLite gives -wal/-shm the same mode).
      if (init.path !== ':memory:') closeSync(openSync(init.path, 'a', 0o600));
      this.db = new Database(init.path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(init.busyTimeoutMs ?? 5000))}`);
      migrateSqlite(this.db, log);
    } catch (err) {
      this.db?.close();
      this.db = undefined;
      throw new StoreError('ERR_STORE_BACKEND', 'url', `cannot open the SQLite user store at ${init.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private stmt(sql: string): BetterSqlite3.Statement {
    if (this.db === undefined) throw new ClosedError('user store');
    let s = this.stmts.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Runs `fn`, translating SQLite errors into StoreError. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof StoreError || err instanceof ClosedError) throw err;
      const code = (err as { code?: unknown }).code;
      const msg = (err as Error).message ?? String(err);
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        const field = conflictField(msg.replace(/^.*failed: /, ''));
        throw new StoreError('ERR_STORE_CONFLICT', field, `another user already has this ${field}`, { cause: err });
      }
      throw new StoreError('ERR_STORE_BACKEND', undefined, `SQLite user store: ${msg}`, { cause: err });
    }
  }

  private emit(change: StoreChange): void {
    this.hub.emit(change);
  }

  async createUser(input: NewUser): Promise<User> {
    const v = prepareNew(input);
    const now = Date.now();
    const keys = Object.keys(COLUMN) as (keyof UserValues)[];
    const row = this.guard(
      () =>
        this.stmt(
          `INSERT INTO users (id, ${keys.map((k) => COLUMN[k]).join(', ')}, created_at, updated_at)
           VALUES (${new Array(keys.length + 3).fill('?').join(', ')}) RETURNING ${userColumns(true)}`,
        ).get(this.ids.next(now), ...keys.map((k) => sqlValue(k, v[k])), now, now) as Row,
    );
    this.emit({ op: 'insert', userId: row.id });
    return toUser(row);
  }

  async getUser(idOrName: string, opts?: ReadOptions): Promise<User | undefined> {
    return this.guard(() => {
      let row: Row | undefined;
      if (looksLikeId(idOrName)) row = this.stmt(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE id = ?`).get(idOrName) as Row | undefined;
      row ??= this.stmt(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE name = ?`).get(idOrName) as Row | undefined;
      return row === undefined ? undefined : toUser(row);
    });
  }

  async findByPublicKey(publicKey: Buffer, opts?: ReadOptions): Promise<User | undefined> {
    const row = this.guard(() => this.stmt(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE public_key = ?`).get(publicKey) as Row | undefined);
    return row === undefined ? undefined : toUser(row);
  }

  async findByPath(wssPath: string, opts?: ReadOptions): Promise<User | undefined> {
    const row = this.guard(() => this.stmt(`SELECT ${userColumns(opts?.withSecret)} FROM users WHERE wss_path = ?`).get(wssPath) as Row | undefined);
    return row === undefined ? undefined : toUser(row);
  }

  async listUsers(opts: ListOptions = {}): Promise<User[]> {
    const { limit, offset } = listBounds(opts.limit, opts.offset);
    const rows = this.guard(
      () => this.stmt(`SELECT ${userColumns(opts.withSecret)} FROM users WHERE id > ? ORDER BY id LIMIT ? OFFSET ?`).all(opts.afterId ?? '', limit, offset) as Row[],
    );
    return rows.map(toUser);
  }

  async updateUser(id: string, patch: UserPatch): Promise<User> {
    const { values, resetTraffic } = preparePatch(patch);
    const keys = (Object.keys(COLUMN) as (keyof UserValues)[]).filter((k) => values[k] !== undefined);
    const sets = keys.map((k) => `${COLUMN[k]} = ?`);
    if (resetTraffic) sets.push('bytes_up = 0', 'bytes_down = 0');
    sets.push('updated_at = ?');
    const row = this.guard(
      () =>
        this.stmt(`UPDATE users SET ${sets.join(', ')} WHERE id = ? RETURNING ${userColumns(false)}`).get(
          ...keys.map((k) => sqlValue(k, values[k] as UserValues[typeof k])),
          Date.now(),
          id,
        ) as Row | undefined,
    );
    if (row === undefined) throw new StoreError('ERR_STORE_NOT_FOUND', 'id', `no user with id ${id}`);
    this.emit({ op: 'update', userId: id });
    return toUser(row);
  }

  async deleteUser(id: string): Promise<boolean> {
    const { changes } = this.guard(() => this.stmt('DELETE FROM users WHERE id = ?').run(id));
    if (changes > 0) this.emit({ op: 'delete', userId: id });
    return changes > 0;
  }

  async addTraffic(entries: readonly TrafficEntry[]): Promise<void> {
    const sums = aggregateTraffic(entries);
    if (sums.length === 0) return;
    const crossed = this.guard(() => {
      const inc = this.stmt('UPDATE users SET bytes_up = bytes_up + ?, bytes_down = bytes_down + ? WHERE id = ? RETURNING quota_bytes, bytes_up + bytes_down AS total');
      const out: string[] = [];
      this.db?.transaction(() => {
        for (const s of sums) {
          const r = inc.get(s.up, s.down, s.userId) as { quota_bytes: number | null; total: number } | undefined;
          if (r !== undefined && crossedQuota(r.quota_bytes, r.total, s.up + s.down)) out.push(s.userId);
        }
      })();
      return out;
    });
    for (const userId of crossed) this.emit({ op: 'update', userId });
  }

  async resetAll(): Promise<number> {
    const ids = this.guard(() => (this.stmt('DELETE FROM users RETURNING id').all() as { id: string }[]).map((r) => r.id));
    for (const userId of ids) this.emit({ op: 'delete', userId });
    return ids.length;
  }

  async count(): Promise<number> {
    return this.guard(() => (this.stmt('SELECT count(*) AS n FROM users').get() as { n: number }).n);
  }

  onChange(listener: (change: StoreChange) => void): () => void {
    return this.hub.add(listener);
  }

  async close(): Promise<void> {
    const db = this.db;
    if (db === undefined) return;
    this.db = undefined;
    this.stmts.clear();
    this.hub.clear();
    db.close();
  }
}
