/** The metrics seam: the null default, the in-memory implementation, and the client and server wiring. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryMetrics, nullMetrics } from '../../../src/core/metrics.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { makePair } from '../../helpers/session-pair.js';

describe('metrics', () => {
  it('nullMetrics takes every call and keeps nothing', () => {
    nullMetrics.registerCounter('a').increment(3);
    nullMetrics.registerGauge('b', { collect: () => 1 }).set(2);
    nullMetrics.registerHistogram('c').observe(0.1);
    nullMetrics.registerCounterGroup('d', { label: 'x' }).increment('k');
    nullMetrics.registerGaugeGroup('e', { label: 'x' }).set('k', 1);
  });

  it('MemoryMetrics: pushed values, collect callbacks read at read time, groups, histograms', () => {
    const m = new MemoryMetrics();
    m.registerCounter('c_total').increment(2);
    let live = 5;
    m.registerGauge('g', { collect: () => live });
    m.registerCounterGroup('h_total', { label: 'result', collect: () => ({ ok: 3, bad: 1 }) });
    const h = m.registerHistogram('d_seconds', { buckets: [1, 10] });
    h.observe(0.5);
    h.observe(5);
    assert.equal(m.value('c_total'), 2);
    assert.equal(m.value('g'), 5);
    live = 7;
    assert.equal(m.value('g'), 7, 'collected when read, not when registered');
    assert.equal(m.value('h_total', 'bad'), 1);
    const d = m.read().find((s) => s.name === 'd_seconds');
    assert.deepEqual({ count: d?.count, sum: d?.value, buckets: d?.buckets }, { count: 2, sum: 5.5, buckets: { '1': 1, '10': 2 } });
  });

  it('a client and a server register their counters and report live values', async () => {
    const serverMetrics = new MemoryMetrics();
    const clientMetrics = new MemoryMetrics();
    const p = await makePair({ server: { metrics: serverMetrics }, client: { metrics: clientMetrics } });
    try {
      assert.equal(serverMetrics.value('polytun_server_sessions'), 1);
      assert.equal(serverMetrics.value('polytun_server_handshakes_total', 'accepted'), 1);
      assert.equal(clientMetrics.value('polytun_client_session_open'), 1);
      assert.equal(clientMetrics.value('polytun_client_resumes_total'), 0);
      assert.equal(clientMetrics.value('polytun_client_new_sessions_total'), 0);
      p.clientSession.openStream(Buffer.from('x'));
      assert.equal(clientMetrics.value('polytun_client_streams'), 1);
      assert.equal(clientMetrics.value('polytun_client_session_sent_bytes_total'), p.clientSession.stats.bytesSent);
      const proxy = new ProxyClient({ session: () => p.client.session, metrics: clientMetrics });
      const a = proxy.udpAssociation();
      assert.equal(a.send({ host: '127.0.0.1', port: 9, kind: 'ipv4' }, Buffer.alloc(10)), true);
      assert.equal(clientMetrics.value('polytun_client_udp_datagrams_total', 'sent'), 1);
      assert.equal(clientMetrics.value('polytun_client_udp_bytes_total', 'sent'), 10);
      a.close();
      proxy.dispose();
    } finally {
      await p.close();
    }
  });
});
