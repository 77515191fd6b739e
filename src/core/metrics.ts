/**
 * The metrics seam (the shape of js-libp2p's `Metrics`): components register
 * counters, gauges and histograms by name; an exporter (Prometheus, the
 * dashboard — their own issue) implements {@link Metrics}. The default is
 * {@link nullMetrics}, which keeps nothing.
 *
 * Not on the per-byte path: the layers keep counting in their own plain
 * fields (session stats, proxy counters, user meters …) as they always did,
 * and register a `collect` callback that reads those fields when the metrics
 * are read. So a frame costs no extra call, closure or allocation whether
 * metrics are on or not. `increment`/`observe` are for events that are rare
 * next to the traffic (a handshake, a reconnect, a session's lifetime).
 *
 * Names follow Prometheus conventions: `polytun_<layer>_<what>_<unit>`,
 * counters ending in `_total`.
 */

export interface MetricOptions {
  /** One line saying what it counts. */
  help?: string;
}

/** A value that only goes up. */
export interface Counter {
  increment(by?: number): void;
}

/** A value that goes up and down. */
export interface Gauge {
  set(value: number): void;
}

/** A distribution (durations, sizes). */
export interface Histogram {
  observe(value: number): void;
}

/** Read at collection time instead of pushed: the owner keeps counting in its own field. */
export interface Collected<T> extends MetricOptions {
  collect?: () => T;
}

/** A family of values told apart by one label (e.g. handshakes by `result`). */
export interface GroupOptions<T> extends MetricOptions {
  /** The label's name, e.g. 'result'. */
  label: string;
  collect?: () => Readonly<Record<string, T>>;
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds of the buckets, ascending. */
  buckets?: readonly number[];
}

/** Where components register what they measure. */
export interface Metrics {
  registerCounter(name: string, opts?: Collected<number>): Counter;
  registerGauge(name: string, opts?: Collected<number>): Gauge;
  registerHistogram(name: string, opts?: HistogramOptions): Histogram;
  registerCounterGroup(name: string, opts: GroupOptions<number>): { increment(key: string, by?: number): void };
  registerGaugeGroup(name: string, opts: GroupOptions<number>): { set(key: string, value: number): void };
}

const noop = (): void => undefined;

/** Keeps nothing: the default wherever no exporter is configured. */
export const nullMetrics: Metrics = {
  registerCounter: () => ({ increment: noop }),
  registerGauge: () => ({ set: noop }),
  registerHistogram: () => ({ observe: noop }),
  registerCounterGroup: () => ({ increment: noop }),
  registerGaugeGroup: () => ({ set: noop }),
};

/** One value as read by {@link MemoryMetrics.read}. */
export interface MetricSample {
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  /** Label name → value, for a group member. */
  labels?: Record<string, string>;
  value: number;
  /** Histograms: how many observations, and per bucket upper bound the cumulative count. */
  count?: number;
  buckets?: Record<string, number>;
}

interface Entry {
  type: MetricSample['type'];
  read(): MetricSample[];
}

/** Default histogram buckets (seconds-scale durations). */
const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Keeps every metric in memory and reads them on demand (collect callbacks
 * run then): for tests, and the base an exporter formats from.
 */
export class MemoryMetrics implements Metrics {
  private readonly entries = new Map<string, Entry>();

  private add(name: string, entry: Entry): void {
    // A second registration under one name replaces the first (a restarted component).
    this.entries.set(name, entry);
  }

  registerCounter(name: string, opts: Collected<number> = {}): Counter {
    let v = 0;
    this.add(name, { type: 'counter', read: () => [{ name, type: 'counter', value: opts.collect ? opts.collect() : v }] });
    return { increment: (by = 1) => void (v += by) };
  }

  registerGauge(name: string, opts: Collected<number> = {}): Gauge {
    let v = 0;
    this.add(name, { type: 'gauge', read: () => [{ name, type: 'gauge', value: opts.collect ? opts.collect() : v }] });
    return { set: (value) => void (v = value) };
  }

  registerHistogram(name: string, opts: HistogramOptions = {}): Histogram {
    const bounds = [...(opts.buckets ?? DEFAULT_BUCKETS)];
    const counts = bounds.map(() => 0);
    let sum = 0;
    let count = 0;
    this.add(name, {
      type: 'histogram',
      read: () => [{ name, type: 'histogram', value: sum, count, buckets: Object.fromEntries(bounds.map((b, i) => [String(b), counts[i] as number])) }],
    });
    return {
      observe: (value) => {
        sum += value;
        count++;
        for (let i = 0; i < bounds.length; i++) if (value <= (bounds[i] as number)) counts[i] = (counts[i] as number) + 1;
      },
    };
  }

  private group(name: string, type: 'counter' | 'gauge', opts: GroupOptions<number>): Map<string, number> {
    const values = new Map<string, number>();
    this.add(name, {
      type,
      read: () => {
        const src = opts.collect ? Object.entries(opts.collect()) : [...values];
        return src.map(([k, value]) => ({ name, type, labels: { [opts.label]: k }, value }));
      },
    });
    return values;
  }

  registerCounterGroup(name: string, opts: GroupOptions<number>): { increment(key: string, by?: number): void } {
    const values = this.group(name, 'counter', opts);
    return { increment: (key, by = 1) => void values.set(key, (values.get(key) ?? 0) + by) };
  }

  registerGaugeGroup(name: string, opts: GroupOptions<number>): { set(key: string, value: number): void } {
    const values = this.group(name, 'gauge', opts);
    return { set: (key, value) => void values.set(key, value) };
  }

  /** Every metric's current value (collect callbacks run now). */
  read(): MetricSample[] {
    return [...this.entries.values()].flatMap((e) => e.read());
  }

  /** One metric's value (the first sample; of a group, the member with `label` = `key`). */
  value(name: string, key?: string): number | undefined {
    const samples = this.entries.get(name)?.read() ?? [];
    const s = key === undefined ? samples[0] : samples.find((x) => x.labels && Object.values(x.labels)[0] === key);
    return s?.value;
  }
}
