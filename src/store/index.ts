/**
 * The user store: `openStore(url)` picks the backend from the URL.
 *
 *   ''  or  'sqlite:'             → SQLite file `users.db` in `dataDir`
 *   'sqlite:/path/to/file.db'     → that SQLite file
 *   'postgres://…' 'postgresql://…' → PostgreSQL (shared by a fleet)
 */
import { existsSync, mkdirSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { nullLogger, type Logger } from '../core/logger.js';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import { StoreError, type UserStore } from './types.js';

export type * from './types.js';
export { StoreError } from './types.js';
export { UserCache, userRefusal, type Refusal, type UserCacheInit } from './cache.js';
export { generateWssPath } from './user.js';
export { SqliteStore, type SqliteStoreInit } from './sqlite.js';
export { PostgresStore, type PostgresStoreInit } from './postgres.js';
export type * from './history-types.js';
export { bucketOf, RESOLUTIONS } from './history-types.js';
export { TrafficHistory, type TrafficHistoryInit, type TrafficHistoryStats } from './history.js';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Folder of the SQLite file (created 0700 when missing). Required for '' and 'sqlite:'. */
  readonly dataDir?: string;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** PostgreSQL schema for the tables. @default the connection's search_path */
  readonly pgSchema?: string;
  /**
   * SQLite: open an existing store read-only (read-only commands: nothing is
   * created or migrated). PostgreSQL is opened as usual. @default false
   */
  readonly readOnly?: boolean;
}

/** Free bytes for unprivileged writers on the file system holding `dir`; undefined when unknown. */
function freeBytes(dir: string): number | undefined {
  try {
    const st = statfsSync(dir);
    return st.bavail * st.bsize;
  } catch {
    return undefined; // no statfs here: we only lose the better message
  }
}

/** Below this, a failed SQLite open is put down to a full disk (SQLite needs a few pages for its -wal and -shm files). */
const NEARLY_FULL = 256 * 1024;

/**
 * Opens SQLite at `path` read-write; when that fails on a full disk and the
 * file exists, opens it read-only instead: the tunnel needs only reads, and a
 * restart on a full disk should keep serving. Writes (new users, traffic
 * counters) then fail with a clear reason; the traffic meters keep their
 * counts and retry.
 */
function openSqlite(path: string, logger: Logger): SqliteStore {
  try {
    return new SqliteStore({ path, logger });
  } catch (err) {
    const free = freeBytes(dirname(path));
    if (free === undefined || free >= NEARLY_FULL) throw err;
    const why = `disk full (${free} bytes free where ${path} lives)`;
    if (!existsSync(path)) throw new StoreError('ERR_STORE_BACKEND', 'url', `cannot create the SQLite user store at ${path}: ${why}`, { cause: err });
    const store = new SqliteStore({ path, logger, readOnly: why, reopen: true });
    logger.warn({ store: path, freeBytes: free }, 'disk full: the user store is open READ-ONLY; tunnels work, but users cannot be added or changed and traffic counts wait in memory until there is space again');
    return store;
  }
}

/** Opens and migrates the store named by `url`. Rejects with StoreError. */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<UserStore> {
  const logger = opts.logger ?? nullLogger;
  if (url === '' || url === 'sqlite:') {
    if (opts.dataDir === undefined || opts.dataDir === '') {
      throw new StoreError('ERR_STORE_INVALID', 'url', 'the SQLite user store needs a data directory (dataDir)');
    }
    // The database holds user secrets in clear: keep its folder private.
    const path = join(opts.dataDir, 'users.db');
    if (opts.readOnly === true) return new SqliteStore({ path, logger, readOnly: 'opened read-only' });
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    return openSqlite(path, logger);
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    return opts.readOnly === true ? new SqliteStore({ path, logger, readOnly: 'opened read-only' }) : openSqlite(path, logger);
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return PostgresStore.open({ url, logger, ...(opts.pgSchema === undefined ? {} : { schema: opts.pgSchema }) });
  }
  throw new StoreError('ERR_STORE_INVALID', 'url', `unknown store URL scheme (expected '', 'sqlite:…' or 'postgres://…'): ${url.replace(/\/\/[^@/]*@/, '//***@')}`);
}
