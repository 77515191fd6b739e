/**
 * Schema migrations, one list for both backends. Each migration has a
 * version, a name and its SQL per dialect; `polytun_migrations` records the
 * versions applied. Append new migrations, never edit an applied one.
 *
 * Concurrency: SQLite migrates inside BEGIN IMMEDIATE (a second process that
 * opens the same file waits on the write lock, then sees the versions the
 * first one applied). PostgreSQL migrates inside one transaction that first
 * takes a transaction-scoped advisory lock, so servers of a fleet starting at
 * once apply each migration exactly once (without it, two concurrent
 * `CREATE TABLE IF NOT EXISTS` can still collide in the catalog).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { PoolClient } from 'pg';
import type { Logger } from '../core/logger.js';

/** One schema step. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sqlite: string;
  readonly postgres: string;
}

/**
 * Times: SQLite INTEGER ms since the epoch; PostgreSQL timestamptz.
 * Counters: INTEGER / bigint. `secret_plaintext` is the private key (base64url)
 * or the token, in clear, so that links can be re-issued (see types.ts).
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users',
    sqlite: `
      CREATE TABLE users (
        id               TEXT PRIMARY KEY,
        name             TEXT NOT NULL UNIQUE,
        public_key       BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
        kind             TEXT NOT NULL CHECK (kind IN ('key', 'token')),
        secret_plaintext TEXT,
        wss_path         TEXT UNIQUE,
        dst              TEXT,
        policy           TEXT NOT NULL DEFAULT '{}',
        quota_bytes      INTEGER,
        expires_at       INTEGER,
        enabled          INTEGER NOT NULL DEFAULT 1,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        bytes_up         INTEGER NOT NULL DEFAULT 0,
        bytes_down       INTEGER NOT NULL DEFAULT 0
      ) STRICT;`,
    postgres: `
      CREATE TABLE users (
        id               text COLLATE "C" PRIMARY KEY,
        name             text NOT NULL CONSTRAINT users_name_key UNIQUE,
        public_key       bytea NOT NULL CONSTRAINT users_public_key_key UNIQUE CHECK (octet_length(public_key) = 32),
        kind             text NOT NULL CHECK (kind IN ('key', 'token')),
        secret_plaintext text,
        wss_path         text CONSTRAINT users_wss_path_key UNIQUE,
        dst              text,
        policy           jsonb NOT NULL DEFAULT '{}',
        quota_bytes      bigint,
        expires_at       timestamptz,
        enabled          boolean NOT NULL DEFAULT true,
        created_at       timestamptz NOT NULL,
        updated_at       timestamptz NOT NULL,
        bytes_up         bigint NOT NULL DEFAULT 0,
        bytes_down       bigint NOT NULL DEFAULT 0
      );`,
  },
  {
    // mtt compatibility mode (issue 19): the user accepts stock mtt-clients on its path.
    // The controller's users made before this column existed are its users: named 'mtt:…'.
    version: 2,
    name: 'users.mtt',
    sqlite: `
      ALTER TABLE users ADD COLUMN mtt INTEGER NOT NULL DEFAULT 0 CHECK (mtt IN (0, 1));
      UPDATE users SET mtt = 1 WHERE name LIKE 'mtt:%' AND wss_path IS NOT NULL AND dst IS NOT NULL;`,
    postgres: `
      ALTER TABLE users ADD COLUMN mtt boolean NOT NULL DEFAULT false;
      UPDATE users SET mtt = true WHERE name LIKE 'mtt:%' AND wss_path IS NOT NULL AND dst IS NOT NULL;`,
  },
  {
    // Traffic history (issue 18): per-user and per-path byte counts in 1-minute and 1-hour buckets.
    // One row per (series, resolution, bucket, node): the servers of a fleet write their own rows
    // (no contention between them) and a query sums over node. Not tied to users (a deleted user's
    // history ages out with the rest). traffic_history_batches records the batches applied, so a
    // batch retried after a failure whose commit did happen is not added twice (history.ts).
    version: 3,
    name: 'traffic_history',
    sqlite: `
      CREATE TABLE traffic_history (
        kind       TEXT NOT NULL CHECK (kind IN ('user', 'path')),
        series_id  TEXT NOT NULL,
        resolution INTEGER NOT NULL CHECK (resolution IN (60, 3600)),
        bucket     INTEGER NOT NULL,
        node       TEXT NOT NULL,
        bytes_up   INTEGER NOT NULL DEFAULT 0,
        bytes_down INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, series_id, resolution, bucket, node)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX traffic_history_time ON traffic_history (resolution, bucket);
      CREATE TABLE traffic_history_batches (
        node       TEXT NOT NULL,
        batch      TEXT NOT NULL,
        applied_at INTEGER NOT NULL,
        PRIMARY KEY (node, batch)
      ) STRICT, WITHOUT ROWID;`,
    postgres: `
      CREATE TABLE traffic_history (
        kind       text NOT NULL CHECK (kind IN ('user', 'path')),
        series_id  text COLLATE "C" NOT NULL,
        resolution integer NOT NULL CHECK (resolution IN (60, 3600)),
        bucket     timestamptz NOT NULL,
        node       text COLLATE "C" NOT NULL,
        bytes_up   bigint NOT NULL DEFAULT 0,
        bytes_down bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, series_id, resolution, bucket, node)
      );
      CREATE INDEX traffic_history_time ON traffic_history (resolution, bucket);
      CREATE TABLE traffic_history_batches (
        node       text COLLATE "C" NOT NULL,
        batch      text COLLATE "C" NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (node, batch)
      );`,
  },
  {
    // Per-user cap on the fixed rate a udp client may ask the server to send at (issue 17), bytes per second;
    // NULL: the server's udp.maxRate alone.
    version: 4,
    name: 'users.udp_max_rate',
    sqlite: `ALTER TABLE users ADD COLUMN udp_max_rate INTEGER CHECK (udp_max_rate IS NULL OR udp_max_rate > 0);`,
    postgres: `ALTER TABLE users ADD COLUMN udp_max_rate bigint CHECK (udp_max_rate IS NULL OR udp_max_rate > 0);`,
  },
];

/** The newest schema version this build knows. */
export const SCHEMA_VERSION = MIGRATIONS.reduce((v, m) => Math.max(v, m.version), 0);

// 'polytun' as a 56-bit integer: the advisory lock every migrating server takes.
const PG_LOCK_KEY = '31647709076419950';

/** Brings a SQLite database to the newest schema. Synchronous (better-sqlite3). */
export function migrateSqlite(db: BetterSqlite3.Database, log: Logger): void {
  const run = db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS polytun_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT');
    const done = new Set((db.prepare('SELECT version FROM polytun_migrations').all() as { version: number }[]).map((r) => r.version));
    const mark = db.prepare('INSERT INTO polytun_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      db.exec(m.sqlite);
      mark.run(m.version, m.name, Date.now());
      log.info({ version: m.version, migration: m.name }, 'user store: migration applied');
    }
  });
  run.immediate();
}

/**
 * Brings a PostgreSQL schema to the newest version, on `client` (taken from
 * the pool; the caller releases it). `schema`, when set, is created if absent
 * and must already be on the connection's search_path.
 */
export async function migratePostgres(client: PoolClient, schema: string | undefined, log: Logger): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${PG_LOCK_KEY})`);
    if (schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query('CREATE TABLE IF NOT EXISTS polytun_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const res = await client.query<{ version: number }>('SELECT version FROM polytun_migrations');
    const done = new Set(res.rows.map((r) => r.version));
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.postgres);
      await client.query('INSERT INTO polytun_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      log.info({ version: m.version, migration: m.name }, 'user store: migration applied');
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
      log.warn({ err: rollbackErr }, 'user store: rollback after a failed migration also failed');
    });
    throw err;
  }
}
