import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { HttpFront, httpStatusForProxyStatus, type HttpFrontInit } from '../../../src/client/http-front.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { isLoopbackHost } from '../../../src/client/tcp-front.js';
import { Socks5Front } from '../../../src/client/socks5-front.js';
import { makeDestination } from '../../../src/core/address.js';
import { deadTcpEndpoint } from '../../helpers/net-fixtures.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';
import { curl, curlPath, fakeEgress, httpOrigin, rawConnect, recordingLogger, tcpEcho, type FakeEgress } from '../../helpers/fake-egress.js';
import { eventually } from '../../helpers/eventually.js';

let pair: Pair;
let egress: FakeEgress;
let proxy: ProxyClient;
let origin: Awaited<ReturnType<typeof httpOrigin>>;
const cleanups: (() => Promise<void> | void)[] = [];
const noCurl = curlPath() ? false : 'curl not installed';

before(async () => {
  pair = await makePair();
  // Port 1 stands for "the server's policy refuses this destination".
  egress = fakeEgress(await pair.serverSession, { refuse: (d) => (d.port === 1 || !isLoopbackHost(d.host) ? 0x02 : undefined) });
  proxy = ProxyClient.forSessionClient(pair.client);
  origin = await httpOrigin();
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await origin.close();
  egress.close();
  await pair.close();
});

async function front(init: Partial<HttpFrontInit> = {}): Promise<HttpFront> {
  const f = new HttpFront({ listen: { host: '127.0.0.1', port: 0 }, proxy, ...init });
  await f.start();
  cleanups.push(() => f.close());
  return f;
}

describe('HttpFront', () => {
  it('proxies an absolute-form GET for curl -x', { skip: noCurl }, async () => {
    const f = await front();
    const body = await curl(['-x', `http://127.0.0.1:${f.address.port}`, `http://127.0.0.1:${origin.address.port}/a/b?c=d`]);
    assert.equal(body, `hello GET /a/b?c=d host=127.0.0.1:${origin.address.port}`);
    // The origin saw the rewritten head: no proxy headers, Connection: close.
    const h = origin.seen.at(-1);
    assert.equal(h?.['connection'], 'close');
    assert.equal(h?.['proxy-connection'], undefined);
  });

  it('tunnels curl -p (CONNECT)', { skip: noCurl }, async () => {
    const f = await front();
    const body = await curl(['-p', '-x', `http://127.0.0.1:${f.address.port}`, `http://localhost:${origin.address.port}/tunnel`]);
    assert.equal(body, `hello GET /tunnel host=localhost:${origin.address.port}`);
    assert.deepEqual(egress.connects.at(-1), { host: 'localhost', port: origin.address.port, kind: 'domain' });
  });

  it('answers CONNECT with 200 and relays raw bytes, half-close included', async () => {
    const f = await front();
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const { sock, reader } = await rawConnect(f.address.port);
    sock.write(`CONNECT 127.0.0.1:${echo.address.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.address.port}\r\n\r\n`);
    assert.match(await reader.until('\r\n\r\n'), /^HTTP\/1\.1 200 /);
    sock.end('raw tunnel bytes');
    assert.equal((await reader.rest()).toString(), 'raw tunnel bytes');
  });

  it('relays a request body with an absolute-form POST', async () => {
    const f = await front();
    const { sock, reader } = await rawConnect(f.address.port);
    sock.write(`POST http://127.0.0.1:${origin.address.port}/post HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\nContent-Length: 9\r\n\r\nbody-data`);
    const response = (await reader.rest()).toString();
    assert.match(response, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(response, new RegExp(`hello POST /post host=127.0.0.1:${origin.address.port} body=body-data$`));
  });

  it('requires Proxy-Authorization when auth is set (407 otherwise)', async () => {
    const f = await front({ auth: { username: 'u', password: 'p w' } });
    const target = `http://127.0.0.1:${origin.address.port}/`;
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const res = (await reader.rest()).toString();
      assert.match(res, /^HTTP\/1\.1 407 /);
      assert.match(res, /\r\nProxy-Authenticate: Basic realm="polytun"\r\n/);
    }
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${Buffer.from('u:wrong').toString('base64')}\r\n\r\n`);
      assert.match((await reader.rest()).toString(), /^HTTP\/1\.1 407 /);
    }
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${Buffer.from('u:p w').toString('base64')}\r\n\r\n`);
      const res = (await reader.rest()).toString();
      assert.match(res, /^HTTP\/1\.1 200 /);
      // The credentials are for the proxy only.
      assert.equal(origin.seen.at(-1)?.['proxy-authorization'], undefined);
    }
  });

  it('works with curl -U credentials', { skip: noCurl }, async () => {
    const f = await front({ auth: { username: 'carol', password: 'pw' } });
    const url = `http://127.0.0.1:${origin.address.port}/auth`;
    assert.match(await curl(['-x', `http://127.0.0.1:${f.address.port}`, '-U', 'carol:pw', url]), /^hello GET \/auth/);
    const noAuth = await curl(['-x', `http://127.0.0.1:${f.address.port}`, '-o', '/dev/null', '-w', '%{http_code}', url]);
    assert.equal(noAuth, '407');
  });

  it('answers 400 to a bad head and 431 to an oversize one, then closes', async () => {
    const f = await front();
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write('GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.match((await reader.rest()).toString(), /^HTTP\/1\.1 400 /);
    }
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`GET http://127.0.0.1/ HTTP/1.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      assert.match((await reader.rest()).toString(), /^HTTP\/1\.1 431 /);
    }
  });

  it('maps server statuses: refused → 502, not allowed → 403', async () => {
    const f = await front();
    const dead = await deadTcpEndpoint();
    for (const [port, code] of [
      [dead.port, 502],
      [1, 403],
    ] as const) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`);
      assert.match((await reader.rest()).toString(), new RegExp(`^HTTP/1\\.1 ${code} `));
    }
    assert.equal(httpStatusForProxyStatus(0x06), 504);
    assert.equal(httpStatusForProxyStatus(0x04), 502);
  });

  it("puts the reason in a refusal's body, for curl: the policy and the server flag that allows the target", { skip: noCurl }, async () => {
    const log = recordingLogger();
    const f = await front({ logger: log });
    // Port 1 stands for a destination the server's policy refuses (see before()).
    const body = await curl(['-x', `http://127.0.0.1:${f.address.port}`, 'http://127.0.0.1:1/']);
    assert.match(body, /^polytun: the server's destination policy refuses 127\.0\.0\.1:1; on the server, --allow 127\.0\.0\.1:1 /);
    const line = log.lines.find((l) => l.level === 'warn' && (l.msg ?? '').includes('--allow 127.0.0.1:1'));
    assert.ok(line, JSON.stringify(log.lines));
    const { sock, reader } = await rawConnect(f.address.port);
    sock.write('CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n');
    const raw = (await reader.rest()).toString();
    assert.match(raw, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(raw, /\r\n\r\npolytun: the server's destination policy refuses/);
    const len = Number(/Content-Length: (\d+)/.exec(raw)?.[1]);
    assert.equal(len, Buffer.byteLength(raw.slice(raw.indexOf('\r\n\r\n') + 4)));
  });

  it('answers 503 with a reason over the connection limit, and logs the flood once', { skip: noCurl }, async () => {
    const log = recordingLogger();
    const f = await front({ logger: log, maxConnections: 1 });
    const held = await rawConnect(f.address.port);
    await eventually(async () => assert.equal((await curl(['-x', `http://127.0.0.1:${f.address.port}`, `http://127.0.0.1:${origin.address.port}/x`])).includes('already serves 1 connections'), true));
    for (let i = 0; i < 5; i++) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`GET http://127.0.0.1:${origin.address.port}/ HTTP/1.1\r\n\r\n`);
      assert.match((await reader.rest()).toString(), /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    }
    assert.equal(log.lines.filter((l) => (l.msg ?? '').includes('connections open, the most it serves at once')).length, 1);
    held.sock.destroy();
  });

  it("at the session's stream limit: HTTP 503 with the reason, SOCKS general failure, one log line each", async () => {
    const small = await makePair({ session: { maxStreams: 1 } });
    cleanups.push(() => small.close());
    const smallEgress = fakeEgress(await small.serverSession, { refuse: (d) => (isLoopbackHost(d.host) ? undefined : 0x02) });
    cleanups.push(() => smallEgress.close());
    const smallProxy = ProxyClient.forSessionClient(small.client);
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    // The one stream the session allows, held open.
    const held = await smallProxy.connect(makeDestination('127.0.0.1', echo.address.port), { waitStatus: true });
    assert.equal(held.status, 0);
    const log = recordingLogger();
    const f = await front({ proxy: smallProxy, logger: log });
    for (let i = 0; i < 3; i++) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(`CONNECT 127.0.0.1:${echo.address.port} HTTP/1.1\r\n\r\n`);
      const raw = (await reader.rest()).toString();
      assert.match(raw, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
      assert.match(raw, /polytun: stream limit of 1 reached: 127\.0\.0\.1:\d+ not opened \(raise limits\.maxStreams/);
    }
    assert.equal(log.lines.filter((l) => (l.msg ?? '').includes('stream limit of 1 reached')).length, 1, JSON.stringify(log.lines));
    const socksLog = recordingLogger();
    const socks = new Socks5Front({ listen: { host: '127.0.0.1', port: 0 }, proxy: smallProxy, logger: socksLog });
    await socks.start();
    cleanups.push(() => socks.close());
    for (let i = 0; i < 3; i++) {
      const { sock, reader } = await rawConnect(socks.address.port);
      sock.write(Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1]), Buffer.from([echo.address.port >> 8, echo.address.port & 0xff])]));
      assert.deepEqual([...(await reader.rest()).subarray(0, 4)], [5, 0, 5, 1]);
    }
    assert.equal(socksLog.lines.filter((l) => (l.msg ?? '').includes('stream limit of 1 reached')).length, 1);
    held.stream.destroy();
  });

  it('refuses to start off loopback without auth', async () => {
    await assert.rejects(new HttpFront({ listen: { host: '0.0.0.0', port: 0 }, proxy }).start(), ConfigError);
  });
});
