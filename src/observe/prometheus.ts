/**
 * The Prometheus exporter: a {@link Metrics} whose registrations become
 * prom-client metrics in a registry of its own (no global registry), read
 * in the text exposition format 0.0.4 by `GET /metrics` (cli/metrics-server.ts).
 *
 * prom-client does the format (HELP/TYPE lines, cumulative `_bucket{le=…}`
 * with `+Inf`, `_sum`, `_count`, escaping of help text and label values) and
 * refuses names outside `[a-zA-Z_:][a-zA-Z0-9_:]*` at registration; its
 * default metrics add the process's CPU, memory, open fds, event-loop lag
 * and GC under `polytun_`. What this file adds is the seam's semantics:
 *
 * - `collect` callbacks are read at scrape time, as MemoryMetrics reads them:
 *   a collected counter is reset and set to the owner's running total, a
 *   collected group keeps exactly the members the callback returns now (a
 *   user whose meter was dropped disappears instead of sticking);
 * - a second registration under one name replaces the first (a restarted
 *   component), where prom-client would throw;
 * - a group keeps at most `maxLabelValues` members (per-user metrics grow
 *   with the users); the rest are left out and counted per metric in
 *   `polytun_metrics_series_dropped`, so a thousand users cannot blow up a
 *   scrape or Prometheus's memory;
 * - a callback that throws or returns a value the metric cannot take (not
 *   finite; negative for a counter) is logged once and leaves that metric at
 *   its last good value (a group: without the bad members), instead of
 *   failing the whole scrape.
 */
import { Counter as PromCounter, Gauge as PromGauge, Histogram as PromHistogram, Registry, collectDefaultMetrics } from 'prom-client';
import { toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Collected, Counter, Gauge, GroupOptions, Histogram, HistogramOptions, Metrics } from '../core/metrics.js';

/** Options of {@link PrometheusMetrics}. */
export interface PrometheusMetricsInit {
  /** Members per group at most; the rest are left out (and counted). @default 1000 */
  maxLabelValues?: number;
  /** Add prom-client's process and Node.js metrics (CPU, RSS, fds, event-loop lag, GC, heap) as `polytun_…`. @default true */
  processMetrics?: boolean;
  /** For callbacks that fail at scrape time. @default nullLogger */
  logger?: Logger;
}

/** Default histogram buckets, as MemoryMetrics has them (seconds-scale durations). */
const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The content type of {@link PrometheusMetrics.text}: the text format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export class PrometheusMetrics implements Metrics {
  private readonly registry = new Registry();
  /** The exporter's own metrics, read after `registry` so they see this scrape's groups. */
  private readonly meta = new Registry();
  private readonly maxLabelValues: number;
  private readonly log: Logger;
  /** Members left out at the last scrape (collected groups) or since start (pushed groups), by metric name. */
  private readonly dropped = new Map<string, number>();
  /** Metrics whose callback failed: logged once each, not at every scrape. */
  private readonly failing = new Set<string>();

  constructor(init: PrometheusMetricsInit = {}) {
    this.maxLabelValues = init.maxLabelValues ?? 1000;
    this.log = init.logger ?? nullLogger;
    if (init.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'polytun_' });
    const dropped = this.dropped;
    new PromGauge({
      name: 'polytun_metrics_series_dropped',
      help: 'Label values (e.g. users) a metric had beyond metrics.maxLabelValues, left out of the scrape',
      labelNames: ['metric'],
      registers: [this.meta],
      collect() {
        this.reset();
        for (const [metric, n] of dropped) this.set({ metric }, n);
      },
    });
  }

  /** Everything registered, in the text exposition format ({@link PROMETHEUS_CONTENT_TYPE}); collect callbacks run now. */
  async text(): Promise<string> {
    const main = await this.registry.metrics();
    return `${main}\n${await this.meta.metrics()}`;
  }

  registerCounter(name: string, opts: Collected<number> = {}): Counter {
    const read = this.reader(name, opts.collect, true);
    const c = new PromCounter({
      ...this.base(name, opts.help),
      ...(read && {
        collect(this: PromCounter) {
          const v = read();
          if (v === undefined) return; // keeps its last good value: a drop to 0 would read as a counter reset
          this.reset();
          this.inc(v);
        },
      }),
    });
    return { increment: (by = 1) => c.inc(by) };
  }

  registerGauge(name: string, opts: Collected<number> = {}): Gauge {
    const read = this.reader(name, opts.collect, false);
    const g = new PromGauge({
      ...this.base(name, opts.help),
      ...(read && {
        collect(this: PromGauge) {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      }),
    });
    return { set: (value) => g.set(value) };
  }

  registerHistogram(name: string, opts: HistogramOptions = {}): Histogram {
    const h = new PromHistogram({ ...this.base(name, opts.help), buckets: [...(opts.buckets ?? DEFAULT_BUCKETS)] });
    return { observe: (value) => h.observe(value) };
  }

  registerCounterGroup(name: string, opts: GroupOptions<number>): { increment(key: string, by?: number): void } {
    const { label } = opts;
    const members = this.members(name, opts, true);
    const c = new PromCounter({
      ...this.base(name, opts.help),
      labelNames: [label],
      ...(members && {
        collect(this: PromCounter) {
          this.reset();
          for (const [k, v] of members()) this.inc({ [label]: k }, v);
        },
      }),
    });
    const admit = this.admission(name);
    return { increment: (key, by = 1) => void (admit(key) && c.inc({ [label]: key }, by)) };
  }

  registerGaugeGroup(name: string, opts: GroupOptions<number>): { set(key: string, value: number): void } {
    const { label } = opts;
    const members = this.members(name, opts, false);
    const g = new PromGauge({
      ...this.base(name, opts.help),
      labelNames: [label],
      ...(members && {
        collect(this: PromGauge) {
          this.reset();
          for (const [k, v] of members()) this.set({ [label]: k }, v);
        },
      }),
    });
    const admit = this.admission(name);
    return { set: (key, value) => void (admit(key) && g.set({ [label]: key }, value)) };
  }

  /** Name, help and registry of a new metric; an earlier one under `name` is dropped (the seam's replace semantics). */
  private base(name: string, help: string | undefined): { name: string; help: string; registers: Registry[] } {
    this.registry.removeSingleMetric(name);
    this.dropped.delete(name);
    this.failing.delete(name);
    return { name, help: help ?? name, registers: [this.registry] };
  }

  /** `collect` guarded: a throw or a value a counter cannot take reads as "no sample", logged once. */
  private reader(name: string, collect: (() => number) | undefined, counter: boolean): (() => number | undefined) | undefined {
    if (!collect) return undefined;
    return () => {
      const v = this.guard(name, collect);
      if (v === undefined) return undefined;
      return this.valid(name, v, counter) ? v : undefined;
    };
  }

  /** A group's collected members, capped, invalid values left out. */
  private members(name: string, opts: GroupOptions<number>, counter: boolean): (() => [string, number][]) | undefined {
    const { collect } = opts;
    if (!collect) return undefined;
    return () => {
      const all = Object.entries(this.guard(name, collect) ?? {}).filter(([, v]) => this.valid(name, v, counter));
      // Object order is the owner's insertion order, so the same members keep their series from scrape to scrape.
      const over = all.length - this.maxLabelValues;
      if (over > 0) this.dropped.set(name, over);
      else this.dropped.delete(name);
      return over > 0 ? all.slice(0, this.maxLabelValues) : all;
    };
  }

  /** For pushed groups: the first `maxLabelValues` keys get series; later keys are ignored and counted (up to as many again). */
  private admission(name: string): (key: string) => boolean {
    const keys = new Set<string>();
    const refused = new Set<string>();
    return (key) => {
      if (keys.has(key)) return true;
      if (keys.size < this.maxLabelValues) {
        keys.add(key);
        return true;
      }
      if (refused.size < this.maxLabelValues && !refused.has(key)) {
        refused.add(key);
        this.dropped.set(name, refused.size);
      }
      return false;
    };
  }

  private guard<T>(name: string, collect: () => T): T | undefined {
    try {
      return collect();
    } catch (err) {
      this.once(name, { err: toError(err).message }, 'metrics: a collect callback failed; the metric is left out of this scrape');
      return undefined;
    }
  }

  private valid(name: string, v: number, counter: boolean): boolean {
    if (Number.isFinite(v) && !(counter && v < 0)) return true;
    this.once(name, { value: v }, 'metrics: a collect callback returned a value the metric cannot take; left out');
    return false;
  }

  private once(name: string, fields: Record<string, unknown>, msg: string): void {
    if (this.failing.has(name)) return;
    this.failing.add(name);
    this.log.warn({ metric: name, ...fields }, msg);
  }
}
