/**
 * The Prometheus endpoint (`--metrics HOST:PORT`, both roles): `GET /metrics`
 * (and HEAD) answers the exporter's text; every other request is 404. Like
 * the status endpoint it binds loopback only unless `metrics.allowRemote`
 * says otherwise — the per-user metrics name users — and on loopback it
 * refuses a Host header that is not a loopback name, so a web page cannot
 * read it through DNS rebinding. No CORS headers are ever sent.
 */
import { formatHostPort } from '../core/address.js';
import type { Logger } from '../core/logger.js';
import { nullMetrics, type Metrics } from '../core/metrics.js';
import type { MetricsConfig } from '../config/metrics-schema.js';
import type { HostPort } from '../config/values.js';
import { PROMETHEUS_CONTENT_TYPE, PrometheusMetrics } from '../observe/prometheus.js';
import { listenOrExplain } from './listen-errors.js';
import { startLocalEndpoint, type LocalEndpoint } from './local-endpoint.js';

/** Options of {@link startMetricsServer}. */
export interface MetricsServerInit {
  /** Where to listen; port 0 picks a free one (see `address`). */
  listen: HostPort;
  /** The exposition text, read once per scrape (PrometheusMetrics.text). */
  text: () => Promise<string>;
  /** Its content type. */
  contentType: string;
  /** Allow a non-loopback listen address (`--metrics-allow-remote`). @default false */
  allowRemote?: boolean;
  /** @default nullLogger */
  logger?: Logger;
}

/** A running metrics endpoint. */
export type MetricsServer = LocalEndpoint;

/**
 * Starts the metrics endpoint.
 * @throws ConfigError for a non-loopback address without `allowRemote`, or when it cannot bind (with the socket's errno for listen-errors.ts).
 */
export function startMetricsServer(init: MetricsServerInit): Promise<MetricsServer> {
  return startLocalEndpoint({
    what: 'metrics',
    where: `--metrics ${formatHostPort(init.listen)}`,
    listen: init.listen,
    path: '/metrics',
    head: true,
    body: async () => ({ body: await init.text(), contentType: init.contentType }),
    ...(init.allowRemote !== undefined ? { allowRemote: init.allowRemote } : {}),
    refusal: ' (its metrics name users); add --metrics-allow-remote (metrics.allowRemote: true) to serve it on the network',
    ...(init.logger !== undefined ? { logger: init.logger } : {}),
  });
}

/** The one Metrics of a run and, with `--metrics`, its endpoint. */
export interface MetricsExport {
  /** What every component registers into: a PrometheusMetrics with `--metrics`, else nullMetrics. */
  readonly metrics: Metrics;
  /** Opens the endpoint (no-op without `--metrics`); a refused or busy address throws one ConfigError line naming `--metrics`. */
  listen(): Promise<MetricsServer | undefined>;
  /** Closes the endpoint if open. Idempotent. */
  close(): Promise<void>;
}

/** Creates the run's metrics from `metrics:`; the caller passes `.metrics` to every component, then calls `listen()`. */
export function metricsExport(cfg: MetricsConfig, logger: Logger): MetricsExport {
  const listenAt = cfg.listen;
  if (listenAt === undefined) return { metrics: nullMetrics, listen: () => Promise.resolve(undefined), close: () => Promise.resolve() };
  const exporter = new PrometheusMetrics({ maxLabelValues: cfg.maxLabelValues, logger });
  let server: MetricsServer | undefined;
  return {
    metrics: exporter,
    async listen() {
      server ??= await listenOrExplain(`--metrics ${formatHostPort(listenAt)}`, () =>
        startMetricsServer({ listen: listenAt, allowRemote: cfg.allowRemote, text: () => exporter.text(), contentType: PROMETHEUS_CONTENT_TYPE, logger }),
      );
      return server;
    },
    close: () => server?.close() ?? Promise.resolve(),
  };
}
