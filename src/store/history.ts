/**
 * TrafficHistory: per-series traffic over time, kept in the user store
 * (1-minute points for 7 days, 1-hour points for 90 days).
 *
 *   record(kind, id, up, down, at) ─▶ pending: one point per (series, minute), summed in memory
 *   every flushMs: pending ─seal─▶ batch { uuid, rows at 60 s and at 3600 s } ─▶ store.addBatch
 *                  failure: the SAME batch is retried first at the next flush (pending keeps growing meanwhile)
 *   every pruneMs (and once soon after start): store.prune(now − 7 d, now − 90 d)
 *
 * Why both widths are written by every batch instead of rolling minutes up
 * into hours later: the hour rows then equal the sum of their minute rows by
 * construction, in the same transaction, with no "which hours are done"
 * state to keep per server of a fleet, and a late batch (after an outage)
 * still lands in its hour. The price is a second upsert per point.
 *
 * Why a sealed batch is retried as it was: a flush can fail after its
 * commit (the answer lost with the connection). The batch's id is recorded
 * in the same transaction, so the retry of a batch that did commit adds
 * nothing; merging it back into pending would count it twice.
 *
 * Memory is bounded: at most `maxPoints` points are held (pending plus the
 * sealed batch). While the store fails (a full disk, a database that is
 * down), bytes of a series and minute already held still add up; bytes that
 * would need a new point are dropped, and counted: `stats()`, the metrics,
 * and a warning repeated at most every `warnEveryMs`, like the user meters.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { nullMetrics, type Metrics } from '../core/metrics.js';
import { RESOLUTIONS, bucketOf, type HistoryBatch, type HistoryPoint, type HistoryRow, type HistoryStore, type Resolution, type SeriesKind, type TrafficRecorder } from './history-types.js';
import { StoreError } from './types.js';

const DAY_MS = 86_400_000;

/** Options of {@link TrafficHistory}. */
export interface TrafficHistoryInit {
  /** Where points go (`UserStore.history`). */
  readonly store: HistoryStore;
  /** This server's name in a fleet sharing one database; its rows are kept apart from the others'. @default os.hostname() */
  readonly node?: string;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** Timers (flush, prune). @default realClock */
  readonly clock?: Clock;
  /** Wall time in ms since the epoch: bucket starts and prune cut-offs. @default Date.now */
  readonly now?: () => number;
  /** Pending points go to the store this often, ms. @default 30000 */
  readonly flushMs?: number;
  /** Old points are deleted this often, ms. @default 3600000 */
  readonly pruneMs?: number;
  /** 1-minute points are kept this long, ms. @default 7 days */
  readonly minuteRetentionMs?: number;
  /** 1-hour points are kept this long, ms. @default 90 days */
  readonly hourRetentionMs?: number;
  /** Most points held in memory (pending and unwritten). @default 100000 */
  readonly maxPoints?: number;
  /** While flushes keep failing, the warning is repeated at most this often, ms. @default 60000 */
  readonly warnEveryMs?: number;
  /** @default nullMetrics */
  readonly metrics?: Metrics;
}

/** Counters of {@link TrafficHistory.stats}. */
export interface TrafficHistoryStats {
  /** Points in memory: pending plus the sealed batch waiting for a retry. */
  readonly heldPoints: number;
  /** Failed flushes in the current run of failures (0: the last flush worked). */
  readonly failedFlushes: number;
  /** Points and bytes dropped since start because memory was full (the store failing that long). */
  readonly droppedPoints: number;
  readonly droppedBytes: number;
}

interface Pending {
  readonly kind: SeriesKind;
  readonly id: string;
  readonly bucket: number;
  up: number;
  down: number;
}

interface Failing {
  since: number;
  failures: number;
  lastWarn: number;
}

const KINDS: ReadonlySet<string> = new Set<SeriesKind>(['user', 'path']);
const MAX_ID = 256;

function checkQuery(from: number, to: number, resolution: Resolution): void {
  if (!RESOLUTIONS.includes(resolution)) throw new StoreError('ERR_STORE_INVALID', undefined, `history resolution must be one of ${RESOLUTIONS.join(', ')} seconds`);
  if (!Number.isFinite(from) || !Number.isFinite(to)) throw new StoreError('ERR_STORE_INVALID', undefined, 'history range: from and to must be ms since the epoch');
}

/** The rows of a batch: each minute point, and the hour points they add up to; in key order. */
function rowsOf(points: Iterable<Pending>): HistoryRow[] {
  const rows = new Map<string, { -readonly [K in keyof HistoryRow]: HistoryRow[K] }>();
  for (const p of points) {
    for (const resolution of RESOLUTIONS) {
      const bucket = bucketOf(p.bucket, resolution);
      const key = `${p.kind}\n${p.id}\n${resolution}\n${bucket}`;
      const r = rows.get(key);
      if (r === undefined) rows.set(key, { kind: p.kind, id: p.id, resolution, bucket, up: p.up, down: p.down });
      else {
        r.up += p.up;
        r.down += p.down;
      }
    }
  }
  const cmp = (a: HistoryRow, b: HistoryRow): number =>
    a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : a.resolution - b.resolution || a.bucket - b.bucket;
  return [...rows.values()].sort(cmp);
}

/** See the file comment. */
export class TrafficHistory implements TrafficRecorder {
  /** This server's name in the fleet. */
  readonly node: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly now: () => number;
  private readonly maxPoints: number;
  private pending = new Map<string, Pending>();
  /** The batch a failed flush left: written again, as it is, before anything newer. */
  private sealed: { batch: HistoryBatch; points: number; bytes: number } | undefined;
  private chain: Promise<void> = Promise.resolve();
  private failing: Failing | undefined;
  private droppedPoints = 0;
  private droppedBytes = 0;
  private lastDropWarn = -Infinity;
  private readonly timers: TimerHandle[];
  private closed = false;

  constructor(private readonly init: TrafficHistoryInit) {
    this.node = (init.node ?? hostname()).slice(0, MAX_ID) || 'node';
    this.log = init.logger ?? nullLogger;
    this.clock = init.clock ?? realClock;
    this.now = init.now ?? Date.now;
    this.maxPoints = init.maxPoints ?? 100_000;
    const flushMs = init.flushMs ?? 30_000;
    this.timers = [
      this.clock.setInterval(() => void this.flush(), flushMs),
      // A server restarted more often than pruneMs must still prune.
      this.clock.setTimeout(() => void this.prune(), flushMs),
      this.clock.setInterval(() => void this.prune(), init.pruneMs ?? 3_600_000),
    ];
    this.registerMetrics(init.metrics ?? nullMetrics);
  }

  private registerMetrics(m: Metrics): void {
    m.registerGauge('polytun_history_held_points', { help: 'Traffic history points in memory, not yet in the store', collect: () => this.stats().heldPoints });
    m.registerGauge('polytun_history_failed_flushes', { help: 'Failed traffic history flushes in the current run of failures (0: the last flush worked)', collect: () => this.failing?.failures ?? 0 });
    m.registerCounter('polytun_history_dropped_bytes_total', { help: 'Bytes left out of the traffic history because memory was full while the store failed', collect: () => this.droppedBytes });
  }

  stats(): TrafficHistoryStats {
    return { heldPoints: this.pending.size + (this.sealed?.points ?? 0), failedFlushes: this.failing?.failures ?? 0, droppedPoints: this.droppedPoints, droppedBytes: this.droppedBytes };
  }

  /**
   * Adds bytes to series (kind, id) in the minute of `at`. Cheap and
   * synchronous: the bytes reach the store at the next flush. Zero,
   * negative and non-finite counts are ignored.
   */
  record(kind: SeriesKind, id: string, up: number, down: number, at: number = this.now()): void {
    if (!KINDS.has(kind)) throw new StoreError('ERR_STORE_INVALID', undefined, `history series kind must be 'user' or 'path', not '${String(kind)}'`);
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID) throw new StoreError('ERR_STORE_INVALID', undefined, `history series id must be 1 to ${MAX_ID} characters`);
    const u = Number.isFinite(up) && up > 0 ? up : 0;
    const d = Number.isFinite(down) && down > 0 ? down : 0;
    if (u + d === 0) return;
    const bucket = bucketOf(at, 60);
    const key = `${kind}\n${id}\n${bucket}`;
    const p = this.pending.get(key);
    if (p !== undefined) {
      p.up += u;
      p.down += d;
      return;
    }
    if (this.closed || this.stats().heldPoints >= this.maxPoints) {
      this.dropped(u + d);
      return;
    }
    this.pending.set(key, { kind, id, bucket, up: u, down: d });
  }

  private dropped(bytes: number): void {
    this.droppedPoints++;
    this.droppedBytes += bytes;
    const t = this.now();
    if (t - this.lastDropWarn < (this.init.warnEveryMs ?? 60_000)) return;
    this.lastDropWarn = t;
    const why = this.closed ? 'the history is closed' : `${this.maxPoints} points are waiting for the store`;
    this.log.warn({ droppedPoints: this.droppedPoints, droppedBytes: this.droppedBytes, node: this.node }, `traffic history: dropping points (${why}); the graphs will miss this traffic, the user counters do not`);
  }

  /**
   * Writes what is pending (after the batch a failed flush left). Flushes
   * and prunes run one after another; the promise never rejects.
   */
  flush(): Promise<void> {
    this.chain = this.chain.then(() => this.flushOnce());
    return this.chain;
  }

  /** Deletes 1-minute points older than 7 days and 1-hour points older than 90 (the retentions). Never rejects. */
  prune(): Promise<void> {
    const t = this.now(); // the cut-offs of when it was asked, not of when its turn comes
    this.chain = this.chain.then(() => this.pruneOnce(t));
    return this.chain;
  }

  /** Stops the timers and writes what is pending (one try). Does not close the store. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return this.chain;
    for (const t of this.timers) this.clock.clear(t);
    await this.flush();
    this.closed = true;
    const held = this.stats().heldPoints;
    if (held > 0) this.log.warn({ heldPoints: held, node: this.node }, 'traffic history: closing with points the store did not take; they are lost');
  }

  /**
   * Points of one series, summed over the fleet, from the bucket holding
   * `from` to the last one starting before `to` (ms since the epoch). Empty
   * buckets are absent. Reads the store: what is still pending (at most
   * flushMs old) is not in it yet.
   */
  async series(kind: SeriesKind, id: string, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]> {
    checkQuery(from, to, resolution);
    return this.init.store.series(kind, id, bucketOf(from, resolution), to, resolution);
  }

  /** Every series of `kind` summed per bucket, over the fleet (one database, every server's rows); the range as in series. */
  async fleetTotals(from: number, to: number, resolution: Resolution, kind: SeriesKind = 'user'): Promise<HistoryPoint[]> {
    checkQuery(from, to, resolution);
    return this.init.store.totals(kind, bucketOf(from, resolution), to, resolution);
  }

  private seal(): void {
    let bytes = 0;
    for (const p of this.pending.values()) bytes += p.up + p.down;
    const batch: HistoryBatch = { id: randomUUID(), node: this.node, at: this.now(), rows: rowsOf(this.pending.values()) };
    this.sealed = { batch, points: this.pending.size, bytes };
    this.pending = new Map();
  }

  private async flushOnce(): Promise<void> {
    // At most twice: the batch a failure left, then what is pending.
    for (let i = 0; i < 2; i++) {
      if (this.sealed === undefined) {
        if (this.pending.size === 0) return;
        this.seal();
      }
      const s = this.sealed as NonNullable<typeof this.sealed>;
      try {
        const added = await this.init.store.addBatch(s.batch);
        if (!added) this.log.debug({ batch: s.batch.id }, 'traffic history: batch was already written (its commit outlived the error); not added again');
        this.sealed = undefined;
        if (this.failing) {
          this.log.info({ failedFlushes: this.failing.failures, seconds: Math.round((this.now() - this.failing.since) / 1000), node: this.node }, 'traffic history: writing to the store works again');
          this.failing = undefined;
        }
      } catch (err) {
        this.warnFailed(err, s.points, s.bytes);
        return;
      }
    }
  }

  private async pruneOnce(t: number): Promise<void> {
    const minutes = t - (this.init.minuteRetentionMs ?? 7 * DAY_MS);
    const hours = t - (this.init.hourRetentionMs ?? 90 * DAY_MS);
    try {
      // Batch ids only matter while a retry may come; a retry comes within a run of failures, which a warning reports.
      const n = await this.init.store.prune({ minutes, hours, batches: t - 2 * DAY_MS });
      if (n > 0) this.log.debug({ rows: n }, 'traffic history: pruned old points');
    } catch (err) {
      this.log.warn({ err: toError(err).message }, 'traffic history: pruning old points failed; tried again at the next prune');
    }
  }

  /** The first failure of a run is logged at once; then one line per warnEveryMs while it lasts. */
  private warnFailed(err: unknown, points: number, bytes: number): void {
    const t = this.now();
    const f = (this.failing ??= { since: t, failures: 0, lastWarn: -Infinity });
    f.failures++;
    if (t - f.lastWarn < (this.init.warnEveryMs ?? 60_000)) return;
    f.lastWarn = t;
    const ctx = { err: toError(err).message, points, bytes, heldPoints: this.stats().heldPoints, node: this.node };
    if (f.failures === 1) this.log.warn(ctx, 'traffic history: writing to the store failed; the points are kept (up to maxPoints) and retried at every flush');
    else this.log.warn({ ...ctx, failedFlushes: f.failures, seconds: Math.round((t - f.since) / 1000) }, 'traffic history: writing to the store still failing; the points are kept');
  }
}
