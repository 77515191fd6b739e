/**
 * The SQLite user store (better-sqlite3): the zero-setup default for one
 * server. WAL mode so readers never wait for the writer, prepared statements
 * cached per SQL text, change notifications in-process (emitted right after
 * each committed write). Writes by another process on the same file
 * (`polytun user add` beside a running server) are noticed within
 * `externalCheckMs` through SQLite's `data_version` and reported as one
 * 'resync'. A fleet of servers uses PostgreSQL.
 */
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { ClosedError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { SqliteHistory } from './history-sqlite.js';
import type { HistoryStore } from './history-types.js';
import { SCHEMA_VERSION, migrateSqlite } from './migrations.js';
import { StoreError } from './types.js';
import type { ListOptions, NewUser, ReadOptions, StoreChange, TrafficEntry, User, UserKind, UserPatch, UserStore } from './types.js';
import { COLUMN, ChangeHub, aggregateTraffic, conflictField, crossedQuota, listBounds, looksLikeId, IdGenerator, prepareNew, preparePatch, userColumns } from './user.js';
import type { UserRowOf, UserValues } from './user.js';

/** Options of {@link SqliteStore}. */
export interface SqliteStoreInit {
  /** Database file (created 0600 when missing), or ':memory:'. */
  readonly path: string;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** How long a write waits for another process holding the lock. @default 5000 */
  readonly busyTimeoutMs?: number;
  /**
   * Open an existing, migrated file for reading only: no file is created,
   * nothing migrated, every write rejects with ERR_STORE_BACKEND giving this
   * reason. For read-only commands, and for a server on a full disk
   * (tunnelling needs only reads). @default undefined (read-write)
   */
  readonly readOnly?: string;
  /** With readOnly: try to reopen read-write on a later write (the disk may have space again). @default false */
  readonly reopen?: boolean;
  /** How often, while someone listens to onChange, writes by other processes are looked for. @default 1000 */
  readonly externalCheckMs?: number;
}

type Row = UserRowOf<string, number, number, number>;


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
    udpMaxRate: r.udp_max_rate,
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

/** Opens (creating it 0600) and migrates `init.path`. */
function openReadWrite(init: SqliteStoreInit, log: Logger): BetterSqlite3.Database {
  let db: BetterSqlite3.Database | undefined;
  try {
    // The file holds secrets in clear: create it owner-only (SQLite gives -wal/-shm the same mode),
    // and take back a mode that let others read it (a copy, an old version, a umask).
    if (init.path !== ':memory:') {
      closeSync(openSync(init.path, 'a', 0o600));
      const mode = statSync(init.path).mode & 0o777;
      if ((mode & 0o077) !== 0) {
        chmodSync(init.path, 0o600);
        log.warn({ file: init.path, was: mode.toString(8) }, 'the user store holds users\' secrets and was readable by other users; changed its mode to 600');
      }
    }
    db = new Database(init.path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(init.busyTimeoutMs ?? 5000))}`);
    migrateSqlite(db, log);
    return db;
  } catch (err) {
    db?.close();
    throw new StoreError('ERR_STORE_BACKEND', 'url', `cannot open the SQLite user store at ${init.path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Opens `path` read-only. Refuses a file that does not exist (nothing is
 * created) or whose schema is older or newer than this build's (a read-only
 * open cannot migrate).
 */
function openReadOnly(path: string, log: Logger): BetterSqlite3.Database {
  let db: BetterSqlite3.Database | undefined;
  try {
    try {
      db = new Database(path, { readonly: true, fileMustExist: true });
      checkSchema(db);
    } catch (err) {
      db?.close();
      db = undefined;
      // A WAL database needs its -shm file, which a full disk cannot hold: read a copy into memory instead.
      if (!existsSync(path)) throw err;
      db = snapshot(path, log);
      checkSchema(db);
    }
    return db;
  } catch (err) {
    db?.close();
    throw new StoreError('ERR_STORE_BACKEND', 'url', `cannot read the SQLite user store at ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Refuses a schema this build would have to migrate (a read-only store cannot). */
function checkSchema(db: BetterSqlite3.Database): void {
  const rows = db.prepare('SELECT version FROM polytun_migrations').all() as { version: number }[];
  const newest = rows.reduce((v, r) => Math.max(v, r.version), 0);
  if (newest !== SCHEMA_VERSION) throw new Error(`schema version ${newest}, this build uses ${SCHEMA_VERSION}: start the server once to migrate it`);
}

/**
 * An in-memory copy of the database file. The header's WAL marks are turned
 * back to rollback mode (an in-memory database cannot be WAL). Commits still
 * only in the -wal file (after a crash) are not in the copy: said in the log.
 */
function snapshot(path: string, log: Logger): BetterSqlite3.Database {
  const buf = readFileSync(path);
  if (buf.length >= 20 && buf[18] === 2 && buf[19] === 2) {
    buf[18] = 1;
    buf[19] = 1;
  }
  if (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size) log.warn({ store: path }, 'reading the user store from a copy without its -wal file: changes made just before the last crash may be missing');
  return new Database(buf, { readonly: true });
}

/** The SQLite backend of {@link UserStore}. */
export class SqliteStore implements UserStore {
  readonly backend = 'sqlite' as const;
  private db: BetterSqlite3.Database | undefined;
  private readonly stmts = new Map<string, BetterSqlite3.Statement>();
  private readonly hub: ChangeHub;
  private readonly ids = new IdGenerator();
  /** Why writes are refused; undefined when the store is writable. */
  readOnly: string | undefined;
  /** When a read-only store last tried to become writable (see writable()). */
  private lastReopen = 0;
  private externalTimer: NodeJS.Timeout | undefined;
  private dataVersion = -1;
  /** The traffic history, in the same file (history-sqlite.ts). */
  readonly history: HistoryStore;

  /** Opens (creating if needed) and migrates the database. Throws StoreError. */
  constructor(private readonly init: SqliteStoreInit) {
    const log = init.logger ?? nullLogger;
    this.hub = new ChangeHub(log);
    this.readOnly = init.readOnly;
    this.db = init.readOnly !== undefined ? openReadOnly(init.path, log) : openReadWrite(init, log);
    this.history = new SqliteHistory({ stmt: (sql) => this.stmt(sql), tx: (fn) => this.tx(fn), writable: () => this.writable(), guard: (fn) => this.guard(fn) });
  }

  private tx<T>(fn: () => T): T {
    if (this.db === undefined) throw new ClosedError('user store');
    return this.db.transaction(fn).immediate();
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

  /**
   * Refuses a write on a read-only store, saying why. A store opened
   * read-only because the disk was full (`init.reopen`) tries, at most every
   * 10 s, to reopen read-write, so that counters saved in memory reach the
   * file once there is space again.
   */
  private writable(): void {
    if (this.readOnly === undefined) return;
    const now = Date.now();
    if (this.init.reopen === true && this.db !== undefined && now - this.lastReopen >= 10_000) {
      this.lastReopen = now;
      const log = this.init.logger ?? nullLogger;
      try {
        const db = openReadWrite(this.init, log);
        this.stmts.clear();
        this.db.close();
        this.db = db;
        this.dataVersion = this.readDataVersion();
        this.readOnly = undefined;
        log.info({ store: this.init.path }, 'the user store is writable again');
        return;
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'the user store is still not writable');
      }
    }
    throw new StoreError('ERR_STORE_BACKEND', undefined, `the user store is read-only: ${this.readOnly}`);
  }

  private emit(change: StoreChange): void {
    this.hub.emit(change);
  }

  async createUser(input: NewUser): Promise<User> {
    this.writable();
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
    this.writable();
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
    this.writable();
    const { changes } = this.guard(() => this.stmt('DELETE FROM users WHERE id = ?').run(id));
    if (changes > 0) this.emit({ op: 'delete', userId: id });
    return changes > 0;
  }

  async addTraffic(entries: readonly TrafficEntry[]): Promise<void> {
    this.writable();
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
    this.writable();
    const ids = this.guard(() => (this.stmt('DELETE FROM users RETURNING id').all() as { id: string }[]).map((r) => r.id));
    for (const userId of ids) this.emit({ op: 'delete', userId });
    return ids.length;
  }

  async count(): Promise<number> {
    return this.guard(() => (this.stmt('SELECT count(*) AS n FROM users').get() as { n: number }).n);
  }

  onChange(listener: (change: StoreChange) => void): () => void {
    if (this.externalTimer === undefined && this.init.path !== ':memory:') {
      this.dataVersion = this.readDataVersion();
      this.externalTimer = setInterval(() => this.checkExternal(), this.init.externalCheckMs ?? 1000);
      this.externalTimer.unref();
    }
    return this.hub.add(listener);
  }

  /** SQLite's data_version: changes when another connection commits (our own writes do not change it). */
  private readDataVersion(): number {
    return this.db === undefined ? -1 : (this.db.pragma('data_version', { simple: true }) as number);
  }

  private checkExternal(): void {
    let v: number;
    try {
      v = this.readDataVersion();
    } catch (err) {
      (this.init.logger ?? nullLogger).debug({ err: (err as Error).message }, 'user store: data_version check failed');
      return;
    }
    if (v === this.dataVersion) return;
    this.dataVersion = v;
    this.emit({ op: 'resync' });
  }

  async close(): Promise<void> {
    const db = this.db;
    if (db === undefined) return;
    clearInterval(this.externalTimer);
    this.db = undefined;
    this.stmts.clear();
    this.hub.clear();
    db.close();
  }
}
