/**
 * The session server's metrics from a real server: silent handshake drops
 * by reason (a probe, a replayed first message), and its sessions' stats
 * summed, closed sessions included.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { Endpoint } from '../../../src/carriers/types.js';
import { MemoryMetrics } from '../../../src/core/metrics.js';
import { MSG1_SIZE } from '../../../src/secure/handshake.js';
import { waitUntil } from '../../helpers/eventually.js';
import { echoStreams, makePair, readAll } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A TCP forwarder in front of `to` that keeps the first bytes each client sent. */
async function recordingForwarder(to: Endpoint, firstBytes: Buffer[]): Promise<Endpoint> {
  const socks = new Set<Socket>();
  const server = createServer((c) => {
    const up = connect(to.port, to.host);
    socks.add(c).add(up);
    let seen = Buffer.alloc(0);
    const record = (d: Buffer): void => {
      seen = Buffer.concat([seen, d]);
      if (seen.length < MSG1_SIZE) return;
      firstBytes.push(seen.subarray(0, MSG1_SIZE));
      c.off('data', record);
    };
    c.on('data', record);
    c.pipe(up).pipe(c);
    for (const s of [c, up]) s.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
}

function sendRaw(to: Endpoint, bytes: Buffer): void {
  const s = connect(to.port, to.host, () => s.write(bytes));
  s.on('error', () => undefined);
  cleanups.push(() => void s.destroy());
}

describe('session server metrics', () => {
  it('count silent handshake drops by reason: a probe, a replayed first message', async () => {
    const metrics = new MemoryMetrics();
    const first: Buffer[] = [];
    const p = await makePair({ server: { metrics }, via: (ep) => recordingForwarder(ep, first) });
    cleanups.push(() => p.close());
    assert.equal(first.length, 1, "the client's first message was recorded");
    sendRaw(p.listener.address, randomBytes(MSG1_SIZE));
    await waitUntil(() => metrics.value('polytun_server_handshake_drops_total', 'unauthenticated') === 1, 'the probe dropped');
    sendRaw(p.listener.address, first[0] as Buffer);
    await waitUntil(() => metrics.value('polytun_server_handshake_drops_total', 'replay') === 1, 'the replay dropped');
    assert.equal(metrics.value('polytun_server_handshakes_total', 'dropped'), 2);
    assert.equal(metrics.value('polytun_server_handshakes_total', 'accepted'), 1);
  });

  it("sum the sessions' stats, and keep a closed session's bytes", async () => {
    const metrics = new MemoryMetrics();
    const p = await makePair({ server: { metrics } });
    cleanups.push(() => p.close());
    echoStreams(await p.serverSession);
    const s = p.clientSession.openStream(Buffer.alloc(0));
    await waitUntil(() => metrics.value('polytun_server_streams') === 1, 'the stream counted');
    assert.equal(metrics.value('polytun_server_paths'), 1);
    assert.equal(metrics.value('polytun_server_detached_sessions'), 0);
    s.end(Buffer.alloc(5000, 7));
    assert.equal((await readAll(s)).length, 5000);
    const ss = await p.serverSession;
    const live = () => [metrics.value('polytun_server_session_bytes_total', 'sent'), metrics.value('polytun_server_session_bytes_total', 'received')];
    assert.deepEqual(live(), [ss.stats.bytesSent, ss.stats.bytesReceived]);
    assert.ok(ss.stats.bytesReceived >= 5000);
    const before = live();
    p.client.close();
    await waitUntil(() => metrics.value('polytun_server_sessions') === 0, 'the session closed');
    assert.deepEqual(live(), before, 'a closed session still counts');
    assert.equal(metrics.value('polytun_server_streams'), 0);
  });
});
