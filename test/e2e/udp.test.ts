/**
 * Issue 17, end to end: the udp carrier with real `polytun server --listen
 * udp://` and `polytun client` processes.
 *
 *   sender ─▶ client -L ══ udp, through an impairing relay (loss, reordering,
 *                          duplication; the relay forgets its mapping mid-way) ══▶ server ─▶ sink
 *
 * - the bytes arrive intact (SHA-256) through 5 % loss, reordering and
 *   duplication each way, and through a NAT rebinding: the relay forgets
 *   its mapping mid-transfer, so the client's datagrams reach the server
 *   from a new source port, which the server follows;
 * - probes and garbage to the server's UDP port get nothing back.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeLink, encodeLink } from '../../src/config/link.js';
import { ensureBuilt, freePort, runCli, startClient, startServer, stopAll, type Proc, type Server } from '../helpers/cli.js';
import { UdpRelay } from '../tools/relay-udp.js';

const MIB = 1024 * 1024;
/** Enough to span many congestion-control rounds and the rebinding; the full 100 MiB run is the bench's (npm run bench -- udp). */
const TRANSFER = 24 * MIB;

let server: Server;
let client: Proc;
let relay: UdpRelay;
let sink: net.Server;
let echo: ReturnType<typeof createSocket>;
let received: { bytes: number; hash: ReturnType<typeof createHash>; done: Promise<void>; resolve: () => void } | undefined;
const ports = { fwd: 0, status: 0, sink: 0, udpFwd: 0, echo: 0 };

before(async () => {
  ensureBuilt();
  // Each connection hashes on its own, and only one that carried bytes reports: startClient's
  // readiness probe of the -L port opens a stream too, whose connection here may arrive (and
  // end, empty) after a test has started counting.
  sink = net.createServer((s) => {
    const r = received;
    const hash = createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    s.on('end', () => {
      s.end();
      if (r === undefined || bytes === 0) return;
      r.bytes = bytes;
      r.hash = hash;
      r.resolve();
    });
    s.on('error', () => undefined);
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  ports.sink = (sink.address() as net.AddressInfo).port;
  echo = createSocket('udp4');
  echo.on('message', (m, from) => echo.send(m, from.port, from.address));
  echo.bind(0, '127.0.0.1');
  await once(echo, 'listening');
  ports.echo = echo.address().port;
  ports.udpFwd = await freePort();
  ports.fwd = await freePort();
  ports.status = await freePort();
  server = await startServer(['--allow', `127.0.0.1:${ports.sink}`, '--allow', `127.0.0.1:${ports.echo}`], ['udp://127.0.0.1:0']);
  const link = decodeLink(server.links[0] as string);
  assert.equal(link.carrier, 'udp', 'a udp listener prints t=udp links');
  relay = new UdpRelay({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: link.port },
    up: { lossRate: 0.05, reorderRate: 0.02, duplicateRate: 0.01, delayMs: 2 },
    down: { lossRate: 0.05, reorderRate: 0.02, duplicateRate: 0.01, delayMs: 2 },
    seed: 17,
  });
  await relay.start();
  const viaRelay = encodeLink({ ...link, port: relay.address.port });
  client = await startClient(viaRelay, ['--no-socks', '--status', `127.0.0.1:${ports.status}`, '-L', `127.0.0.1:${ports.fwd}:127.0.0.1:${ports.sink}`, '-L', `127.0.0.1:${ports.udpFwd}:127.0.0.1:${ports.echo}/udp`], ports.status);
});

after(async () => {
  assert.equal(await client.stop(), 0, 'the client shuts down cleanly');
  await stopAll();
  await relay.close();
  sink.close();
  echo.close();
});

describe('udp carrier', () => {
  it('carries a forward intact through 5 % loss, reordering and duplication, and across a NAT rebinding', async () => {
    let resolve: () => void = () => undefined;
    const done = new Promise<void>((r) => (resolve = r));
    received = { bytes: 0, hash: createHash('sha256'), done, resolve };
    const sent = createHash('sha256');
    const s = net.connect(ports.fwd, '127.0.0.1');
    await once(s, 'connect');
    let rebound = false;
    const opened = relay.stats.associationsOpened;
    for (let off = 0; off < TRANSFER; off += 256 * 1024) {
      const chunk = randomBytes(256 * 1024);
      sent.update(chunk);
      if (!s.write(chunk)) await once(s, 'drain');
      if (!rebound && off >= TRANSFER / 2) {
        // The NAT forgets: the client's next datagrams leave the relay from a new port.
        assert.ok(relay.cutAll() >= 1, 'the relay had a mapping to forget');
        rebound = true;
      }
    }
    s.end();
    await done;
    assert.equal(received.bytes, TRANSFER);
    assert.equal(received.hash.digest('hex'), sent.digest('hex'), 'SHA-256 equal');
    assert.ok(relay.stats.associationsOpened >= opened + 1, 'the server saw the client from a new source port and followed it');
    const st = relay.stats;
    assert.ok(st.up.droppedLoss > 0 && st.down.droppedLoss > 0 && st.up.reordered > 0 && st.up.duplicated > 0, 'loss, reordering and duplication really happened');
  });

  it('polytun status shows the udp path\'s transport: rtt, window, pacing, loss, resends, wire per useful byte, mtu', async () => {
    const j = await runCli(['status', '--status', `127.0.0.1:${ports.status}`, '--json']);
    assert.equal(j.code, 0, j.stderr);
    const st = JSON.parse(j.stdout) as { paths: { carrier: string; transport?: Record<string, number | string> }[] };
    const t = st.paths[0]?.transport;
    assert.equal(st.paths[0]?.carrier, 'udp');
    assert.ok(t !== undefined, 'a udp path reports its transport');
    assert.equal(t.cc, 'bbr');
    // The transfer above crossed 5 % loss each way: the client's side saw losses and resent.
    assert.ok((t.packetsLost as number) > 0 && (t.retransmittedBytes as number) > 0, JSON.stringify(t));
    assert.ok((t.lossRate as number) > 0.01 && (t.lossRate as number) < 0.25, `loss rate ${t.lossRate}`);
    assert.ok((t.rttMs as number) > 0 && (t.cwndBytes as number) > 0 && (t.mtu as number) >= 1024);
    assert.ok((t.wirePerUseful as number) > 1, `wire/useful ${t.wirePerUseful}`);
    const txt = await runCli(['status', '--status', `127.0.0.1:${ports.status}`]);
    assert.match(txt.stdout, /^ {2}udp: +bbr, rtt [\d.]+ ms \(min [\d.]+\), cwnd .*, loss [\d.]+ % \(\d+ of \d+ packets, \d+ spurious\), resent .*, wire\/useful [\d.]+, mtu \d+$/m);
  });

  it('UDP through -L …/udp rides as datagrams of their own, not in the reliable stream', async () => {
    const sock = createSocket('udp4');
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    const replies = new Set<number>();
    sock.on('message', (m) => replies.add(m.readUInt32BE(0)));
    // 5 % loss each way: send a few rounds, count what came back.
    for (let i = 0; i < 100 && replies.size < 20; i++) {
      const m = Buffer.alloc(300);
      m.writeUInt32BE(i, 0);
      sock.send(m, ports.udpFwd, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    sock.close();
    assert.ok(replies.size >= 20, `${replies.size} echoes came back`);
    const j = await runCli(['status', '--status', `127.0.0.1:${ports.status}`, '--json']);
    const t = (JSON.parse(j.stdout) as { paths: { transport?: { datagramsSent: number; datagramsReceived: number } }[] }).paths[0]?.transport;
    assert.ok((t?.datagramsSent ?? 0) >= 20 && (t?.datagramsReceived ?? 0) >= 20, `datagrams on the path: ${JSON.stringify(t)}`);
  });

  it('a udp path that goes silent is declared dead, redialed and resumed: the stream across it arrives intact', async () => {
    const link = decodeLink(server.links[0] as string);
    const quiet = new UdpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port: link.port }, seed: 5 });
    await quiet.start();
    const fwd = await freePort();
    // Fast liveness so the silence is noticed in about a second.
    const c2 = await startClient(encodeLink({ ...link, port: quiet.address.port }), [
      '--no-socks', '-L', `127.0.0.1:${fwd}:127.0.0.1:${ports.sink}`,
      '--set', 'liveness.intervalMs=300', '--set', 'liveness.timeoutMs=300', '--set', 'liveness.misses=2',
    ], fwd);
    try {
      let resolve: () => void = () => undefined;
      const done = new Promise<void>((r) => (resolve = r));
      received = { bytes: 0, hash: createHash('sha256'), done, resolve };
      const sent = createHash('sha256');
      const s = net.connect(fwd, '127.0.0.1');
      await once(s, 'connect');
      const total = 8 * MIB;
      for (let off = 0; off < total; off += 128 * 1024) {
        const chunk = randomBytes(128 * 1024);
        sent.update(chunk);
        if (!s.write(chunk)) await once(s, 'drain');
        if (off === total / 2) {
          quiet.blackhole(true);
          await new Promise((r) => setTimeout(r, 3000));
          quiet.blackhole(false);
        }
      }
      s.end();
      await done;
      assert.equal(received.bytes, total);
      assert.equal(received.hash.digest('hex'), sent.digest('hex'), 'SHA-256 equal across the silence');
      assert.match(c2.log(), /session resumed/);
    } finally {
      await c2.stop();
      await quiet.close();
    }
  });

  it('answers probes and garbage with nothing', async () => {
    const port = decodeLink(server.links[0] as string).port;
    const sock = createSocket('udp4');
    let answers = 0;
    sock.on('message', () => answers++);
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    for (const n of [1, 12, 28, 64, 148, 213, 600, 1200, 1400]) {
      for (let i = 0; i < 5; i++) sock.send(randomBytes(n), port, '127.0.0.1');
    }
    // An HTTP/DNS-looking probe too.
    sock.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 1500));
    sock.close();
    assert.equal(answers, 0, 'not a byte back');
  });
});
