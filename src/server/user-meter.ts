/**
 * Per-user traffic accounting for the gateway: every proxied byte of a
 * user's sessions lands in that user's meter (the proxy's shared counters),
 * and the meters are flushed to the user store in one batch every few
 * seconds and at shutdown.
 *
 *   relay data ──tally──▶ meter.counters.bytesUp/Down (setter)
 *                              │ pending += n, unseen += n ──▶ onBytes(userId)  (quota check)
 *   every flushMs ─────────────┴─▶ store.addTraffic([{ userId, up, down }…])
 *                              │    failure: the batch goes back to pending
 *                              └─▶ history.record('user', userId, up, down, now)   (bytes since the last flush)
 *
 * The history gets each byte once, at the flush after it was counted,
 * whether the store write then works or not: it keeps (and retries) its own
 * batches, and a failed addTraffic batch coming back to pending must not
 * reach it twice. So the history has its own tally (historyUp/Down).
 *
 * `unseen` is what this server counted that the cached user's own counters
 * do not include yet: the user cache refreshes a user's counters only when
 * the user changes (or crosses its quota in the store), so the live total
 * of a user is `cached bytesUp + bytesDown + unseen`.
 *
 * Metrics (when `metrics` is given) are read from these fields when
 * collected: per user (labelled by user id, so at most one series per user
 * with a live meter; a user's series restarts at 0 after its meter was
 * dropped, which Prometheus reads as a counter reset), and the proxy's
 * counters summed over every user. That sum adds the counters of dropped
 * meters (`retired`), so it never goes back; a meter is dropped only once
 * its connections, reverse listeners and UDP flows are closed, so nothing
 * but late bytes (handled in `added`) can still move its counters.
 */
import type { Logger } from '../core/logger.js';
import { toError } from '../core/errors.js';
import { nullMetrics, type Metrics } from '../core/metrics.js';
import type { TrafficRecorder } from '../store/history-types.js';
import type { UserStore } from '../store/types.js';
import { addProxyCounters, createProxyCounters, registerProxyMetrics, type ProxyCounters } from './proxy-counters.js';

/** One user's meter. */
export interface UserMeter {
  readonly userId: string;
  /** Pass as `ProxyServerInit.counters` for every session of the user. */
  readonly counters: ProxyCounters;
  /** Bytes counted and not yet handed to the store. */
  pendingUp: number;
  pendingDown: number;
  /** Bytes in a store write that has not finished. */
  inflight: number;
  /** Bytes counted and not yet handed to the history. */
  historyUp: number;
  historyDown: number;
  /** Bytes counted here that the cached user's counters do not include. */
  unseen: number;
  /** Live sessions using this meter; at 0 with nothing pending, a flush drops the meter. */
  refs: number;
}

/** Options of {@link UserMeters}. */
export interface UserMetersInit {
  readonly store: UserStore;
  readonly logger: Logger;
  /** Called after bytes were added to a user's meter (cheap: it runs per relayed chunk). */
  readonly onBytes: (meter: UserMeter) => void;
  /** Flush period. @default 10000 */
  readonly flushMs?: number;
  /** While flushes keep failing, the warning is repeated at most this often. @default 60000 */
  readonly warnEveryMs?: number;
  /** Clock in ms. @default Date.now */
  readonly now?: () => number;
  /** Where to register the per-user and the server-wide proxy metrics (see the file comment). @default nullMetrics */
  readonly metrics?: Metrics;
  /** Gets every user's bytes at each flush (the traffic history). @default none */
  readonly history?: TrafficRecorder;
}

/** The state of a run of failed flushes. */
interface Failing {
  since: number;
  failures: number;
  lastWarn: number;
}

/** The meters of every user with traffic, and their flushing. */
export class UserMeters {
  private readonly meters = new Map<string, UserMeter>();
  private readonly timer: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  /** Set while flushes fail (a full disk, a database that is down). */
  private failing: Failing | undefined;
  /** The counters of dropped meters (for the server-wide totals). */
  private readonly retired = createProxyCounters();

  constructor(private readonly init: UserMetersInit) {
    this.timer = setInterval(() => void this.flush(), init.flushMs ?? 10_000);
    this.timer.unref();
    this.registerMetrics(init.metrics ?? nullMetrics);
  }

  /** The proxy counters of every user since start: the dropped meters' plus the live ones'. */
  totals(): ProxyCounters {
    const t = createProxyCounters();
    addProxyCounters(t, this.retired);
    for (const m of this.meters.values()) addProxyCounters(t, m.counters);
    return t;
  }

  private registerMetrics(metrics: Metrics): void {
    registerProxyMetrics(metrics, () => this.totals());
    const perUser = (read: (m: UserMeter) => number) => (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const [id, m] of this.meters) out[id] = read(m);
      return out;
    };
    metrics.registerCounterGroup('polytun_gateway_user_up_bytes_total', { help: "Payload bytes from a user's clients to targets (since its meter was created)", label: 'user', collect: perUser((m) => m.counters.bytesUp) });
    metrics.registerCounterGroup('polytun_gateway_user_down_bytes_total', { help: "Payload bytes from targets to a user's clients (since its meter was created)", label: 'user', collect: perUser((m) => m.counters.bytesDown) });
    metrics.registerGaugeGroup('polytun_gateway_user_sessions', { help: 'Live sessions (and mtt connections) of a user', label: 'user', collect: perUser((m) => m.refs) });
    metrics.registerGauge('polytun_gateway_traffic_unflushed_bytes', {
      help: 'Counted traffic not yet written to the user store (pending and in flight)',
      collect: () => {
        let n = 0;
        for (const m of this.meters.values()) n += m.pendingUp + m.pendingDown + m.inflight;
        return n;
      },
    });
    metrics.registerGauge('polytun_gateway_traffic_failed_flushes', { help: 'Failed traffic flushes in the current run of failures (0: the last flush worked)', collect: () => this.failing?.failures ?? 0 });
  }

  /** The meter of `userId`, created on first use. */
  meterFor(userId: string): UserMeter {
    let m = this.meters.get(userId);
    if (m === undefined) {
      m = this.create(userId);
      this.meters.set(userId, m);
    }
    return m;
  }

  /** The meter of `userId` if it has one. */
  get(userId: string): UserMeter | undefined {
    return this.meters.get(userId);
  }

  /**
   * Writes every pending count to the store in one batch. Flushes run one
   * after another; the promise settles when this one is done and never
   * rejects (a failed batch is kept for the next flush and logged).
   */
  flush(): Promise<void> {
    this.chain = this.chain.then(() => this.flushOnce());
    return this.chain;
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private create(userId: string): UserMeter {
    const counters = createProxyCounters();
    const meter: UserMeter = { userId, counters, pendingUp: 0, pendingDown: 0, inflight: 0, historyUp: 0, historyDown: 0, unseen: 0, refs: 0 };
    let up = 0;
    let down = 0;
    // The proxy only ever adds to these two fields (`shared[key] += n`), so a
    // setter sees each increment without a hook in the relay's hot path.
    const added = (n: number, key: 'bytesUp' | 'bytesDown'): void => {
      meter.unseen += n;
      const live = this.meters.get(userId);
      if (live === undefined) {
        // Back from dropped: its counters count as live again (but for `n`, counted in neither).
        this.meters.set(userId, meter);
        addProxyCounters(this.retired, counters, -1);
        this.retired[key] += n;
      } else if (live !== meter) {
        // Late bytes of a session whose meter a flush already dropped: hand them to the user's current meter.
        this.retired[key] += n;
        live.pendingUp += meter.pendingUp;
        live.pendingDown += meter.pendingDown;
        live.historyUp += meter.historyUp;
        live.historyDown += meter.historyDown;
        live.unseen += n;
        meter.pendingUp = 0;
        meter.pendingDown = 0;
        meter.historyUp = 0;
        meter.historyDown = 0;
      }
      this.init.onBytes(live ?? meter);
    };
    Object.defineProperties(counters, {
      bytesUp: {
        enumerable: true,
        get: () => up,
        set: (v: number) => {
          const n = v - up;
          up = v;
          meter.pendingUp += n;
          meter.historyUp += n;
          added(n, 'bytesUp');
        },
      },
      bytesDown: {
        enumerable: true,
        get: () => down,
        set: (v: number) => {
          const n = v - down;
          down = v;
          meter.pendingDown += n;
          meter.historyDown += n;
          added(n, 'bytesDown');
        },
      },
    });
    return meter;
  }

  private async flushOnce(): Promise<void> {
    const batch: { meter: UserMeter; up: number; down: number }[] = [];
    const now = this.init.now ?? Date.now;
    const at = now();
    for (const [id, m] of this.meters) {
      if (m.historyUp !== 0 || m.historyDown !== 0) {
        this.init.history?.record('user', id, m.historyUp, m.historyDown, at);
        m.historyUp = 0;
        m.historyDown = 0;
      }
      if (m.pendingUp === 0 && m.pendingDown === 0) {
        if (m.inflight === 0 && m.refs === 0 && closedDown(m.counters)) {
          this.meters.delete(id);
          addProxyCounters(this.retired, m.counters);
        }
        continue;
      }
      batch.push({ meter: m, up: m.pendingUp, down: m.pendingDown });
      m.inflight += m.pendingUp + m.pendingDown;
      m.pendingUp = 0;
      m.pendingDown = 0;
    }
    if (batch.length === 0) return;
    const bytes = batch.reduce((a, b) => a + b.up + b.down, 0);
    try {
      await this.init.store.addTraffic(batch.map((b) => ({ userId: b.meter.userId, up: b.up, down: b.down })));
      if (this.failing) {
        this.init.logger.info(
          { failedFlushes: this.failing.failures, seconds: Math.round((now() - this.failing.since) / 1000), bytes },
          'traffic flush to the user store works again; the bytes held back are saved',
        );
        this.failing = undefined;
      }
    } catch (err) {
      // Keep the bytes: they go out with the next flush.
      for (const b of batch) {
        b.meter.pendingUp += b.up;
        b.meter.pendingDown += b.down;
      }
      this.warnFailed(err, batch.length, bytes, now());
    } finally {
      for (const b of batch) b.meter.inflight -= b.up + b.down;
    }
  }

  /** The first failure of a run is logged at once; then one line per warnEveryMs while it lasts. */
  private warnFailed(err: unknown, users: number, heldBytes: number, t: number): void {
    const f = (this.failing ??= { since: t, failures: 0, lastWarn: -Infinity });
    f.failures++;
    if (t - f.lastWarn < (this.init.warnEveryMs ?? 60_000)) return;
    f.lastWarn = t;
    const ctx = { err: toError(err).message, users, heldBytes };
    if (f.failures === 1) this.init.logger.warn(ctx, 'traffic flush to the user store failed; the bytes are kept and retried at every flush');
    else this.init.logger.warn({ ...ctx, failedFlushes: f.failures, seconds: Math.round((t - f.since) / 1000) }, 'traffic flush to the user store still failing; the bytes are kept');
  }
}

/** Nothing of the meter's is still open (a relay, a reverse listener, a UDP flow could still count). */
function closedDown(c: ProxyCounters): boolean {
  return c.connectionsActive === 0 && c.bindsActive === 0 && c.udpFlowsActive === 0;
}
