/**
 * The traffic history on SQLite, in the user store's own database file
 * (SqliteStore hands over its connection: one file to back up, and a store
 * reopened read-only on a full disk refuses history writes the same way).
 * Times are INTEGER ms since the epoch, as everywhere in this file.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { HistoryBatch, HistoryPoint, HistoryStore, PruneBefore, Resolution, SeriesKind } from './history-types.js';

/** What SqliteStore lends the history: its statements, transactions and error handling. */
export interface SqliteAccess {
  /** A cached prepared statement on the current connection (throws ClosedError after close). */
  stmt(sql: string): BetterSqlite3.Statement;
  /** Runs `fn` in a BEGIN IMMEDIATE transaction. */
  tx<T>(fn: () => T): T;
  /** Throws StoreError when the store is read-only (it may reopen read-write first). */
  writable(): void;
  /** Runs `fn`, turning SQLite errors into StoreError. */
  guard<T>(fn: () => T): T;
}

const MARK = 'INSERT INTO traffic_history_batches (node, batch, applied_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING';
const ADD = `INSERT INTO traffic_history (kind, series_id, resolution, bucket, node, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (kind, series_id, resolution, bucket, node) DO UPDATE SET bytes_up = bytes_up + excluded.bytes_up, bytes_down = bytes_down + excluded.bytes_down`;
const SERIES = `SELECT bucket AS at, sum(bytes_up) AS up, sum(bytes_down) AS down FROM traffic_history
  WHERE kind = ? AND series_id = ? AND resolution = ? AND bucket >= ? AND bucket < ? GROUP BY bucket ORDER BY bucket`;
const TOTALS = `SELECT bucket AS at, sum(bytes_up) AS up, sum(bytes_down) AS down FROM traffic_history
  WHERE resolution = ? AND bucket >= ? AND bucket < ? AND kind = ? GROUP BY bucket ORDER BY bucket`;

/** The SQLite backend of {@link HistoryStore}. */
export class SqliteHistory implements HistoryStore {
  constructor(private readonly a: SqliteAccess) {}

  async addBatch(batch: HistoryBatch): Promise<boolean> {
    this.a.writable();
    return this.a.guard(() =>
      this.a.tx(() => {
        if (this.a.stmt(MARK).run(batch.node, batch.id, batch.at).changes === 0) return false;
        const add = this.a.stmt(ADD);
        for (const r of batch.rows) add.run(r.kind, r.id, r.resolution, r.bucket, batch.node, r.up, r.down);
        return true;
      }),
    );
  }

  async series(kind: SeriesKind, id: string, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]> {
    return this.a.guard(() => this.a.stmt(SERIES).all(kind, id, resolution, from, to) as HistoryPoint[]);
  }

  async totals(kind: SeriesKind, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]> {
    return this.a.guard(() => this.a.stmt(TOTALS).all(resolution, from, to, kind) as HistoryPoint[]);
  }

  async prune(before: PruneBefore): Promise<number> {
    this.a.writable();
    return this.a.guard(() =>
      this.a.tx(() => {
        let n = this.a.stmt('DELETE FROM traffic_history WHERE resolution = 60 AND bucket < ?').run(before.minutes).changes;
        n += this.a.stmt('DELETE FROM traffic_history WHERE resolution = 3600 AND bucket < ?').run(before.hours).changes;
        this.a.stmt('DELETE FROM traffic_history_batches WHERE applied_at < ?').run(before.batches);
        return n;
      }),
    );
  }
}
