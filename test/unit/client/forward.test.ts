import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { makeDestination } from '../../../src/core/address.js';
import { AbortedError, ConfigError, TimeoutError } from '../../../src/core/errors.js';
import { LocalForward, parseForwardSpec, type LocalForwardInit } from '../../../src/client/forward.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { isLoopbackHost } from '../../../src/client/tcp-front.js';
import { SecureChannel } from '../../../src/secure/channel.js';
import { F_DATA, F_FIN, F_OPEN, F_RST, parseFrames } from '../../../src/session/frames.js';
import { deadTcpEndpoint } from '../../helpers/net-fixtures.js';
import { waitUntil } from '../../helpers/eventually.js';
import { makePair, readAll, type Pair } from '../../helpers/session-pair.js';
import { fakeEgress, rawConnect, recordingLogger, tcpEcho, udpEcho, type FakeEgress } from '../../helpers/fake-egress.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('parseForwardSpec', () => {
  it('parses PORT:HOST:PORT, BIND:…, IPv6 in brackets and /udp', () => {
    assert.deepEqual(parseForwardSpec('8080:example.com:80'), {
      bind: { host: '127.0.0.1', port: 8080 },
      target: { host: 'example.com', port: 80, kind: 'domain' },
      protocol: 'tcp',
    });
    assert.deepEqual(parseForwardSpec('0.0.0.0:53:10.0.0.1:53/udp'), {
      bind: { host: '0.0.0.0', port: 53 },
      target: { host: '10.0.0.1', port: 53, kind: 'ipv4' },
      protocol: 'udp',
    });
    assert.deepEqual(parseForwardSpec('[::1]:2222:[2001:DB8::1]:22', '-R'), {
      bind: { host: '::1', port: 2222 },
      target: { host: '2001:db8::1', port: 22, kind: 'ipv6' },
      protocol: 'tcp',
    });
    assert.equal(parseForwardSpec('*:0:localhost:80/tcp').bind.host, '0.0.0.0');
    assert.equal(parseForwardSpec(':9000:localhost:80').bind.host, '0.0.0.0');
  });

  it('refuses bad specs with a ConfigError naming the flag and the problem', () => {
    const cases: [string, RegExp][] = [
      ['8080:example.com', /too few fields/],
      ['1:2:3:4:5', /too many fields.*brackets/],
      ['::1:80:host:80', /too many fields|brackets/],
      ['8080:[example.com]:80', /brackets must hold an IPv6 address/],
      ['8080:host:0', /port 0 is out of range/],
      ['8080:host:70000', /out of range/],
      ['x:host:80', /bind port "x" is not a number/],
      ['8080:host:80/sctp', /unknown protocol "sctp"/],
      ['8080:bad host:80', /bad host/],
      ['8080:[::1:80', /missing '\]'/],
      ['example.com:8080:host:80', /bind address "example.com" is not an IP address/],
    ];
    for (const [spec, re] of cases) {
      assert.throws(
        () => parseForwardSpec(spec, '-R'),
        (err: unknown) => err instanceof ConfigError && err.message.startsWith('-R: ') && re.test(err.message),
        spec,
      );
    }
  });
});

describe('LocalForward and ProxyClient over a real session', () => {
  let pair: Pair;
  let egress: FakeEgress;
  let proxy: ProxyClient;
  const cleanups: (() => Promise<void> | void)[] = [];

  before(async () => {
    pair = await makePair();
    // Nothing leaves loopback: other targets stand for "the server's policy refuses this".
    egress = fakeEgress(await pair.serverSession, { refuse: (d) => (isLoopbackHost(d.host) ? undefined : 0x02) });
    proxy = ProxyClient.forSessionClient(pair.client);
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    egress.close();
    await pair.close();
  });

  async function forward(init: Partial<LocalForwardInit> & Pick<LocalForwardInit, 'target'>): Promise<LocalForward> {
    const f = new LocalForward({ listen: { host: '127.0.0.1', port: 0 }, proxy, ...init });
    await f.start();
    cleanups.push(() => f.close());
    return f;
  }

  it('connect(waitStatus) yields only the bytes after the status', async () => {
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const { stream, status } = await proxy.connect(makeDestination('127.0.0.1', echo.address.port), { waitStatus: true });
    assert.equal(status, 0);
    stream.end('after the status');
    assert.equal((await readAll(stream)).toString(), 'after the status');
  });

  it('connect without waitStatus carries data written before the status (0-RTT)', async () => {
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const { stream, status } = await proxy.connect(makeDestination('127.0.0.1', echo.address.port));
    stream.end('0-rtt bytes');
    assert.equal(await status, 0);
    assert.equal((await readAll(stream)).toString(), '0-rtt bytes');
  });

  it('connect status times out or aborts when the server never answers', async () => {
    const quiet = await makePair();
    cleanups.push(() => quiet.close());
    const seenResets: number[] = [];
    let opened = 0;
    // Accepts, never answers; our timeout/abort resets the stream.
    (await quiet.serverSession).onStream((s) => {
      opened++;
      s.on('error', (err: Error & { resetCode?: number }) => seenResets.push(err.resetCode ?? -1));
      s.resume();
    });
    const p = new ProxyClient({ session: () => quiet.clientSession, statusTimeoutMs: 50 });
    const dest = makeDestination('127.0.0.1', 9);
    await assert.rejects(p.connect(dest, { waitStatus: true }), TimeoutError);
    const ac = new AbortController();
    const pending = p.connect(dest, { waitStatus: true, signal: ac.signal });
    await waitUntil(() => opened >= 2, 'the second stream to open');
    ac.abort();
    await assert.rejects(pending, AbortedError);
    await waitUntil(() => seenResets.length >= 2, 'both streams reset');
    assert.deepEqual(seenResets, [0, 0]);
  });

  it('-L TCP carries 5 MiB each way intact', async () => {
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const f = await forward({ target: makeDestination('127.0.0.1', echo.address.port) });
    const data = randomBytes(5 << 20);
    const sock = net.connect(f.address.port, '127.0.0.1');
    const got = readAll(sock);
    sock.end(data);
    const back = await got;
    assert.equal(back.length, data.length);
    assert.equal(sha(back), sha(data));
  });

  it('-L TCP sends the local client\'s first bytes in the record of the OPEN (one carrier write)', async () => {
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const f = await forward({ target: makeDestination('127.0.0.1', echo.address.port) });
    // Records the client's channel writes: those whose carrier goes to the server's listener.
    const toServer = `${pair.endpoint.host}:${pair.endpoint.port}`;
    const write = SecureChannel.prototype.write;
    // Each record that carries stream frames, as the list of their types.
    const written: string[] = [];
    const seqTypes = { [F_OPEN]: 'OPEN', [F_DATA]: 'DATA', [F_FIN]: 'FIN', [F_RST]: 'RST' };
    SecureChannel.prototype.write = function (this: SecureChannel, buf: Buffer, len: number): boolean {
      if (this.info.remote === toServer) {
        const types: string[] = [];
        const ignore = (): void => undefined;
        parseFrames(buf.subarray(0, len), 1, {
          seq: (type) => types.push(seqTypes[type]),
          window: ignore,
          ack: ignore,
          ping: ignore,
          pong: ignore,
          datagram: ignore,
          goaway: ignore,
          close: ignore,
        });
        if (types.length > 0) written.push(types.join('+'));
      }
      return write.call(this, buf, len);
    };
    try {
      const sock = net.connect(f.address.port, '127.0.0.1');
      sock.write('GET / HTTP/1.0\r\n\r\n');
      const [answer] = (await once(sock, 'data')) as [Buffer];
      assert.equal(answer.toString(), 'GET / HTTP/1.0\r\n\r\n');
      assert.deepEqual(written, ['OPEN+DATA']);
      sock.destroy();
    } finally {
      SecureChannel.prototype.write = write;
    }
  });

  it('-L TCP closes the local connection and logs one line when the server refuses', async () => {
    const dead = await deadTcpEndpoint();
    const log = recordingLogger();
    const f = await forward({ target: makeDestination('127.0.0.1', dead.port), logger: log });
    // Three refused connections: one line now (the rest are counted for a summary line later).
    for (let i = 0; i < 3; i++) {
      const { sock, reader } = await rawConnect(f.address.port);
      sock.write('hello?');
      assert.equal((await reader.rest()).length, 0);
    }
    const refusals = log.lines.filter((l) => /127\.0\.0\.1:\d+ refused the connection \(nothing listens there, as seen from the server\)/.test(l.msg ?? ''));
    assert.equal(refusals.length, 1, JSON.stringify(log.lines));
  });

  it("-L names the server's policy and the flag that allows the target when the server refuses it", async () => {
    const log = recordingLogger();
    const f = await forward({ target: makeDestination('10.0.0.5', 22), logger: log });
    const { sock, reader } = await rawConnect(f.address.port);
    sock.write('SSH-2.0-x\r\n');
    assert.equal((await reader.rest()).length, 0);
    const line = log.lines.find((l) => l.level === 'warn' && (l.msg ?? '').includes("server's destination policy refuses 10.0.0.5:22"));
    assert.ok(line, JSON.stringify(log.lines));
    assert.match(line.msg ?? '', /--allow 10\.0\.0\.5:22/);
  });

  it('-L UDP gives each local sender its own association and routes replies back to it', async () => {
    const echo = await udpEcho('127.0.0.1', 'echo:');
    cleanups.push(() => echo.close());
    const f = await forward({ target: makeDestination('127.0.0.1', echo.address.port), protocol: 'udp' });
    const flowsBefore = egress.flows.size;
    const sender = async (): Promise<UdpSocket> => {
      const u = createSocket('udp4');
      await new Promise<void>((r) => u.bind(0, '127.0.0.1', r));
      cleanups.push(() => new Promise<void>((r) => u.close(() => r())));
      return u;
    };
    const a = await sender();
    const b = await sender();
    const gotA = once(a, 'message');
    const gotB = once(b, 'message');
    a.send('from a', f.address.port, '127.0.0.1');
    b.send('from b', f.address.port, '127.0.0.1');
    assert.equal(String((await gotA)[0]), 'echo:from a');
    assert.equal(String((await gotB)[0]), 'echo:from b');
    assert.equal(egress.flows.size - flowsBefore, 2);
  });

  it('-L UDP closes an idle association; the next datagram opens a new one', async () => {
    const echo = await udpEcho('127.0.0.1', '');
    cleanups.push(() => echo.close());
    // The idle time must outlast a reply's round trip even on a loaded machine:
    // at 20 ms the association could close before the echo came back, the
    // reply was dropped (UDP) and the test hung.
    const log = recordingLogger();
    const f = await forward({ target: makeDestination('127.0.0.1', echo.address.port), protocol: 'udp', udpIdleMs: 1000, logger: log });
    const u = createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => u.close(() => r())));
    const idleCloses = (): number => log.lines.filter((l) => /sender idle; association closed/.test(l.msg ?? '')).length;
    const before = egress.flows.size;
    u.send('1', f.address.port, '127.0.0.1');
    await once(u, 'message');
    await waitUntil(() => idleCloses() === 1, 'the idle association to close');
    u.send('2', f.address.port, '127.0.0.1');
    await once(u, 'message');
    assert.equal(egress.flows.size - before, 2);
  });
});
