// All sockets here go to 127.0.0.1 or ::1. Public-looking addresses appear only
// in policy checks, never in a connect() call.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, createServer, Socket } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { AbortedError, TimeoutError } from '../../../src/core/errors.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import type { DestinationPolicyInit } from '../../../src/server/policy.js';
import { EgressDialer, EgressError, SocksReply, interleaveFamilies, socksReplyFor } from '../../../src/server/egress.js';
import type { EgressConnect, EgressDialerInit, EgressResolver } from '../../../src/server/egress.js';

interface Echo {
  server: Server;
  port: number;
  connections: number;
  /** Resolves at the next accepted connection. */
  nextConnection(): Promise<void>;
  close(): Promise<void>;
}

async function echoServer(host = '127.0.0.1'): Promise<Echo> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy()); // a reset from a test's destroy() is expected here
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  const e: Echo = {
    server,
    port: (server.address() as AddressInfo).port,
    connections: 0,
    nextConnection: () => once(server, 'connection').then(() => undefined),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
  server.on('connection', () => e.connections++);
  return e;
}

/** A port that was just listening and is now closed, so connecting to it is refused. */
async function closedPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

/** Records every connect attempt; delegates to `impl` (default: the real net.connect). */
function spyConnect(impl: EgressConnect = (t) => netConnect({ host: t.host, port: t.port, family: t.family })) {
  const calls: { host: string; port: number; family: 4 | 6 }[] = [];
  const sockets: Socket[] = [];
  const connect: EgressConnect = (t) => {
    calls.push(t);
    const s = impl(t);
    sockets.push(s);
    return s;
  };
  return { calls, sockets, connect };
}

const resolverOf =
  (answers: Record<string, string[]>): EgressResolver =>
  async (host) => {
    const list = answers[host];
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return list.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

function dialer(policy: DestinationPolicyInit, init: Partial<EgressDialerInit> = {}): EgressDialer {
  return new EgressDialer({ policy: new DestinationPolicy({ interfaces: () => ({}), ...policy }), ...init });
}

async function rejectsEgress(p: Promise<unknown>, reply: number, reason?: RegExp): Promise<EgressError> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    return err instanceof EgressError;
  });
  const e = caught as EgressError;
  assert.equal(e.socksReply, reply, `${e.reason}`);
  assert.equal(e.code, 'ERR_EGRESS');
  if (reason) assert.match(e.reason, reason);
  return e;
}

async function roundTrip(s: Socket): Promise<string> {
  s.write('ping');
  const [chunk] = (await once(s, 'data')) as [Buffer];
  return chunk.toString();
}

const v4 = await echoServer('127.0.0.1');
const v6 = await echoServer('::1');
after(async () => {
  await v4.close();
  await v6.close();
});

describe('EgressDialer', () => {
  test('an explicit allow lets it reach a loopback echo server (IPv4, IPv6, mapped)', async () => {
    const spy = spyConnect();
    const d = dialer({ allow: ['127.0.0.1', '::1'] }, { connect: spy.connect });
    for (const host of ['127.0.0.1', '::1', '[::1]', '::ffff:127.0.0.1']) {
      const s = await d.dial({ host, port: host.includes('::1') ? v6.port : v4.port });
      assert.equal(await roundTrip(s), 'ping');
      assert.equal(s.listenerCount('error'), 0, 'the dialer leaves no listener behind');
      s.destroy();
    }
    assert.deepEqual(
      spy.calls.map((c) => `${c.host} v${c.family}`),
      ['127.0.0.1 v4', '::1 v6', '::1 v6', '127.0.0.1 v4'],
      'literals are dialed in normalised form',
    );
  });

  test('a denied literal fails with 0x02 and no connection attempt', async () => {
    const spy = spyConnect();
    const before = v4.connections;
    const e = await rejectsEgress(dialer({}, { connect: spy.connect }).dial({ host: '127.0.0.1', port: v4.port }), SocksReply.notAllowed, /loopback/);
    assert.equal(e.decision?.reason, 'loopback');
    assert.equal(spy.calls.length, 0);
    // The listener is the witness: an allowed dial after it is the first connection it sees.
    const seen = v4.nextConnection();
    const s = await dialer({ allow: ['127.0.0.1'] }).dial({ host: '127.0.0.1', port: v4.port });
    await seen;
    assert.equal(v4.connections, before + 1);
    s.destroy();
  });

  test('DNS rebinding: a name resolving to loopback is refused, unless loopback is allowed', async () => {
    const resolve = resolverOf({ 'rebind.attacker.test': ['127.0.0.1'] });
    const spy = spyConnect();
    const before = v4.connections;
    await rejectsEgress(
      dialer({}, { resolve, connect: spy.connect }).dial({ host: 'rebind.attacker.test', port: v4.port }),
      SocksReply.notAllowed,
      /loopback/,
    );
    assert.equal(spy.calls.length, 0);
    assert.equal(v4.connections, before);
    const s = await dialer({ allow: ['127.0.0.1'] }, { resolve }).dial({ host: 'rebind.attacker.test', port: v4.port });
    assert.equal(await roundTrip(s), 'ping');
    s.destroy();
  });

  test('only the allowed addresses of a mixed answer are dialed', async () => {
    const resolve = resolverOf({ 'mixed.test': ['127.0.0.2', '::1', '127.0.0.1', '10.0.0.1'] });
    const spy = spyConnect();
    const s = await dialer({ allow: ['127.0.0.1'] }, { resolve, connect: spy.connect }).dial({ host: 'mixed.test', port: v4.port });
    s.destroy();
    assert.deepEqual(spy.calls.map((c) => c.host), ['127.0.0.1']);
  });

  test('a name denied by rule is refused before resolution', async () => {
    let resolved = 0;
    const resolve: EgressResolver = async () => {
      resolved++;
      return [{ address: '127.0.0.1', family: 4 }];
    };
    await rejectsEgress(dialer({ allow: ['127.0.0.1'], deny: ['*.blocked.test'] }, { resolve }).dial({ host: 'x.blocked.test', port: v4.port }), SocksReply.notAllowed, /deny-rule/);
    assert.equal(resolved, 0);
  });

  test('a closed loopback port gives 0x05', async () => {
    const port = await closedPort();
    await rejectsEgress(dialer({ allow: ['127.0.0.1'] }).dial({ host: '127.0.0.1', port }), SocksReply.connectionRefused, /refused/);
  });

  test('an unresolvable name, or one with no address, gives 0x04', async () => {
    const d = dialer({}, { resolve: resolverOf({ 'empty.test': [] }) });
    const e = await rejectsEgress(d.dial({ host: 'nxdomain.test', port: 80 }), SocksReply.hostUnreachable, /resolve/);
    assert.equal((e.cause as { code?: string }).code, 'ENOTFOUND');
    await rejectsEgress(d.dial({ host: 'empty.test', port: 80 }), SocksReply.hostUnreachable, /no address/);
  });

  test('the default resolver works (localhost from the hosts file)', async () => {
    const s = await dialer({ allow: ['127.0.0.1', '::1'] }).dial({ host: 'localhost', port: v4.port }).catch(async (err: unknown) => {
      // localhost may list ::1 first; ::1 has its own echo server on another port, so retry there.
      if (err instanceof EgressError && err.socksReply === SocksReply.connectionRefused) {
        return dialer({ allow: ['::1'] }).dial({ host: 'localhost', port: v6.port });
      }
      throw err;
    });
    assert.equal(await roundTrip(s), 'ping');
    s.destroy();
    await rejectsEgress(dialer({}).dial({ host: 'localhost', port: v4.port }), SocksReply.notAllowed, /loopback/);
  });

  test('a connection that never completes times out with 0x04 and is destroyed', async () => {
    // An unconnected Socket never emits 'connect': a stand-in for a black hole that stays on this machine.
    const spy = spyConnect(() => new Socket());
    const d = dialer({ allow: ['127.0.0.1'] }, { connect: spy.connect, timeoutMs: 10_000 });
    const e = await rejectsEgress(d.dial({ host: '127.0.0.1', port: v4.port }, { timeoutMs: 30 }), SocksReply.hostUnreachable, /timeout/);
    assert.ok(e.cause instanceof TimeoutError);
    assert.equal(spy.sockets.length, 1);
    assert.ok(spy.sockets[0]?.destroyed);
  });

  test('a resolver that never answers times out with 0x04', async () => {
    const d = dialer({}, { resolve: () => new Promise<LookupAddress[]>(() => undefined), timeoutMs: 30 });
    await rejectsEgress(d.dial({ host: 'slow.test', port: 80 }), SocksReply.hostUnreachable, /timeout/);
  });

  test('abort: before the dial, during resolution and during connect', async () => {
    const spy = spyConnect(() => new Socket());
    const d = dialer({ allow: ['127.0.0.1'] }, { connect: spy.connect, resolve: () => new Promise<LookupAddress[]>(() => undefined) });
    await assert.rejects(d.dial({ host: '127.0.0.1', port: v4.port }, { signal: AbortSignal.abort() }), AbortedError);
    assert.equal(spy.calls.length, 0);

    const ac1 = new AbortController();
    const p1 = d.dial({ host: 'slow.test', port: 80 }, { signal: ac1.signal });
    ac1.abort(new Error('user went away'));
    await assert.rejects(p1, AbortedError);

    const ac2 = new AbortController();
    const p2 = d.dial({ host: '127.0.0.1', port: v4.port }, { signal: ac2.signal });
    assert.equal(spy.calls.length, 1);
    ac2.abort();
    await assert.rejects(p2, AbortedError);
    assert.ok(spy.sockets[0]?.destroyed);
  });

  test('happy eyeballs: IPv6 first; a refused attempt falls through to the next at once', async () => {
    const resolve = resolverOf({ 'dual.test': ['127.0.0.1', '::1'] });
    const spy = spyConnect();
    let port = await closedPort();
    while (port === v6.port) port = await closedPort(); // must be closed on ::1 too
    const d = dialer({ allow: ['127.0.0.1', '::1'] }, { resolve, connect: spy.connect, attemptDelayMs: 60_000 });
    await rejectsEgress(d.dial({ host: 'dual.test', port }), SocksReply.connectionRefused);
    assert.deepEqual(spy.calls.map((c) => c.host), ['::1', '127.0.0.1']);
    assert.ok(spy.sockets.every((s) => s.destroyed));
  });

  test('happy eyeballs: a stalled first attempt is overtaken after the attempt delay, then destroyed', async () => {
    const resolve = resolverOf({ 'dual.test': ['127.0.0.1', '::1'] });
    let first = true;
    const spy = spyConnect((t) => {
      if (first) {
        first = false;
        return new Socket(); // ::1 never answers
      }
      return netConnect({ host: t.host, port: t.port, family: t.family });
    });
    const d = dialer({ allow: ['127.0.0.1', '::1'] }, { resolve, connect: spy.connect, attemptDelayMs: 5 });
    const s = await d.dial({ host: 'dual.test', port: v4.port });
    assert.equal(await roundTrip(s), 'ping');
    s.destroy();
    assert.deepEqual(spy.calls.map((c) => c.host), ['::1', '127.0.0.1']);
    assert.ok(spy.sockets[0]?.destroyed, 'the loser is destroyed');
  });

  test('a connect function that throws counts as a failed attempt', async () => {
    const connect: EgressConnect = () => {
      throw Object.assign(new Error('no route'), { code: 'ENETUNREACH' });
    };
    await rejectsEgress(dialer({ allow: ['127.0.0.1'] }, { connect }).dial({ host: '127.0.0.1', port: 1 }), SocksReply.networkUnreachable);
  });
});

describe('egress helpers', () => {
  test('socksReplyFor maps errno codes', () => {
    const table: [string | undefined, number][] = [
      ['ECONNREFUSED', 0x05],
      ['ENETUNREACH', 0x03],
      ['EADDRNOTAVAIL', 0x03],
      ['EHOSTUNREACH', 0x04],
      ['ETIMEDOUT', 0x04],
      ['ENOTFOUND', 0x04],
      ['EAI_AGAIN', 0x04],
      ['ECONNRESET', 0x01],
      [undefined, 0x01],
    ];
    for (const [code, reply] of table) assert.equal(socksReplyFor(code === undefined ? new Error('x') : { code }), reply, code);
    assert.equal(socksReplyFor(null), 0x01);
  });

  test('interleaveFamilies: IPv6 first, then alternate, order kept within a family', () => {
    const a = (s: string) => ({ s, family: (s.startsWith('6') ? 6 : 4) as 4 | 6 });
    const out = interleaveFamilies(['4a', '4b', '4c', '6a', '6b'].map(a)).map((x) => x.s);
    assert.deepEqual(out, ['6a', '4a', '6b', '4b', '4c']);
    assert.deepEqual(interleaveFamilies([a('4a')]).map((x) => x.s), ['4a']);
  });
});
