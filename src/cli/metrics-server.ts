/**
 * The Prometheus endpoint (`--metrics HOST:PORT`, both roles): `GET /metrics`
 * (and HEAD) answers the exporter's text; every other request is 404. Like
 * the status endpoint it binds loopback only unless `metrics.allowRemote`
 * says otherwise — the per-user metrics name users — and on loopback it
 * refuses a Host header that is not a loopback name, so a web page cannot
 * read it through DNS rebinding. No CORS headers are ever sent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, toError } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { nullMetrics, type Metrics } from '../core/metrics.js';
import type { MetricsConfig } from '../config/metrics-schema.js';
import { isLoopbackHost, type HostPort } from '../config/values.js';
import { PROMETHEUS_CONTENT_TYPE, PrometheusMetrics } from '../observe/prometheus.js';
import { listenOrExplain } from './listen-errors.js';
import { hostOfHeader } from './status-server.js';

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
export interface MetricsServer {
  /** The bound address (the real port when `listen.port` was 0). */
  readonly address: HostPort;
  /** Stops listening and closes open connections. Idempotent. */
  close(): Promise<void>;
}

function send(res: ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8', head = false): void {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(head ? undefined : body);
}

/**
 * Starts the metrics endpoint.
 * @throws ConfigError for a non-loopback address without `allowRemote`, or when it cannot bind (with the socket's errno for listen-errors.ts).
 */
export async function startMetricsServer(init: MetricsServerInit): Promise<MetricsServer> {
  const log = init.logger ?? nullLogger;
  const { host, port } = init.listen;
  const where = `--metrics ${formatHostPort(init.listen)}`;
  if (!init.allowRemote && !isLoopbackHost(host)) {
    throw new ConfigError(where, 'the metrics endpoint listens on loopback only (its metrics name users); add --metrics-allow-remote (metrics.allowRemote: true) to serve it on the network');
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const h = hostOfHeader(req.headers.host);
    if (!init.allowRemote && (h === undefined || !isLoopbackHost(h))) return send(res, 403, 'forbidden host\n');
    const path = (req.url ?? '').split('?')[0];
    const head = req.method === 'HEAD';
    if ((req.method !== 'GET' && !head) || path !== '/metrics') return send(res, 404, 'not found\n');
    send(res, 200, await init.text(), init.contentType, head);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err: toError(err) }, 'metrics endpoint: reading the metrics failed');
      if (!res.headersSent) send(res, 500, 'metrics unavailable\n');
      else res.destroy();
    });
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(Object.assign(new ConfigError(where, `cannot listen: ${err.message}`), { errno: (err as NodeJS.ErrnoException).code }));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.warn({ err }, 'metrics endpoint error'));
  const addr = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    address: { host: addr.address, port: addr.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
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
