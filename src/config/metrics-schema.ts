/**
 * The `metrics:` section of both roles: the Prometheus endpoint. Every key
 * has a flag or a default; schema.ts plugs the section in.
 *
 *   metrics:
 *     listen: 127.0.0.1:9464     # --metrics HOST:PORT; serves GET /metrics; off when absent
 *     allowRemote: false         # --metrics-allow-remote; a non-loopback listen is refused without it
 *     maxLabelValues: 1000       # per metric, e.g. users of the per-user counters; the rest are left out
 */
import { bool, int, object, optional, withDefault } from './check.js';
import { hostPort, type HostPort } from './values.js';

/** `metrics:` with every key present. */
export interface MetricsConfig {
  /** Serve `GET /metrics` in the Prometheus text format here (`--metrics HOST:PORT`); undefined = off. Loopback only unless `allowRemote`. */
  listen: HostPort | undefined;
  /** Let `listen` be a non-loopback address (`--metrics-allow-remote`): the metrics name users, so this is a choice, not a default. @default false */
  allowRemote: boolean;
  /** Series per metric at most (the per-user metrics have one per user); the rest are left out and counted in `polytun_metrics_series_dropped`. @default 1000 */
  maxLabelValues: number;
}

/** Defaults of `metrics:`. */
export const METRICS_DEFAULTS: MetricsConfig = { listen: undefined, allowRemote: false, maxLabelValues: 1000 };

/** The `metrics:` prop of both shapes. */
export const metricsProp = withDefault(
  object({
    listen: optional(hostPort(true)),
    allowRemote: withDefault(bool, () => METRICS_DEFAULTS.allowRemote),
    maxLabelValues: withDefault(int(1, 1_000_000), () => METRICS_DEFAULTS.maxLabelValues),
  }),
  () => ({ ...METRICS_DEFAULTS }),
);
