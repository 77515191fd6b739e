/**
 * The proxy's counters and the per-user traffic as metrics: a real session
 * relays through a real target with a UserMeters meter as its shared
 * counters, and the values come back through MemoryMetrics, summed over
 * users and per user id, also after a meter was dropped.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { makeDestination } from '../../../src/core/address.js';
import { nullLogger } from '../../../src/core/logger.js';
import { MemoryMetrics } from '../../../src/core/metrics.js';
import { encodeOpen } from '../../../src/proxy/wire.js';
import { EgressDialer } from '../../../src/server/egress.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { attachProxy } from '../../../src/server/proxy-server.js';
import { UserMeters } from '../../../src/server/user-meter.js';
import type { UserStore } from '../../../src/store/types.js';
import { waitUntil } from '../../helpers/eventually.js';
import { makePair } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function echoTarget(): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    sockets.add(sock);
    sock.on('error', () => sock.destroy());
    sock.pipe(sock);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return (server.address() as AddressInfo).port;
}

const store = { backend: 'sqlite', addTraffic: async () => undefined } as unknown as UserStore;

/** One user's session relaying `msg` to the echo target and back, through attachProxy with the user's meter. */
async function relayAs(meters: UserMeters, userId: string, port: number, msg: string): Promise<void> {
  const p = await makePair();
  cleanups.push(() => p.close());
  const policy = new DestinationPolicy({ allow: ['127.0.0.1'] });
  const meter = meters.meterFor(userId);
  meter.refs++;
  const proxy = attachProxy(await p.serverSession, { egress: new EgressDialer({ policy }), policy, counters: meter.counters });
  const s = p.clientSession.openStream(encodeOpen({ kind: 'connect', dest: makeDestination('127.0.0.1', port) }));
  const got: Buffer[] = [];
  s.on('data', (c: Buffer) => got.push(c));
  s.end(msg);
  await once(s, 'end');
  assert.equal(Buffer.concat(got).subarray(1).toString(), msg, 'a status byte, then the echo');
  await waitUntil(() => meter.counters.connectionsActive === 0, 'the relay closed');
  proxy.close();
  meter.refs--;
}

describe('proxy and per-user metrics', () => {
  it('report the relayed traffic summed over users and per user id; the sum survives a dropped meter', async () => {
    const metrics = new MemoryMetrics();
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: () => undefined, metrics });
    cleanups.push(() => meters.close());
    const port = await echoTarget();
    await relayAs(meters, 'u1', port, 'hello');
    await relayAs(meters, 'u2', port, 'bonjour!');
    assert.equal(metrics.value('polytun_proxy_bytes_total', 'up'), 13);
    assert.equal(metrics.value('polytun_proxy_bytes_total', 'down'), 13);
    assert.equal(metrics.value('polytun_proxy_connects_total'), 2);
    assert.equal(metrics.value('polytun_proxy_connections'), 0);
    assert.equal(metrics.value('polytun_gateway_user_up_bytes_total', 'u1'), 5);
    assert.equal(metrics.value('polytun_gateway_user_down_bytes_total', 'u2'), 8);
    assert.equal(metrics.value('polytun_gateway_traffic_unflushed_bytes'), 26);

    await meters.flush(); // written
    await meters.flush(); // nothing pending, no sessions: both meters dropped
    assert.equal(meters.get('u1'), undefined);
    assert.equal(metrics.value('polytun_gateway_user_up_bytes_total', 'u1'), undefined, 'no series for a user without a meter');
    assert.equal(metrics.value('polytun_gateway_traffic_unflushed_bytes'), 0);
    assert.equal(metrics.value('polytun_proxy_bytes_total', 'up'), 13, 'the dropped meters still count in the sum');
    assert.equal(metrics.value('polytun_proxy_connects_total'), 2);

    await relayAs(meters, 'u1', port, 'again');
    assert.equal(metrics.value('polytun_proxy_bytes_total', 'down'), 18);
    assert.equal(metrics.value('polytun_gateway_user_down_bytes_total', 'u1'), 5, 'a new meter starts at 0');
  });

  it('late bytes of a dropped meter are counted once in the sum', async () => {
    const metrics = new MemoryMetrics();
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: () => undefined, metrics });
    cleanups.push(() => meters.close());
    const old = meters.meterFor('a');
    old.counters.bytesUp += 10;
    await meters.flush();
    await meters.flush(); // dropped
    old.counters.bytesDown += 3; // back, as the user's meter
    assert.equal(meters.get('a'), old);
    assert.deepEqual([metrics.value('polytun_proxy_bytes_total', 'up'), metrics.value('polytun_proxy_bytes_total', 'down')], [10, 3]);
    await meters.flush();
    await meters.flush(); // dropped again
    const fresh = meters.meterFor('a');
    fresh.refs++;
    old.counters.bytesUp += 4; // late, while another meter is the user's
    fresh.counters.bytesUp += 1;
    assert.deepEqual([metrics.value('polytun_proxy_bytes_total', 'up'), metrics.value('polytun_proxy_bytes_total', 'down')], [15, 3]);
  });

  it('a meter with a connection still open is not dropped (its gauges would stick in the sum)', async () => {
    const metrics = new MemoryMetrics();
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: () => undefined, metrics });
    cleanups.push(() => meters.close());
    const m = meters.meterFor('a');
    m.counters.connectionsActive += 1;
    await meters.flush();
    assert.equal(meters.get('a'), m);
    assert.equal(metrics.value('polytun_proxy_connections'), 1);
    m.counters.connectionsActive -= 1;
    await meters.flush();
    assert.equal(meters.get('a'), undefined);
    assert.equal(metrics.value('polytun_proxy_connections'), 0);
  });
});
