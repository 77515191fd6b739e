import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { formatHostPort, makeDestination, type Destination } from '../../../src/core/address.js';
import { ProxyClient, ProxyStatusError } from '../../../src/client/proxy-client.js';
import { ReverseForward } from '../../../src/client/reverse.js';
import type { Session } from '../../../src/session/session.js';
import { deadTcpEndpoint } from '../../helpers/net-fixtures.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';
import { fakeEgress, fakeEgressOnEverySession, rawConnect, recordingLogger, tcpEcho } from '../../helpers/fake-egress.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(): Promise<{ pair: Pair; proxy: ProxyClient; egress: ReturnType<typeof fakeEgressOnEverySession> }> {
  const pair = await makePair();
  const first = fakeEgress(await pair.serverSession);
  const egress = fakeEgressOnEverySession(pair.server);
  egress.all.unshift(first);
  const proxy = ProxyClient.forSessionClient(pair.client);
  cleanups.push(async () => {
    proxy.dispose();
    egress.close();
    await pair.close();
  });
  return { pair, proxy, egress };
}

/** Sends `msg` through the server-side listener at `at`, returns everything that came back. */
async function through(at: Destination, msg: string): Promise<string> {
  const { sock, reader } = await rawConnect(at.port, at.host);
  sock.end(msg);
  return (await reader.rest()).toString();
}

function reverse(proxy: ProxyClient, target: number, logger = recordingLogger()): ReverseForward {
  const r = new ReverseForward({ bind: { host: '127.0.0.1', port: 0 }, target: makeDestination('127.0.0.1', target), proxy, logger });
  cleanups.push(() => r.close());
  return r;
}

describe('ReverseForward', () => {
  it('a connection to the server-side port reaches the local target; several -R share one session', async () => {
    const { proxy, egress } = await setup();
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const greeter = net.createServer((s) => {
      s.resume(); // read (and drop) what comes, so the peer's FIN is seen
      s.end('hi from greeter');
    });
    await new Promise<void>((r) => greeter.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => greeter.close(() => r())));

    const log = recordingLogger();
    const r1 = reverse(proxy, echo.address.port, log);
    const r2 = reverse(proxy, (greeter.address() as net.AddressInfo).port);
    const [b1, b2] = await Promise.all([r1.start(), r2.start()]);
    assert.notEqual(b1.port, b2.port);
    assert.equal(egress.all[0]?.binds.length, 2);
    assert.ok(log.lines.some((l) => l.level === 'info' && l.msg?.includes(`server listening on ${formatHostPort(b1)}`)));

    const [a, b] = await Promise.all([through(b1, 'echo me'), through(b2, 'ignored')]);
    assert.equal(a, 'echo me');
    assert.equal(b, 'hi from greeter');
  });

  it('tells the server when the local target refuses (the server closes the peer)', async () => {
    const { proxy } = await setup();
    const dead = await deadTcpEndpoint();
    const log = recordingLogger();
    const r = reverse(proxy, dead.port, log);
    const bound = await r.start();
    assert.equal(await through(bound, 'anyone?'), '');
    assert.ok(log.lines.some((l) => l.msg?.includes(`cannot reach 127.0.0.1:${dead.port}`)));
  });

  it('reports a refused bind', async () => {
    const { proxy } = await setup();
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => taken.close(() => r())));
    const r = new ReverseForward({ bind: { host: '127.0.0.1', port: (taken.address() as net.AddressInfo).port }, target: makeDestination('127.0.0.1', 9), proxy });
    cleanups.push(() => r.close());
    await assert.rejects(r.start(), (err: unknown) => err instanceof ProxyStatusError && err.status === 0x01);
  });

  it('close() releases the server listener', async () => {
    const { proxy, egress } = await setup();
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const r = reverse(proxy, echo.address.port);
    const bound = await r.start();
    assert.equal(await through(bound, 'x'), 'x');
    assert.equal(egress.all[0]?.listeners.size, 1);
    r.close();
    while ((egress.all[0]?.listeners.size ?? 0) > 0) await new Promise((res) => setTimeout(res, 10));
    const probe = net.connect(bound.port, bound.host);
    const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
  });

  it('binds again on the new session after the server forgot the old one', async () => {
    const { pair, proxy, egress } = await setup();
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const r = reverse(proxy, echo.address.port);
    const first = await r.start();
    assert.equal(await through(first, 'before'), 'before');

    const rebound = once(r, 'bound') as Promise<[Destination]>;
    const renewed = once(pair.client, 'session') as Promise<[Session]>;
    (await pair.serverSession).abort(); // the server drops the session: the client must start a new one
    const [session] = await renewed;
    assert.notEqual(session, pair.clientSession);
    const [second] = await rebound;
    assert.equal(egress.all.length, 2);
    assert.equal(await through(second, 'after renewal'), 'after renewal');
    assert.equal(r.bound, second);
  });
});
