/**
 * The user store: `openStore(url)` picks the backend from the URL.
 *
 *   ''  or  'sqlite:'             → SQLite file `users.db` in `dataDir`
 *   'sqlite:/path/to/file.db'     → that SQLite file
 *   'postgres://…' 'postgresql://…' → PostgreSQL (shared by a fleet)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
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

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Folder of the SQLite file (created 0700 when missing). Required for '' and 'sqlite:'. */
  readonly dataDir?: string;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** PostgreSQL schema for the tables. @default the connection's search_path */
  readonly pgSchema?: string;
}

/** Opens and migrates the store named by `url`. Rejects with StoreError. */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<UserStore> {
  const logger = opts.logger ?? nullLogger;
  if (url === '' || url === 'sqlite:') {
    if (opts.dataDir === undefined || opts.dataDir === '') {
      throw new StoreError('ERR_STORE_INVALID', 'url', 'the SQLite user store needs a data directory (dataDir)');
    }
    // The database holds user secrets in clear: keep its folder private.
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    return new SqliteStore({ path: join(opts.dataDir, 'users.db'), logger });
  }
  if (url.startsWith('sqlite:')) return new SqliteStore({ path: url.slice('sqlite:'.length), logger });
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return PostgresStore.open({ url, logger, ...(opts.pgSchema === undefined ? {} : { schema: opts.pgSchema }) });
  }
  throw new StoreError('ERR_STORE_INVALID', 'url', `unknown store URL scheme (expected '', 'sqlite:…' or 'postgres://…'): ${url.replace(/\/\/[^@/]*@/, '//***@')}`);
}
