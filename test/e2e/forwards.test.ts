/**
 * Issue "Proxy client and server", end to end: port forwards and UDP with real
 * `polytun server` / `polytun client` processes.
 *
 *   iperf3 -c ─▶ -L tcp ═══╗
 *   udp peer ─▶ -L /udp ═══╬══ session ══▶ server ─▶ iperf3 -s / udp echo (127.0.0.1)
 *   raw SOCKS5 UDP ASSOCIATE ═╝
 *   peer ─▶ server -R port ══ session ══▶ client ─▶ local service
 *
 * The iperf3 test skips with a reason when iperf3 is missing; CI installs it
 * (scripts/install-test-deps.sh).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, freePort, have, startClient, startServer, stopAll, type Proc, type Server } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';

const skipIperf = have('iperf3') ? false : 'iperf3 is not installed (run scripts/install-test-deps.sh)';

let server: Server;
let client: Proc;
let echo: UdpSocket;
let echoPort = 0;
let iperfServer: ChildProcess | undefined;
const ports = { socks: 0, status: 0, tcpFwd: 0, udpFwd: 0, iperf: 0 };

before(async () => {
  ensureBuilt();
  echo = createSocket('udp4');
  echo.on('message', (msg, from) => echo.send(msg, from.port, from.address));
  echo.bind(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = echo.address().port;

  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  if (!skipIperf) {
    const child = spawn('iperf3', ['-s', '--forceflush', '-B', '127.0.0.1', '-p', String(ports.iperf)], { stdio: ['ignore', 'pipe', 'inherit'] });
    iperfServer = child;
    // iperf3 prints this once it listens (probing the port instead would count as a failed
    // test run); --forceflush because its stdout is a pipe.
    for await (const line of createInterface({ input: child.stdout })) if (line.includes('Server listening')) break;
    child.stdout.resume();
  }
  server = await startServer(['--allow', '127.0.0.1', '--reverse']);
  client = await startClient(server.links[0] as string, [
    '--socks', `127.0.0.1:${ports.socks}`,
    '--status', `127.0.0.1:${ports.status}`,
    '-L', `127.0.0.1:${ports.tcpFwd}:127.0.0.1:${ports.iperf}`,
    '-L', `127.0.0.1:${ports.udpFwd}:127.0.0.1:${echoPort}/udp`,
  ], ports.status); // the status endpoint starts after every front
});

after(async () => {
  assert.equal(await client.stop(), 0, 'the client shuts down cleanly');
  await stopAll();
  if (iperfServer && iperfServer.exitCode === null) {
    iperfServer.kill('SIGTERM');
    await once(iperfServer, 'exit');
  }
  echo.close();
});

/** Sends `msg` until a datagram arrives (the datagram lane is unreliable by design); returns it. */
async function roundTrip(sock: UdpSocket, msg: Buffer, to: { port: number; host: string }): Promise<Buffer> {
  for (let attempt = 0; attempt < 30; attempt++) {
    const got = once(sock, 'message') as Promise<[Buffer]>;
    sock.send(msg, to.port, to.host);
    let timer: NodeJS.Timeout | undefined;
    const reply = await Promise.race([got.then(([m]) => m), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 1000)))]);
    clearTimeout(timer);
    if (reply) return reply;
  }
  assert.fail(`no reply from ${to.host}:${to.port} after 30 attempts`);
}

async function udpSocket(): Promise<UdpSocket> {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

describe('e2e forwards: -L TCP with iperf3', () => {
  for (const reverse of [false, true]) {
    it(`iperf3 -c through -L${reverse ? ' (-R: server sends)' : ''} runs and moves bytes`, { skip: skipIperf }, async () => {
      const run = promisify(execFile);
      const args = ['-c', '127.0.0.1', '-p', String(ports.tcpFwd), '-t', '2', '-J', ...(reverse ? ['-R'] : [])];
      const { stdout } = await run('iperf3', args, { timeout: 60_000, maxBuffer: 8 << 20 }).catch((err: { stdout?: string; message: string }) => {
        // iperf3 -J exits 1 with its error inside the JSON; show it.
        throw new assert.AssertionError({ message: `iperf3 failed: ${err.stdout ?? err.message}` });
      });
      const r = JSON.parse(stdout) as { error?: string; end: { sum_sent: { bytes: number }; sum_received: { bytes: number } } };
      assert.equal(r.error, undefined);
      assert.ok(r.end.sum_sent.bytes > 0, 'bytes sent');
      assert.ok(r.end.sum_received.bytes > 0, 'bytes received');
    });
  }
});

describe('e2e forwards: UDP', () => {
  it('SOCKS5 UDP ASSOCIATE: datagrams to an IP and to a name come back with the source address', async () => {
    const tcp = net.connect(ports.socks, '127.0.0.1');
    await once(tcp, 'connect');
    let got = Buffer.alloc(0);
    tcp.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
    // Greeting (no auth), then UDP ASSOCIATE with 0.0.0.0:0 ("any source"), pipelined.
    tcp.write(Buffer.from([5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
    while (got.length < 12) await once(tcp, 'data');
    assert.deepEqual([...got.subarray(0, 5)], [5, 0, 5, 0, 0], 'method chosen, request succeeded');
    assert.equal(got[5], 1, 'relay address is IPv4');
    const relay = { host: [...got.subarray(6, 10)].join('.'), port: got.readUInt16BE(10) };
    assert.equal(relay.host, '127.0.0.1');

    const sock = await udpSocket();
    const header = (atypAddr: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0]), atypAddr, Buffer.from([echoPort >> 8, echoPort & 0xff])]);
    const ipv4 = header(Buffer.from([1, 127, 0, 0, 1]));
    for (const size of [1, 64, 512, 1200]) {
      const payload = Buffer.alloc(size, size & 0xff);
      const reply = await roundTrip(sock, Buffer.concat([ipv4, payload]), relay);
      // RSV RSV FRAG | ATYP 1 127.0.0.1 | port | payload
      assert.deepEqual(reply.subarray(0, ipv4.length), ipv4, 'reply names the echo server as its source');
      assert.deepEqual(reply.subarray(ipv4.length), payload);
    }
    const byName = header(Buffer.concat([Buffer.from([3, 9]), Buffer.from('localhost')]));
    const reply = await roundTrip(sock, Buffer.concat([byName, Buffer.from('named')]), relay);
    assert.equal(reply.subarray(reply.length - 5).toString(), 'named');
    assert.equal(reply[3], 1, 'the source is the address the server resolved the name to');

    // The association lives as long as its TCP connection (RFC 1928 §7):
    // once that closes, the relay port is gone and a connected socket sees ICMP refusals.
    tcp.end();
    await once(tcp, 'close');
    sock.connect(relay.port, relay.host);
    await once(sock, 'connect');
    const refused = new Promise<string>((r) => sock.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')));
    const probe = setInterval(() => sock.send('x'), 50);
    const code = await refused;
    clearInterval(probe);
    assert.equal(code, 'ECONNREFUSED');
    sock.close();
  });

  it('-L …/udp: each local sender gets its own replies', async () => {
    const [a, b] = [await udpSocket(), await udpSocket()];
    const to = { host: '127.0.0.1', port: ports.udpFwd };
    for (let i = 0; i < 10; i++) {
      assert.equal((await roundTrip(a, Buffer.from(`a${i}`), to)).toString(), `a${i}`);
      assert.equal((await roundTrip(b, Buffer.from(`b${i}`.repeat(100)), to)).toString(), `b${i}`.repeat(100));
    }
    a.close();
    b.close();
  });
});

describe('e2e forwards: -R', () => {
  it('an interactive exchange through the server port reaches the client-side service; the port is released after the client exits', async () => {
    // The client-side service: answers each line like a shell echoing keystrokes.
    let served = 0;
    const svc = net.createServer((s) => {
      served++;
      const rl = createInterface({ input: s });
      rl.on('line', (l) => s.write(`ack ${l}\n`));
      s.on('error', () => s.destroy());
    });
    svc.listen(0, '127.0.0.1');
    await once(svc, 'listening');
    const svcPort = (svc.address() as net.AddressInfo).port;
    const [rPort, status] = [await freePort(), await freePort()];
    const rc = await startClient(server.links[0] as string, ['--no-socks', '--status', `127.0.0.1:${status}`, '-R', `127.0.0.1:${rPort}:127.0.0.1:${svcPort}`], status);
    // The status endpoint opens before the client dials; the -R comes up once connected.
    await eventually(async () => assert.match(rc.log(), new RegExp(`reverse ready listen="server 127\\.0\\.0\\.1:${rPort} -> 127\\.0\\.0\\.1:${svcPort}"`)));

    const peer = net.connect(rPort, '127.0.0.1');
    await once(peer, 'connect');
    const lines = createInterface({ input: peer })[Symbol.asyncIterator]();
    for (let i = 0; i < 200; i++) {
      peer.write(`${i}\n`);
      const next = await lines.next();
      assert.equal(next.value, `ack ${i}`);
    }
    peer.end();
    await once(peer, 'close');
    assert.equal(served, 1);

    assert.equal(await rc.stop(), 0);
    // Once the client has gone, nothing listens there any more.
    let code = '';
    for (let i = 0; i < 100 && code !== 'ECONNREFUSED'; i++) {
      code = await new Promise<string>((r) => {
        const s = net.connect(rPort, '127.0.0.1');
        s.on('connect', () => {
          s.destroy();
          setTimeout(() => r('connected'), 100);
        });
        s.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? ''));
      });
    }
    assert.equal(code, 'ECONNREFUSED');
    assert.equal(served, 1, 'no connection reached the service after the client left');
    await new Promise((r) => svc.close(r));
  });
});
