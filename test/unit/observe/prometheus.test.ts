/**
 * The Prometheus exporter: what components register through the Metrics
 * seam comes out as valid text format 0.0.4 (read back with the strict
 * parser in test/helpers/prom-text.ts), collect callbacks are read at each
 * scrape, groups keep only today's members and at most maxLabelValues.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { MemoryMetrics, type Metrics } from '../../../src/core/metrics.js';
import { PrometheusMetrics } from '../../../src/observe/prometheus.js';
import { registerSupervisorMetrics } from '../../../src/paths/metrics.js';
import type { PathSupervisor } from '../../../src/paths/supervisor.js';
import { parsePromText, promValue, type PromFamily } from '../../helpers/prom-text.js';

const scrape = async (m: PrometheusMetrics): Promise<Map<string, PromFamily>> => parsePromText(await m.text());
const bare = (init: { maxLabelValues?: number } = {}): PrometheusMetrics => new PrometheusMetrics({ processMetrics: false, ...init });

describe('PrometheusMetrics', () => {
  it('reads collected counters and gauges at each scrape, with HELP and TYPE', async () => {
    const m = bare();
    let sent = 10;
    let open = 3;
    m.registerCounter('polytun_test_sent_bytes_total', { help: 'Bytes sent', collect: () => sent });
    m.registerGauge('polytun_test_open', { help: 'Open things', collect: () => open });
    let f = await scrape(m);
    assert.equal(f.get('polytun_test_sent_bytes_total')?.type, 'counter');
    assert.equal(f.get('polytun_test_sent_bytes_total')?.help, 'Bytes sent');
    assert.equal(f.get('polytun_test_open')?.type, 'gauge');
    assert.equal(promValue(f, 'polytun_test_sent_bytes_total'), 10);
    assert.equal(promValue(f, 'polytun_test_open'), 3);
    sent = 25_000_000_000; // past 2^32: a long-lived byte counter
    open = 0;
    f = await scrape(m);
    assert.equal(promValue(f, 'polytun_test_sent_bytes_total'), 25_000_000_000);
    assert.equal(promValue(f, 'polytun_test_open'), 0);
  });

  it('pushed counters add up and gauges keep the last value', async () => {
    const m = bare();
    const c = m.registerCounter('polytun_test_events_total');
    const g = m.registerGauge('polytun_test_level');
    c.increment();
    c.increment(4);
    g.set(7);
    g.set(-2.5);
    const f = await scrape(m);
    assert.equal(promValue(f, 'polytun_test_events_total'), 5);
    assert.equal(promValue(f, 'polytun_test_level'), -2.5);
  });

  it('writes histograms as cumulative buckets with +Inf, _sum and _count', async () => {
    const m = bare();
    const h = m.registerHistogram('polytun_test_delay_seconds', { help: 'Delays', buckets: [0.5, 1, 2] });
    for (const v of [0.1, 0.5, 0.7, 1.5, 3, 9]) h.observe(v);
    const text = await m.text();
    assert.match(text, /^# TYPE polytun_test_delay_seconds histogram$/m);
    const f = parsePromText(text); // also checks cumulativeness and +Inf == _count
    const bucket = (le: string): number | undefined => promValue(f, 'polytun_test_delay_seconds_bucket', { le });
    assert.deepEqual([bucket('0.5'), bucket('1'), bucket('2'), bucket('+Inf')], [2, 3, 4, 6]);
    assert.equal(promValue(f, 'polytun_test_delay_seconds_count'), 6);
    assert.ok(Math.abs((promValue(f, 'polytun_test_delay_seconds_sum') ?? 0) - 14.8) < 1e-9);
  });

  it('escapes label values and help text so they read back unchanged', async () => {
    const m = bare();
    const nasty = 'a\\b"c\nd{e}=,f';
    m.registerCounterGroup('polytun_test_user_bytes_total', { help: 'Per user\nsecond line \\ backslash', label: 'user', collect: () => ({ [nasty]: 5, plain: 6 }) });
    const text = await m.text();
    assert.ok(text.includes('user="a\\\\b\\"c\\nd{e}=,f"'), text);
    const f = parsePromText(text);
    assert.equal(promValue(f, 'polytun_test_user_bytes_total', { user: nasty }), 5);
    assert.equal(promValue(f, 'polytun_test_user_bytes_total', { user: 'plain' }), 6);
    assert.equal(f.get('polytun_test_user_bytes_total')?.help, 'Per user\nsecond line \\ backslash');
  });

  it('a collected group shows exactly the members its callback returns now', async () => {
    const m = bare();
    let members: Record<string, number> = { alice: 1, bob: 2 };
    m.registerGaugeGroup('polytun_test_user_sessions', { label: 'user', collect: () => members });
    let f = await scrape(m);
    assert.equal(f.get('polytun_test_user_sessions')?.samples.length, 2);
    members = { bob: 3 };
    f = await scrape(m);
    assert.deepEqual(f.get('polytun_test_user_sessions')?.samples.map((s) => [s.labels.user, s.value]), [['bob', 3]]);
  });

  it('pushed groups count per key', async () => {
    const m = bare();
    const g = m.registerCounterGroup('polytun_test_results_total', { label: 'result' });
    g.increment('ok');
    g.increment('ok', 2);
    g.increment('failed');
    const f = await scrape(m);
    assert.equal(promValue(f, 'polytun_test_results_total', { result: 'ok' }), 3);
    assert.equal(promValue(f, 'polytun_test_results_total', { result: 'failed' }), 1);
  });

  it('caps a group at maxLabelValues and says how many were left out', async () => {
    const m = bare({ maxLabelValues: 2 });
    m.registerCounterGroup('polytun_test_user_up_bytes_total', { label: 'user', collect: () => ({ u1: 1, u2: 2, u3: 3, u4: 4 }) });
    const pushed = m.registerGaugeGroup('polytun_test_pushed', { label: 'k' });
    for (const k of ['a', 'b', 'c', 'c', 'd']) pushed.set(k, 1);
    const f = await scrape(m);
    assert.deepEqual(f.get('polytun_test_user_up_bytes_total')?.samples.map((s) => s.labels.user), ['u1', 'u2']);
    assert.equal(promValue(f, 'polytun_metrics_series_dropped', { metric: 'polytun_test_user_up_bytes_total' }), 2);
    assert.deepEqual(f.get('polytun_test_pushed')?.samples.map((s) => s.labels.k), ['a', 'b']);
    assert.equal(promValue(f, 'polytun_metrics_series_dropped', { metric: 'polytun_test_pushed' }), 2);
  });

  it('refuses names outside the Prometheus grammar', () => {
    const m = bare();
    assert.throws(() => m.registerCounter('polytun-test-total'));
    assert.throws(() => m.registerGauge('9lives'));
    assert.throws(() => m.registerCounterGroup('polytun_test_total', { label: 'user-name' }));
    m.registerGauge('polytun:test_ok_name'); // colons are allowed in metric names
  });

  it('a second registration under a name replaces the first, as MemoryMetrics does', async () => {
    const m = bare();
    m.registerGauge('polytun_test_g', { collect: () => 1 });
    m.registerGauge('polytun_test_g', { collect: () => 2 });
    const f = await scrape(m);
    assert.equal(promValue(f, 'polytun_test_g'), 2);
  });

  it('a failing callback keeps its metric at the last good value, and the scrape goes on', async () => {
    const m = bare();
    let fail = false;
    let n = 5;
    const read = (): number => {
      if (fail) throw new Error('boom');
      return n;
    };
    m.registerGauge('polytun_test_broken', { collect: read });
    m.registerCounter('polytun_test_broken_total', { collect: read });
    m.registerCounter('polytun_test_negative_total', { collect: () => (fail ? -1 : n) });
    m.registerCounterGroup('polytun_test_group_total', { label: 'k', collect: () => ({ good: n, bad: fail ? NaN : n }) });
    m.registerGauge('polytun_test_fine', { collect: () => n });
    await scrape(m);
    fail = true;
    n = 9;
    const f = await scrape(m);
    assert.equal(promValue(f, 'polytun_test_fine'), 9);
    assert.equal(promValue(f, 'polytun_test_broken'), 5);
    assert.equal(promValue(f, 'polytun_test_broken_total'), 5);
    assert.equal(promValue(f, 'polytun_test_negative_total'), 5);
    assert.deepEqual(f.get('polytun_test_group_total')?.samples.map((s) => [s.labels.k, s.value]), [['good', 9]]);
  });

  it('adds the process metrics (CPU, RSS, open fds, event-loop lag) under polytun_', async () => {
    const f = await scrape(new PrometheusMetrics());
    assert.ok((promValue(f, 'polytun_process_resident_memory_bytes') ?? 0) > 1_000_000);
    assert.ok((promValue(f, 'polytun_process_cpu_seconds_total') ?? 0) > 0);
    assert.ok((promValue(f, 'polytun_process_open_fds') ?? 0) > 0);
    assert.equal(f.get('polytun_nodejs_eventloop_lag_seconds')?.type, 'gauge');
  });

  it('shows what a real component registers with the same values MemoryMetrics reads', async () => {
    const events = new EventEmitter();
    const sup = Object.assign(events, {
      session: { state: 'open', stats: { streams: 2, bytesSent: 1234, bytesReceived: 5678 } },
      status: () => ({ serverIndex: 1, since: new Date(Date.now() - 5000), resumes: 3, newSessions: 1, lastError: undefined }),
    }) as unknown as PathSupervisor;
    const prom = bare();
    const mem = new MemoryMetrics();
    for (const m of [prom, mem] as Metrics[]) registerSupervisorMetrics(sup, m);
    events.emit('reconnecting', 1500);
    const f = await scrape(prom);
    for (const s of mem.read()) {
      if (s.type === 'histogram') {
        assert.equal(promValue(f, `${s.name}_count`), s.count, s.name);
        for (const [le, n] of Object.entries(s.buckets ?? {})) assert.equal(promValue(f, `${s.name}_bucket`, { le }), n, `${s.name} le=${le}`);
      } else if (!s.name.endsWith('_age_seconds')) assert.equal(promValue(f, s.name, s.labels ?? {}), s.value, s.name);
    }
    assert.equal(promValue(f, 'polytun_client_session_sent_bytes_total'), 1234);
  });
});

describe('parsePromText (the tests\' parser) rejects what Prometheus rejects', () => {
  const bad = [
    'x 1', // no final newline
    'x\n',
    'x{a="1} 1\n',
    'x{a="\\q"} 1\n',
    'x{a=1} 1\n',
    'x{__a="1"} 1\n',
    'x 1.2.3\n',
    '1x 1\n',
    '# TYPE x bogus\n',
    '# TYPE x counter\nx -1\n',
    'x 1\ny 1\nx 2\n', // one family split in two
    'x{a="1"} 1\nx{a="1"} 2\n',
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
  ];
  for (const text of bad) it(`rejects ${JSON.stringify(text)}`, () => assert.throws(() => parsePromText(text)));
  it('accepts comments, blank lines, timestamps and NaN', () => {
    const f = parsePromText('# a comment\n\n# HELP x X\n# TYPE x gauge\nx{a="b",} NaN 1700000000000\n');
    assert.ok(Number.isNaN(promValue(f, 'x', { a: 'b' })));
  });
});
