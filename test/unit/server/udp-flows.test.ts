// UDP relay on real dgram sockets. Flow sockets are bound to 127.0.0.1 / ::1
// and every datagram goes to a loopback echo server the test started.
import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { makeDestination, type Destination } from '../../../src/core/address.js';
import { decodeUdp, encodeUdp } from '../../../src/proxy/wire.js';
import { EgressDialer } from '../../../src/server/egress.js';
import { DestinationPolicy, type DestinationPolicyInit } from '../../../src/server/policy.js';
import { attachProxy, createProxyCounters, type ProxyCounters } from '../../../src/server/proxy-server.js';
import { UdpFlows, type UdpInit } from '../../../src/server/udp-flows.js';
import { makePair } from '../../helpers/session-pair.js';
import { waitUntil } from '../../helpers/eventually.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Echo {
  port: number;
  /** Source of every datagram received, in order. */
  from: RemoteInfo[];
  sock: UdpSocket;
}

/** A UDP echo server on loopback. */
async function udpEcho(type: 'udp4' | 'udp6' = 'udp4'): Promise<Echo> {
  const sock = createSocket({ type, ipv6Only: type === 'udp6' });
  const from: RemoteInfo[] = [];
  sock.on('message', (msg, rinfo) => {
    from.push(rinfo);
    sock.send(msg, rinfo.port, rinfo.address);
  });
  sock.bind(0, type === 'udp4' ? '127.0.0.1' : '::1');
  await once(sock, 'listening');
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { port: sock.address().port, from, sock };
}

interface Out {
  flow: number;
  src: Destination;
  data: string;
}

/** UdpFlows with a fake session: what it sends to the client lands in `out`. */
function flows(opts: { policy?: DestinationPolicyInit; udp?: UdpInit } = {}): { f: UdpFlows; counters: ProxyCounters; next(): Promise<Out>; out: Out[] } {
  const counters = createProxyCounters();
  const out: Out[] = [];
  let waiter: ((o: Out) => void) | undefined;
  const f = new UdpFlows({
    policy: new DestinationPolicy(opts.policy ?? { allow: ['127.0.0.1', '::1'] }),
    tally: (k, n = 1) => (counters[k] += n),
    send: (flow, payload) => {
      const { addr, data } = decodeUdp(payload);
      const o = { flow, src: addr, data: data.toString() };
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w(o);
      } else out.push(o);
      return true;
    },
    bindAddress4: '127.0.0.1',
    bindAddress6: '::1',
    ...opts.udp,
  });
  cleanups.push(() => f.close());
  const next = (): Promise<Out> => {
    const o = out.shift();
    return o ? Promise.resolve(o) : new Promise((r) => (waiter = r));
  };
  return { f, counters, next, out };
}

const dgram = (host: string, port: number, text: string): Buffer => encodeUdp(makeDestination(host, port), Buffer.from(text));

async function until(cond: () => boolean, what: string): Promise<void> {
  await waitUntil(cond, what);
}

describe('UDP flows', () => {
  it('round-trips through an echo server with the right source address, one socket per flow', async () => {
    const echo = await udpEcho();
    const { f, counters, next } = flows();
    f.handle(7, dgram('127.0.0.1', echo.port, 'ping-7'));
    assert.deepEqual(await next(), { flow: 7, src: makeDestination('127.0.0.1', echo.port), data: 'ping-7' });
    f.handle(8, dgram('127.0.0.1', echo.port, 'ping-8'));
    assert.deepEqual(await next(), { flow: 8, src: makeDestination('127.0.0.1', echo.port), data: 'ping-8' });
    f.handle(7, dgram('127.0.0.1', echo.port, 'again-7'));
    assert.equal((await next()).data, 'again-7');
    const [a, b, c] = echo.from;
    assert.equal(a?.port, c?.port, 'a flow keeps its source port');
    assert.notEqual(a?.port, b?.port, 'each flow has its own socket');
    assert.equal(f.size, 2);
    assert.equal(counters.udpDatagramsUp, 3);
    assert.equal(counters.udpDatagramsDown, 3);
    assert.equal(counters.bytesUp, 'ping-7ping-8again-7'.length);
    assert.equal(counters.bytesDown, counters.bytesUp);
  });

  it('relays IPv6 and domain destinations (resolved, then policy-checked)', async () => {
    const echo6 = await udpEcho('udp6');
    const echo4 = await udpEcho();
    const { f, next } = flows();
    f.handle(1, dgram('::1', echo6.port, 'six'));
    assert.deepEqual(await next(), { flow: 1, src: makeDestination('::1', echo6.port), data: 'six' });
    f.handle(1, dgram('localhost', echo4.port, 'named'));
    assert.deepEqual(await next(), { flow: 1, src: makeDestination('127.0.0.1', echo4.port), data: 'named' });
  });

  it('drops datagrams to destinations the policy refuses, and counts them', async () => {
    const denied = await udpEcho();
    const allowed = await udpEcho();
    const { f, counters, next } = flows({ policy: { allow: ['127.0.0.1'], deny: [`127.0.0.1:${denied.port}`] } });
    f.handle(1, dgram('127.0.0.1', denied.port, 'no'));
    f.handle(1, dgram('127.0.0.1', denied.port, 'no again')); // decided from the flow's cache
    f.handle(1, dgram('127.0.0.1', allowed.port, 'yes'));
    assert.equal((await next()).data, 'yes');
    assert.equal(counters.udpDenied, 2);
    assert.equal(counters.udpDatagramsUp, 1);
    assert.equal(denied.from.length, 0);

    const strict = flows({ policy: {} }); // the default policy: loopback refused
    strict.f.handle(1, dgram('127.0.0.1', allowed.port, 'loopback'));
    strict.f.handle(1, dgram('localhost', allowed.port, 'loopback by name'));
    await until(() => strict.counters.udpDenied === 2, 'both refused');
    assert.equal(strict.counters.udpDatagramsUp, 0);
  });

  it('refuses new flows past maxFlows until an idle flow is closed', async () => {
    const echo = await udpEcho();
    // Long enough for an echo to come back on a loaded machine before the flow idles out (a lost reply would hang next()).
    const { f, counters, next } = flows({ udp: { maxFlows: 2, idleTimeoutMs: 1000 } });
    f.handle(1, dgram('127.0.0.1', echo.port, 'one'));
    f.handle(2, dgram('127.0.0.1', echo.port, 'two'));
    f.handle(3, dgram('127.0.0.1', echo.port, 'three'));
    const got = [(await next()).data, (await next()).data].sort();
    assert.deepEqual(got, ['one', 'two']);
    assert.equal(counters.udpFlowsRefused, 1);
    assert.equal(counters.udpFlowsActive, 2);
    await until(() => f.size === 0, 'idle flows closed');
    assert.equal(counters.udpFlowsActive, 0);
    f.handle(3, dgram('127.0.0.1', echo.port, 'three, later'));
    assert.deepEqual(await next(), { flow: 3, src: makeDestination('127.0.0.1', echo.port), data: 'three, later' });
  });

  it('counts malformed datagrams and never throws', async () => {
    const { f, counters } = flows();
    const bad = [Buffer.alloc(0), Buffer.from([0x09, 1, 2]), Buffer.from([0x01, 127, 0]), Buffer.from([0x03, 0, 0, 80])];
    for (const b of bad) assert.doesNotThrow(() => f.handle(1, b));
    assert.equal(counters.udpMalformed, bad.length);
    assert.equal(f.size, 0, 'no flow is opened for garbage');
  });

  it('drops replies from addresses the flow never sent to', async () => {
    const echo = await udpEcho();
    const { f, counters, next, out } = flows();
    f.handle(1, dgram('127.0.0.1', echo.port, 'hello'));
    await next();
    const flowPort = echo.from[0]?.port ?? 0;
    const stranger = createSocket('udp4');
    cleanups.push(() => new Promise<void>((r) => stranger.close(() => r())));
    stranger.send('unsolicited', flowPort, '127.0.0.1');
    await until(() => counters.udpUnsolicited === 1, 'stranger counted');
    assert.equal(out.length, 0);
  });

  it('round-trips through a real session (client datagram lane → server → echo)', async () => {
    const echo = await udpEcho();
    const p = await makePair();
    cleanups.push(() => p.close());
    const ss = await p.serverSession;
    const policy = new DestinationPolicy({ allow: ['127.0.0.1'] });
    const proxy = attachProxy(ss, { egress: new EgressDialer({ policy }), policy, udp: { bindAddress4: '127.0.0.1' } });
    cleanups.push(() => proxy.close());
    const reply = new Promise<{ flow: number; payload: Buffer }>((r) => p.clientSession.onDatagram((flow, payload) => r({ flow, payload })));
    p.clientSession.sendDatagram(42, dgram('127.0.0.1', echo.port, 'over the tunnel'));
    const { flow, payload } = await reply;
    const { addr, data } = decodeUdp(payload);
    assert.equal(flow, 42);
    assert.deepEqual(addr, makeDestination('127.0.0.1', echo.port));
    assert.equal(data.toString(), 'over the tunnel');
    assert.equal(proxy.stats.udpFlowsActive, 1);
    const sessionClosed = once(ss, 'closed');
    p.client.close();
    await sessionClosed;
    assert.equal(proxy.stats.udpFlowsActive, 0, 'flows close with the session');
  });
});
