/**
 * The --metrics endpoint: GET and HEAD /metrics answer the exporter's text
 * (read back with the strict parser), everything else is 404, a foreign Host
 * header is refused on loopback, and a non-loopback address is refused
 * unless allowed — in the config check and in the endpoint itself.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { ConfigValidationError, validateConfig } from '../../../src/config/schema.js';
import { metricsExport, startMetricsServer, type MetricsServer } from '../../../src/cli/metrics-server.js';
import { nullLogger } from '../../../src/core/logger.js';
import { nullMetrics } from '../../../src/core/metrics.js';
import { PROMETHEUS_CONTENT_TYPE, PrometheusMetrics } from '../../../src/observe/prometheus.js';
import { parsePromText, promValue } from '../../helpers/prom-text.js';

function get(port: number, path: string, opts: { method?: string; host?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { host: opts.host ?? `127.0.0.1:${port}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('startMetricsServer', () => {
  let server: MetricsServer;
  let scrapes = 0;
  before(async () => {
    const m = new PrometheusMetrics({ processMetrics: false });
    m.registerCounter('polytun_test_scrapes_total', { help: 'Scrapes', collect: () => ++scrapes });
    server = await startMetricsServer({ listen: { host: '127.0.0.1', port: 0 }, text: () => m.text(), contentType: PROMETHEUS_CONTENT_TYPE });
  });
  after(() => server.close());

  it('GET /metrics answers the text format, read fresh per scrape', async () => {
    const a = await get(server.address.port, '/metrics');
    const b = await get(server.address.port, '/metrics?x=1');
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(a.headers['access-control-allow-origin'], undefined);
    const va = promValue(parsePromText(a.body), 'polytun_test_scrapes_total') ?? 0;
    assert.equal(promValue(parsePromText(b.body), 'polytun_test_scrapes_total'), va + 1);
  });

  it('HEAD /metrics answers the headers only', async () => {
    const r = await get(server.address.port, '/metrics', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    assert.ok(Number(r.headers['content-length']) > 0);
  });

  it('everything else is 404', async () => {
    assert.equal((await get(server.address.port, '/')).status, 404);
    assert.equal((await get(server.address.port, '/metrics/x')).status, 404);
    assert.equal((await get(server.address.port, '/status')).status, 404);
    assert.equal((await get(server.address.port, '/metrics', { method: 'POST' })).status, 404);
  });

  it('a non-loopback Host header is refused (DNS rebinding)', async () => {
    assert.equal((await get(server.address.port, '/metrics', { host: 'evil.example' })).status, 403);
    assert.equal((await get(server.address.port, '/metrics', { host: `localhost:${server.address.port}` })).status, 200);
    assert.equal((await get(server.address.port, '/metrics', { host: `[::1]:${server.address.port}` })).status, 200);
  });

  it('refuses a non-loopback address unless allowed', async () => {
    const text = (): Promise<string> => Promise.resolve('');
    await assert.rejects(startMetricsServer({ listen: { host: '0.0.0.0', port: 0 }, text, contentType: 'text/plain' }), (err: unknown) => err instanceof ConfigError && /--metrics-allow-remote/.test(err.message));
    const open = await startMetricsServer({ listen: { host: '0.0.0.0', port: 0 }, text, contentType: 'text/plain', allowRemote: true });
    try {
      // Allowed off loopback, a scraper's own Host header (the server's IP) is fine.
      assert.equal((await get(open.address.port, '/metrics', { host: 'metrics.internal:9464' })).status, 200);
    } finally {
      await open.close();
    }
  });

  it('a busy port is a ConfigError naming --metrics', async () => {
    const e = metricsExport({ listen: { host: '127.0.0.1', port: server.address.port }, allowRemote: false, maxLabelValues: 10 }, nullLogger);
    await assert.rejects(e.listen(), (err: unknown) => err instanceof ConfigError && err.message.startsWith(`--metrics 127.0.0.1:${server.address.port}: address already in use`));
  });
});

describe('metricsExport and the metrics: config', () => {
  const link = 'polytun://BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc@vps.example:4433?pk=CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg#default';

  it('without metrics.listen every component gets nullMetrics and nothing listens', async () => {
    const cfg = validateConfig({ link }, 'client');
    assert.equal(cfg.metrics.listen, undefined);
    const e = metricsExport(cfg.metrics, nullLogger);
    assert.equal(e.metrics, nullMetrics);
    assert.equal(await e.listen(), undefined);
  });

  it('refuses a non-loopback metrics.listen without allowRemote, for both roles', () => {
    assert.throws(() => validateConfig({ link, metrics: { listen: '0.0.0.0:9464' } }, 'client'), (err: unknown) => err instanceof ConfigValidationError && /metrics\.allowRemote/.test(err.message));
    assert.throws(() => validateConfig({ listen: ['tcp://0.0.0.0:4433'], dataDir: '/x', metrics: { listen: '10.0.0.1:9464' } }, 'server'), ConfigValidationError);
    const ok = validateConfig({ listen: ['tcp://0.0.0.0:4433'], dataDir: '/x', metrics: { listen: '0.0.0.0:9464', allowRemote: true } }, 'server');
    assert.deepEqual(ok.metrics, { listen: { host: '0.0.0.0', port: 9464 }, allowRemote: true, maxLabelValues: 1000 });
  });
});
