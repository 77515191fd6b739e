/**
 * The traffic history seam: byte counts per series (a user on the server, a
 * path on the client) in time buckets of two widths, kept in the user store's
 * database (SQLite, or PostgreSQL shared by a fleet).
 *
 *   record(kind, id, up, down, at) ──▶ TrafficHistory (pending 1-min points, bounded)
 *        every flushMs ──seal──▶ HistoryBatch { id, node, rows: 60 s and 3600 s } ──▶ HistoryStore.addBatch
 *        every pruneMs ──────────▶ HistoryStore.prune (1-min rows past 7 days, 1-hour rows past 90 days)
 *
 * Each server of a fleet writes rows under its own `node`, so writers never
 * touch each other's rows; every query sums over the nodes, which is what
 * makes a query on a shared PostgreSQL the fleet's view.
 */

/** What a series counts: a user's traffic (server) or one path's (client). */
export type SeriesKind = 'user' | 'path';

/** Bucket width in seconds: 1-minute and 1-hour points. */
export type Resolution = 60 | 3600;

/** The widths a batch writes, finest first. */
export const RESOLUTIONS: readonly Resolution[] = [60, 3600];

/** The bucket of width `resolution` that holds time `at` (ms since the epoch): its start, ms. */
export function bucketOf(at: number, resolution: Resolution): number {
  const w = resolution * 1000;
  return Math.floor(at / w) * w;
}

/** Bytes to add to one bucket of one series. */
export interface HistoryRow {
  readonly kind: SeriesKind;
  /** The user's id, or the path's name. */
  readonly id: string;
  readonly resolution: Resolution;
  /** Bucket start, ms since the epoch (a multiple of resolution × 1000). */
  readonly bucket: number;
  readonly up: number;
  readonly down: number;
}

/**
 * Rows written together, at most once: the store records `id` in the same
 * transaction, and a batch whose id it already holds adds nothing. A flush
 * that failed after its commit (the answer lost) is retried with the same
 * batch, so it cannot count twice.
 */
export interface HistoryBatch {
  /** Unique per batch (a random UUID). */
  readonly id: string;
  /** The writing server's name in the fleet. */
  readonly node: string;
  /** When the batch was sealed, ms since the epoch (kept with the id, for pruning ids). */
  readonly at: number;
  /** At most one row per (kind, id, resolution, bucket), in key order (writers lock rows in one order). */
  readonly rows: readonly HistoryRow[];
}

/** One point of a queried series: the bucket's start and its bytes summed over every node. */
export interface HistoryPoint {
  /** Bucket start, ms since the epoch. */
  readonly at: number;
  readonly up: number;
  readonly down: number;
}

/** Cut-offs of {@link HistoryStore.prune}, ms since the epoch: what starts earlier goes. */
export interface PruneBefore {
  /** 1-minute buckets. */
  readonly minutes: number;
  /** 1-hour buckets. */
  readonly hours: number;
  /** Applied batch ids (only needed while a retry of theirs may still come). */
  readonly batches: number;
}

/**
 * Where the history lives: a part of the user store (`UserStore.history`).
 * Methods reject with StoreError (ClosedError once the store is closed).
 */
export interface HistoryStore {
  /** Adds the batch's rows in one transaction. False when this batch was applied before (nothing is added). */
  addBatch(batch: HistoryBatch): Promise<boolean>;
  /**
   * Points of one series with `from <= at < to`, in time order, summed over
   * nodes. Buckets without traffic are absent (the caller fills zeros).
   */
  series(kind: SeriesKind, id: string, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]>;
  /** Like series, summed over every series of `kind` too: the fleet's (or the server's) totals. */
  totals(kind: SeriesKind, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]>;
  /** Deletes what is older than the cut-offs; returns how many rows went. */
  prune(before: PruneBefore): Promise<number>;
}

/** What feeds the history (the server's user meters; the client's paths, later). */
export interface TrafficRecorder {
  /** Adds `up` and `down` bytes to series (kind, id) at `at` (ms since the epoch; @default now). */
  record(kind: SeriesKind, id: string, up: number, down: number, at?: number): void;
}
