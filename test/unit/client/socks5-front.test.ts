import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import fc from 'fast-check';
import { after, before, describe, it } from 'node:test';
import { decodeDestination, encodeDestination, makeDestination } from '../../../src/core/address.js';
import { ConfigError } from '../../../src/core/errors.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { isLoopbackHost } from '../../../src/client/tcp-front.js';
import { Socks5Front, type Socks5FrontInit } from '../../../src/client/socks5-front.js';
import { decodeUdpDatagram, encodeUdpDatagram } from '../../../src/client/socks5-codec.js';
import { deadTcpEndpoint } from '../../helpers/net-fixtures.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';
import {
  curl, curlPath, fakeEgress, httpOrigin, rawConnect, recordingLogger, tcpEcho, udpEcho, type FakeEgress,
} from '../../helpers/fake-egress.js';

let pair: Pair;
let egress: FakeEgress;
let proxy: ProxyClient;
const cleanups: (() => Promise<void> | void)[] = [];

before(async () => {
  pair = await makePair();
  // Port 1 stands for "the server's policy refuses this destination"; and
  // nothing (fuzzed requests included) may ever leave loopback.
  egress = fakeEgress(await pair.serverSession, { refuse: (d) => (d.port === 1 || !isLoopbackHost(d.host) ? 0x02 : undefined) });
  proxy = ProxyClient.forSessionClient(pair.client);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
  egress.close();
  await pair.close();
});

async function front(init: Partial<Socks5FrontInit> = {}): Promise<Socks5Front> {
  const f = new Socks5Front({ listen: { host: '127.0.0.1', port: 0 }, proxy, ...init });
  await f.start();
  cleanups.push(() => f.close());
  return f;
}

/** Greeting (no auth) + CONNECT request bytes for `dest`. */
function connectRequest(host: string, port: number, asDomain = false): Buffer {
  const dest = asDomain ? Buffer.concat([Buffer.from([3, host.length]), Buffer.from(host), Buffer.from([port >> 8, port & 0xff])]) : encodeDestination(makeDestination(host, port));
  return Buffer.concat([Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0]), dest]);
}

describe('Socks5Front', () => {
  it('serves curl --socks5-hostname against a local HTTP server, domain sent unresolved', { skip: curlPath() ? false : 'curl not installed' }, async () => {
    const f = await front();
    const origin = await httpOrigin();
    cleanups.push(() => origin.close());
    const body = await curl(['--socks5-hostname', `127.0.0.1:${f.address.port}`, `http://localhost:${origin.address.port}/x?y=1`]);
    assert.equal(body, `hello GET /x?y=1 host=localhost:${origin.address.port}`);
    assert.deepEqual(egress.connects.at(-1), { host: 'localhost', port: origin.address.port, kind: 'domain' });
  });

  for (const [label, host, asDomain] of [
    ['IPv4', '127.0.0.1', false],
    ['IPv6', '::1', false],
    ['domain', 'localhost', true],
  ] as const) {
    it(`CONNECT to an ${label} destination relays both ways`, async () => {
      const f = await front();
      const echo = await tcpEcho(label === 'IPv6' ? '::1' : '127.0.0.1');
      cleanups.push(() => echo.close());
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(connectRequest(host, echo.address.port, asDomain));
      assert.deepEqual([...(await reader.read(2))], [5, 0]);
      const head = await reader.read(4);
      assert.deepEqual([...head.subarray(0, 3)], [5, 0, 0]);
      await reader.read(head[3] === 4 ? 18 : 6); // BND.ADDR + BND.PORT
      sock.end('ping over socks');
      assert.equal((await reader.rest()).toString(), 'ping over socks');
      assert.equal(egress.connects.at(-1)?.kind, label === 'domain' ? 'domain' : label === 'IPv6' ? 'ipv6' : 'ipv4');
    });
  }

  it('sends data pipelined after the request with the connect (0-RTT)', async () => {
    const f = await front();
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const { sock, reader } = await rawConnect(f.address.port);
    sock.end(Buffer.concat([connectRequest('127.0.0.1', echo.address.port), Buffer.from('early bytes')]));
    const all = await reader.rest();
    assert.deepEqual([...all.subarray(0, 4)], [5, 0, 5, 0]);
    assert.equal(all.subarray(2 + 10).toString(), 'early bytes');
  });

  it("maps the server's status to the SOCKS reply: refused 0x05, not allowed 0x02", async () => {
    const f = await front();
    const dead = await deadTcpEndpoint();
    for (const [port, rep] of [
      [dead.port, 0x05],
      [1, 0x02],
    ] as const) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(connectRequest('127.0.0.1', port));
      const all = await reader.rest();
      assert.deepEqual([...all.subarray(0, 4)], [5, 0, 5, rep]);
    }
  });

  it('authenticates with username/password and refuses wrong credentials', async () => {
    const f = await front({ auth: { username: 'alice', password: 's3cret' } });
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    // Wrong password: auth reply 0x01, then close.
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(Buffer.from([5, 1, 2]));
      assert.deepEqual([...(await reader.read(2))], [5, 2]);
      sock.write(Buffer.concat([Buffer.from([1, 5]), Buffer.from('alice'), Buffer.from([5]), Buffer.from('wrong')]));
      assert.deepEqual([...(await reader.rest())], [1, 1]);
    }
    // Offering only no-auth when auth is required: 0xFF.
    {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(Buffer.from([5, 1, 0]));
      assert.deepEqual([...(await reader.rest())], [5, 0xff]);
    }
    // Right credentials, pipelined with the request.
    {
      const { sock, reader } = await rawConnect(f.address.port);
      const req = connectRequest('127.0.0.1', echo.address.port).subarray(3);
      sock.write(Buffer.concat([Buffer.from([5, 1, 2, 1, 5]), Buffer.from('alice'), Buffer.from([6]), Buffer.from('s3cret'), req]));
      assert.deepEqual([...(await reader.read(4))], [5, 2, 1, 0]);
      assert.deepEqual([...(await reader.read(10)).subarray(0, 2)], [5, 0]);
      sock.end('authed');
      assert.equal((await reader.rest()).toString(), 'authed');
    }
  });

  it('works with curl and credentials', { skip: curlPath() ? false : 'curl not installed' }, async () => {
    const f = await front({ auth: { username: 'bob', password: 'pw' } });
    const origin = await httpOrigin();
    cleanups.push(() => origin.close());
    assert.match(await curl(['--proxy', `socks5h://bob:pw@127.0.0.1:${f.address.port}`, `http://127.0.0.1:${origin.address.port}/`]), /^hello GET \//);
    await assert.rejects(curl(['--proxy', `socks5h://bob:nope@127.0.0.1:${f.address.port}`, `http://127.0.0.1:${origin.address.port}/`]));
  });

  it('closes on a malformed greeting without replying, and keeps serving', async () => {
    const f = await front();
    const { sock, reader } = await rawConnect(f.address.port);
    sock.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    assert.equal((await reader.rest()).length, 0);
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const second = await rawConnect(f.address.port);
    second.sock.end(Buffer.concat([connectRequest('127.0.0.1', echo.address.port), Buffer.from('still alive')]));
    assert.equal((await second.reader.rest()).subarray(12).toString(), 'still alive');
  });

  it('survives random and mutated handshakes and keeps serving', async () => {
    const f = await front({ auth: { username: 'u', password: 'p' } });
    const valid = [5, 1, 2, 1, 1, 0x75, 1, 0x70, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })).map(([i, b]) => Uint8Array.from(valid.map((x, j) => (j === i ? b : x)))),
        ),
        async (bytes) => {
          const { sock, reader } = await rawConnect(f.address.port);
          sock.end(Buffer.from(bytes));
          await reader.rest();
        },
      ),
      { numRuns: 60 },
    );
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const { sock, reader } = await rawConnect(f.address.port);
    const req = connectRequest('127.0.0.1', echo.address.port).subarray(3);
    sock.end(Buffer.concat([Buffer.from([5, 1, 2, 1, 1, 0x75, 1, 0x70]), req, Buffer.from('alive')]));
    assert.equal((await reader.rest()).subarray(4 + 10).toString(), 'alive');
  });

  it('answers bad requests with the codec reply: general failure, bad address type, BIND not supported', async () => {
    const f = await front();
    for (const [req, rep] of [
      [[5, 1, 1, 1, 127, 0, 0, 1, 0, 80], 0x01], // reserved byte not 0
      [[5, 1, 0, 9, 0, 0], 0x08], // unknown address type
      [[5, 2, 0, 1, 127, 0, 0, 1, 0, 80], 0x07], // BIND
      [[5, 9, 0, 1, 127, 0, 0, 1, 0, 80], 0x07], // unknown command
    ] as const) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(Buffer.from([5, 1, 0, ...req]));
      const all = await reader.rest();
      assert.deepEqual([...all.subarray(0, 4)], [5, 0, 5, rep], `request ${req.join(',')}`);
    }
  });

  it('answers a greeting that offers no method with 0xFF', async () => {
    const f = await front();
    const { sock, reader } = await rawConnect(f.address.port);
    // No methods offered at all: the codec answers "no acceptable method".
    sock.write(Buffer.from([5, 0]));
    assert.deepEqual([...(await reader.rest())], [5, 0xff]);
  });

  it('closes connections idle in the handshake and over the connection limit', async () => {
    const f = await front({ handshakeTimeoutMs: 50, maxConnections: 1 });
    const first = await rawConnect(f.address.port);
    first.sock.write(Buffer.from([5, 1, 0]));
    assert.deepEqual([...(await first.reader.read(2))], [5, 0]);
    const second = await rawConnect(f.address.port);
    assert.equal((await second.reader.rest()).length, 0); // over the limit
    assert.equal((await first.reader.rest()).length, 0); // handshake timer
  });

  it('answers general failure (0x01) over the connection limit, and logs the flood once', async () => {
    const log = recordingLogger();
    const f = await front({ maxConnections: 1, logger: log });
    const held = await rawConnect(f.address.port);
    held.sock.write(Buffer.from([5, 1, 0]));
    assert.deepEqual([...(await held.reader.read(2))], [5, 0]);
    for (let i = 0; i < 5; i++) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write(connectRequest('127.0.0.1', 80));
      assert.deepEqual([...(await reader.rest()).subarray(0, 4)], [5, 0, 5, 1]);
    }
    assert.equal(log.lines.filter((l) => (l.msg ?? '').includes('connections open, the most it serves at once')).length, 1);
    held.sock.destroy();
  });

  it("logs which policy refused what and the server flag that allows it, once per target and interval", { skip: curlPath() ? false : 'curl not installed' }, async () => {
    const log = recordingLogger();
    const f = await front({ logger: log });
    for (let i = 0; i < 3; i++) {
      // curl can only say "(97) ... (2)"; the client's log says why.
      await assert.rejects(curl(['--socks5-hostname', `127.0.0.1:${f.address.port}`, 'http://127.0.0.1:1/']), /\(97\)/);
    }
    const lines = log.lines.filter((l) => (l.msg ?? '').includes("the server's destination policy refuses 127.0.0.1:1; on the server, --allow 127.0.0.1:1"));
    assert.equal(lines.length, 1, JSON.stringify(log.lines));
    assert.equal(lines[0]?.level, 'warn');
  });

  it('refuses to start off loopback without auth', async () => {
    const f = new Socks5Front({ listen: { host: '0.0.0.0', port: 0 }, proxy });
    await assert.rejects(f.start(), ConfigError);
  });

  it('relays UDP ASSOCIATE datagrams, only for the client, until the control connection closes', async () => {
    const f = await front();
    const echo = await udpEcho('127.0.0.1', 'echo:');
    cleanups.push(() => echo.close());
    const udpBefore = proxy.udpTraffic;
    const { sock, reader } = await rawConnect(f.address.port);
    sock.write(Buffer.from([5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
    assert.deepEqual([...(await reader.read(2))], [5, 0]);
    const head = await reader.read(3);
    assert.deepEqual([...head], [5, 0, 0]);
    const relay = decodeDestination(await reader.read(7)).dest;
    assert.equal(relay.host, '127.0.0.1');

    const bindUdp = async (host: string): Promise<UdpSocket> => {
      const u = createSocket('udp4');
      await new Promise<void>((r) => u.bind(0, host, r));
      cleanups.push(() => new Promise<void>((r) => u.close(() => r())));
      return u;
    };
    const client = await bindUdp('127.0.0.1');
    const otherPort = await bindUdp('127.0.0.1');
    const otherHost = await bindUdp('127.0.0.2');
    const target = makeDestination('127.0.0.1', echo.address.port);
    const replies: Buffer[] = [];
    client.on('message', (m) => replies.push(m));
    const strays: Buffer[] = [];
    otherPort.on('message', (m) => strays.push(m));
    otherHost.on('message', (m) => strays.push(m));

    client.send(encodeUdpDatagram(target, Buffer.from('one')), relay.port, relay.host);
    await once(client, 'message');
    otherPort.send(encodeUdpDatagram(target, Buffer.from('intruder-port')), relay.port, relay.host);
    otherHost.send(encodeUdpDatagram(target, Buffer.from('intruder-host')), relay.port, relay.host);
    client.send(Buffer.from([0, 0, 1, 1, 127, 0, 0, 1, 0, 53]), relay.port, relay.host); // fragment: dropped
    client.send(encodeUdpDatagram(target, Buffer.from('two')), relay.port, relay.host);
    while (replies.length < 2) await once(client, 'message');

    const decoded = replies.map((m) => decodeUdpDatagram(m));
    assert.deepEqual(decoded.map((d) => d.payload.toString()), ['echo:one', 'echo:two']);
    assert.deepEqual(decoded[0]?.dest, target);
    assert.deepEqual(strays, []);
    // `polytun status` counts them: datagrams and payload bytes, each way.
    const udpAfter = proxy.udpTraffic;
    assert.equal(udpAfter.udpDatagramsSent - udpBefore.udpDatagramsSent, 2);
    assert.equal(udpAfter.udpBytesSent - udpBefore.udpBytesSent, 6);
    assert.equal(udpAfter.udpDatagramsReceived - udpBefore.udpDatagramsReceived, 2);
    assert.equal(udpAfter.udpBytesReceived - udpBefore.udpBytesReceived, 16);

    // Closing the control connection frees the relay port.
    sock.destroy();
    await reader.closed;
    for (;;) {
      const probe = createSocket('udp4');
      const free = await new Promise<boolean>((r) => {
        probe.once('error', () => r(false));
        probe.bind(relay.port, '127.0.0.1', () => r(true));
      });
      await new Promise<void>((r) => probe.close(() => r()));
      if (free) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
