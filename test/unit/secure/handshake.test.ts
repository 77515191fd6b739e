import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { memoryStreamPair } from '../../../src/carriers/memory.js';
import { AuthError, RejectCode, RejectedError } from '../../../src/core/errors.js';
import { MSG1_SIZE, ReplayGuard, SilentDropError, clientHandshake, closeDelay, serverHandshake, type Admission } from '../../../src/secure/handshake.js';
import { HELLO_SIZE, decodeServerHello, encodeClientHello } from '../../../src/secure/hello.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { HandshakeState } from '../../../src/secure/noise.js';
import { SessionServer } from '../../../src/server/session-server.js';
import { waitUntil } from '../../helpers/eventually.js';

const serverKeys = generateKeyPair();
const clientKeys = generateKeyPair();
const accept = (): Admission => ({ accept: true, sessionId: randomBytes(16), recvSeq: 0, resumed: false, streamWindow: 1 << 20, sessionWindow: 1 << 24 });
const win = { streamWindow: 1 << 20, sessionWindow: 1 << 24 };

/** A real TCP server running serverHandshake on every connection; counts bytes it sent. */
async function tcpServer(admit: () => Admission = accept, replay = new ReplayGuard()) {
  const outcomes: string[] = [];
  const srv = net.createServer((sock) => {
    serverHandshake({ stream: sock, remote: 'test', local: 'test', carrier: 'tcp' }, { staticKeyPair: serverKeys, admit, replay, timeoutMs: 800 }).then(
      (r) => {
        outcomes.push('ok');
        r.channel.abort();
      },
      (err: Error) => outcomes.push(err instanceof SilentDropError ? `drop:${err.reason}` : err instanceof RejectedError ? 'rejected' : `err:${err.message}`),
    );
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  servers.push(srv);
  return { port, outcomes };
}
const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** Sends bytes, returns everything the server sends back before closing. */
async function probe(port: number, bytes: Buffer): Promise<Buffer> {
  const sock = net.connect(port, '127.0.0.1');
  const got: Buffer[] = [];
  sock.on('data', (c: Buffer) => got.push(c));
  sock.on('error', () => undefined);
  sock.write(bytes);
  await once(sock, 'close');
  return Buffer.concat(got);
}

function dialHandshake(port: number, serverPub: Buffer, keys = clientKeys) {
  const sock = net.connect(port, '127.0.0.1');
  return clientHandshake({ stream: sock, remote: 'srv', local: 'me', carrier: 'tcp' }, { serverPublicKey: serverPub, clientKeyPair: keys, ...win, timeoutMs: 5000 });
}

describe('handshake', () => {
  it('completes and both sides derive working keys', async () => {
    const [a, b] = memoryStreamPair();
    const [c, s] = await Promise.all([
      clientHandshake({ stream: a, remote: 's', local: 'c', carrier: 'mem' }, { serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...win }),
      serverHandshake({ stream: b, remote: 'c', local: 's', carrier: 'mem' }, { staticKeyPair: serverKeys, admit: accept, replay: new ReplayGuard() }),
    ]);
    assert.ok(s.clientKey.equals(clientKeys.publicKey));
    assert.ok(c.channel.info.handshakeHash.equals(s.channel.info.handshakeHash));
    const got = new Promise<Buffer>((r) => s.channel.onRecord(r));
    s.channel.start();
    c.channel.write(Buffer.from('\x00hello'), 6);
    assert.equal((await got).subarray(1).toString(), 'hello');
    c.channel.abort();
    s.channel.abort();
  });

  it('garbage, short input and a wrong server key get no byte back, only a delayed close', async () => {
    const { port, outcomes } = await tcpServer();
    const t0 = performance.now();
    assert.equal((await probe(port, randomBytes(MSG1_SIZE + 40))).length, 0);
    assert.ok(performance.now() - t0 >= 450, 'the close is delayed, not immediate');
    assert.equal((await probe(port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).length, 0);
    await assert.rejects(dialHandshake(port, generateKeyPair().publicKey), AuthError);
    // The server records an outcome when its side ends, which may come after ours.
    await waitUntil(() => outcomes.includes('drop:unauthenticated') && outcomes.includes('drop:timeout'), 'both drop outcomes');
  });

  it('closes a dropped connection at one instant drawn per connection, whatever arrived (159 or 160 bytes, nothing, a FIN, a flood)', async (t) => {
    // Fake timers: the close decision is read off the schedule, not off a wall clock.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const DRAW = 7_000;
    const probes: { name: string; send: (a: Duplex) => void }[] = [
      { name: '159 bytes', send: (a) => a.write(randomBytes(MSG1_SIZE - 1)) },
      { name: '160 bytes', send: (a) => a.write(randomBytes(MSG1_SIZE)) },
      { name: 'nothing', send: () => undefined },
      { name: '159 bytes + FIN', send: (a) => a.end(randomBytes(MSG1_SIZE - 1)) },
      { name: '160 bytes + FIN', send: (a) => a.end(randomBytes(MSG1_SIZE)) },
      { name: '200 KiB', send: (a) => a.write(randomBytes(200 * 1024)) },
    ];
    const draws: number[] = [];
    const conns = probes.map((p) => {
      const [a, b] = memoryStreamPair();
      a.on('error', () => undefined);
      const outcome = serverHandshake(
        { stream: b, remote: p.name, local: 's', carrier: 'mem' },
        { staticKeyPair: serverKeys, admit: accept, replay: new ReplayGuard(), timeoutMs: 1000, closeDelayMs: (timeoutMs) => (draws.push(timeoutMs), DRAW) },
      ).then(
        () => 'accepted',
        (err: Error) => (err instanceof SilentDropError ? 'dropped' : `error: ${err.message}`),
      );
      p.send(a);
      return { name: p.name, server: b, outcome };
    });
    const turns = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    };
    await turns(); // every probe's bytes (and FIN) reach the server
    for (const c of conns) assert.equal(c.server.destroyed, false, `${c.name}: still open right after the probe`);
    t.mock.timers.tick(DRAW - 1);
    await turns();
    for (const c of conns) assert.equal(c.server.destroyed, false, `${c.name}: still open 1 ms before the drawn instant`);
    t.mock.timers.tick(1);
    await turns();
    for (const c of conns) assert.equal(c.server.destroyed, true, `${c.name}: closed at the drawn instant`);
    for (const c of conns) assert.equal(await c.outcome, 'dropped', c.name);
    assert.deepEqual(draws, probes.map(() => 1000), 'one draw per connection, from the configured timeout');
  });

  it('the default close schedule is uniform in [timeout, 2 × timeout], never before the timeout', () => {
    const draws = Array.from({ length: 2000 }, () => closeDelay(10_000));
    assert.ok(draws.every((d) => d >= 10_000 && d <= 20_000));
    assert.ok(Math.min(...draws) < 11_000 && Math.max(...draws) > 19_000, 'spread over the whole range');
  });

  it('a replayed first message gets no answer', async () => {
    const { port, outcomes } = await tcpServer();
    // Record what a genuine client sends.
    const tap = net.createServer((sock) => {
      const up = net.connect(port, '127.0.0.1');
      sock.on('data', (c: Buffer) => {
        captured.push(c);
        up.write(c);
      });
      up.pipe(sock);
      sock.on('error', () => undefined);
      up.on('error', () => undefined);
    });
    const captured: Buffer[] = [];
    tap.listen(0, '127.0.0.1');
    await once(tap, 'listening');
    servers.push(tap);
    const r = await dialHandshake((tap.address() as net.AddressInfo).port, serverKeys.publicKey);
    r.channel.abort();
    const replayed = await probe(port, Buffer.concat(captured));
    assert.equal(replayed.length, 0);
    await waitUntil(() => outcomes.includes('drop:replay'), 'the replay drop outcome');
  });

  it('a client that knows the server key gets typed rejects', async () => {
    for (const reject of [RejectCode.unauthorized, RejectCode.busy, RejectCode.draining]) {
      const { port } = await tcpServer(() => ({ accept: false, reject }));
      await assert.rejects(dialHandshake(port, serverKeys.publicKey), (e: unknown) => e instanceof RejectedError && e.reject === reject);
    }
  });

  it('an unsupported protocol version is rejected with its code', async () => {
    const { port } = await tcpServer();
    const hs = new HandshakeState({ protocolName: 'Noise_IK_25519_ChaChaPoly_SHA256', initiator: true, prologue: Buffer.from('polytun'), staticKeyPair: clientKeys, remoteStaticKey: serverKeys.publicKey });
    const hello = encodeClientHello({ minVersion: 9, maxVersion: 9, caps: 0, timestampMs: Date.now(), resumeId: undefined, recvSeq: 0, ...win, padLen: 0 });
    const reply = await probe(port, hs.writeMessage(hello));
    const sh = decodeServerHello(hs.readMessage(reply.subarray(0, 32 + HELLO_SIZE + 16)));
    assert.equal(sh.status, RejectCode.unsupportedVersion);
  });

  it('any mutation of a genuine first message is dropped silently', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: MSG1_SIZE - 1 }), fc.integer({ min: 1, max: 255 }), async (pos, xor) => {
        const hs = new HandshakeState({ protocolName: 'Noise_IK_25519_ChaChaPoly_SHA256', initiator: true, prologue: Buffer.from('polytun'), staticKeyPair: clientKeys, remoteStaticKey: serverKeys.publicKey });
        const msg1 = hs.writeMessage(encodeClientHello({ minVersion: 1, maxVersion: 1, caps: 3, timestampMs: Date.now(), resumeId: undefined, recvSeq: 0, ...win, padLen: 0 }));
        msg1[pos] = (msg1[pos] as number) ^ xor;
        const [a, b] = memoryStreamPair();
        const sent: Buffer[] = [];
        a.on('data', (c: Buffer) => sent.push(c));
        a.on('error', () => undefined);
        a.write(msg1);
        await assert.rejects(
          serverHandshake({ stream: b, remote: 'fuzz', local: 's', carrier: 'mem' }, { staticKeyPair: serverKeys, admit: accept, replay: new ReplayGuard(), timeoutMs: 600 }),
          SilentDropError,
        );
        assert.equal(Buffer.concat(sent).length, 0);
        a.destroy();
      }),
      { numRuns: 60 },
    );
  });

  it('past maxPendingHandshakes, new connections are dropped at once', async () => {
    const server = new SessionServer<string>({ staticKeyPair: serverKeys, users: { byKey: () => 'u' }, maxPendingHandshakes: 2, handshakeTimeoutMs: 3000 });
    let handled = 0;
    const srv = net.createServer((sock) => {
      handled++;
      server.handle({ stream: sock, remote: 'x', local: 'y', meta: {} });
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    servers.push(srv);
    const port = (srv.address() as net.AddressInfo).port;
    const idle = [net.connect(port, '127.0.0.1'), net.connect(port, '127.0.0.1')];
    for (const s of idle) {
      s.on('error', () => undefined);
      await once(s, 'connect');
    }
    // Our 'connect' does not mean the server has accepted: wait until both are its pending handshakes.
    await waitUntil(() => handled === 2, 'the server to take both idle connections');
    const third = net.connect(port, '127.0.0.1');
    third.on('error', () => undefined);
    await once(third, 'close'); // closed long before the 3 s handshake timeout
    assert.equal(server.counters.overload, 1);
    for (const s of idle) s.destroy();
  });
});
