/**
 * Where the client keeps its per-path traffic history: a small SQLite file
 * (the store's own schema and backend, store/history-sqlite.ts, so the
 * points, their retention and their batching are the server's), by default
 * in $XDG_STATE_HOME/polytun (~/.local/state/polytun), created 0600.
 */
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from '../core/logger.js';
import { SqliteStore } from '../store/sqlite.js';
import { TrafficHistory } from '../store/history.js';

/** The default history file. */
export function defaultHistoryFile(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'polytun', 'client-history.db');
}

/** An open history and how to close it. */
export interface PathHistoryFile {
  readonly file: string;
  readonly history: TrafficHistory;
  /** Writes what is pending and closes the database. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens (creating it and its folder) the history file.
 * @throws StoreError when the file cannot be opened (the message names it).
 */
export function openPathHistory(file: string, opts: { logger?: Logger; flushMs?: number } = {}): PathHistoryFile {
  const log = opts.logger;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const store = new SqliteStore({ path: file, ...(log ? { logger: log } : {}) });
  // One client per file: the node name only matters to a fleet sharing a database.
  const history = new TrafficHistory({ store: store.history, node: 'client', ...(log ? { logger: log } : {}), flushMs: opts.flushMs ?? 60_000 });
  let closing: Promise<void> | undefined;
  return {
    file,
    history,
    close() {
      closing ??= history.close().then(() => store.close());
      return closing;
    },
  };
}
