/**
 * Issue 18, `--metrics`: a real `polytun server` and `polytun client`, each
 * with --metrics, move a known number of bytes through the client's -L port;
 * both /metrics are scraped over HTTP, read with the strict text-format
 * parser (test/helpers/prom-text.ts), and their byte counters must have
 * moved by at least what was sent each way (the proxy's payload counters and
 * the user's, by exactly that).
 *
 *   test ─▶ -L port ══ session ══▶ server ─▶ sink (127.0.0.1): reads UP bytes, answers DOWN bytes
 *   test ─▶ client /metrics, server /metrics
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeLink } from '../../src/config/link.js';
import { ensureBuilt, freePort, runCli, startClient, startServer, stopAll, type Proc, type Server } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { parsePromText, promValue, type PromFamily } from '../helpers/prom-text.js';

const UP = 3 * 1024 * 1024 + 17;
const DOWN = 1024 * 1024 + 5;

let server: Server;
let client: Proc;
let sink: net.Server;
const ports = { sink: 0, fwd: 0, clientMetrics: 0, serverMetrics: 0 };

before(async () => {
  ensureBuilt();
  // Reads UP bytes, then answers DOWN bytes and closes.
  sink = net.createServer((s) => {
    let got = 0;
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got === UP) s.end(Buffer.alloc(DOWN, 0x5a));
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  ports.sink = (sink.address() as net.AddressInfo).port;
  for (const k of ['fwd', 'clientMetrics', 'serverMetrics'] as const) ports[k] = await freePort();
  server = await startServer(['--allow', '127.0.0.1', '--metrics', `127.0.0.1:${ports.serverMetrics}`]);
  client = await startClient(server.links[0] as string, [
    '--no-socks',
    '--no-status',
    '-L', `127.0.0.1:${ports.fwd}:127.0.0.1:${ports.sink}`,
    '--metrics', `127.0.0.1:${ports.clientMetrics}`,
  ], ports.clientMetrics); // the metrics endpoint opens after every front
});

after(async () => {
  assert.equal(await client.stop(), 0, 'the client shuts down cleanly, its metrics endpoint too');
  await stopAll();
  await new Promise((r) => sink.close(r));
});

async function scrape(port: number): Promise<{ text: string; families: Map<string, PromFamily> }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  return { text, families: parsePromText(text) };
}

/** Sends UP bytes through the -L port and reads the DOWN bytes back. */
async function moveBytes(): Promise<void> {
  const s = net.connect(ports.fwd, '127.0.0.1');
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (c: Buffer) => (got += c.length));
    s.on('end', resolve);
    s.on('error', reject);
  });
  s.write(Buffer.alloc(UP, 0xa5));
  await done;
  s.destroy();
  assert.equal(got, DOWN, 'the sink answered in full');
}

const n = (f: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number => {
  const v = promValue(f, name, labels);
  assert.ok(v !== undefined, `${name}${JSON.stringify(labels)} is exported`);
  return v;
};

describe('--metrics (real server and client)', () => {
  let clientBefore: Map<string, PromFamily>;
  let serverBefore: Map<string, PromFamily>;
  let clientAfter: { text: string; families: Map<string, PromFamily> };
  let serverAfter: { text: string; families: Map<string, PromFamily> };

  before(async () => {
    clientBefore = (await scrape(ports.clientMetrics)).families;
    serverBefore = (await scrape(ports.serverMetrics)).families;
    await moveBytes();
    // The last bytes' acknowledgements and the counters settle a moment after the socket ends.
    clientAfter = await eventually(async () => {
      const s = await scrape(ports.clientMetrics);
      assert.ok(n(s.families, 'polytun_client_session_received_bytes_total') - n(clientBefore, 'polytun_client_session_received_bytes_total') >= DOWN);
      return s;
    });
    serverAfter = await scrape(ports.serverMetrics);
  });

  it('the client counts the bytes it sent and received', () => {
    const d = (name: string): number => n(clientAfter.families, name) - n(clientBefore, name);
    assert.ok(d('polytun_client_session_sent_bytes_total') >= UP, `sent ${d('polytun_client_session_sent_bytes_total')} < ${UP}`);
    assert.ok(d('polytun_client_session_received_bytes_total') >= DOWN);
    assert.equal(n(clientAfter.families, 'polytun_client_session_open'), 1);
  });

  it('the server counts the session', () => {
    const f = serverAfter.families;
    assert.ok(n(f, 'polytun_server_handshakes_total', { result: 'accepted' }) >= 1);
    assert.equal(n(f, 'polytun_server_sessions'), 1);
  });

  it('the server counts the bytes each way: sessions, proxy, and the user', async () => {
    const was = (name: string, labels: Record<string, string> = {}): number => promValue(serverBefore, name, labels) ?? 0;
    const d = (f: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number => n(f, name, labels) - was(name, labels);
    const moved = (f: Map<string, PromFamily>): boolean =>
      d(f, 'polytun_server_session_bytes_total', { direction: 'received' }) >= UP &&
      d(f, 'polytun_server_session_bytes_total', { direction: 'sent' }) >= DOWN &&
      d(f, 'polytun_proxy_bytes_total', { direction: 'up' }) >= UP &&
      d(f, 'polytun_proxy_bytes_total', { direction: 'down' }) >= DOWN &&
      d(f, 'polytun_gateway_user_up_bytes_total') >= UP &&
      d(f, 'polytun_gateway_user_down_bytes_total') >= DOWN;
    // The server's counters settle a moment after the client's socket ends.
    const f = await eventually(async () => {
      const { families } = await scrape(ports.serverMetrics);
      assert.ok(moved(families));
      return families;
    }, 10_000).catch(async () => (await scrape(ports.serverMetrics)).families);
    assert.ok(d(f, 'polytun_server_session_bytes_total', { direction: 'received' }) >= UP, 'session bytes received');
    assert.ok(d(f, 'polytun_server_session_bytes_total', { direction: 'sent' }) >= DOWN, 'session bytes sent');
    assert.equal(d(f, 'polytun_proxy_bytes_total', { direction: 'up' }), UP, 'proxy payload up: exactly what was sent');
    assert.equal(d(f, 'polytun_proxy_bytes_total', { direction: 'down' }), DOWN, 'proxy payload down');
    assert.equal(d(f, 'polytun_gateway_user_up_bytes_total'), UP, 'the one user\'s bytes up');
    assert.equal(d(f, 'polytun_gateway_user_down_bytes_total'), DOWN, 'the one user\'s bytes down');
    // The listener's pre-auth gate reports into the same Metrics (labelled by listener).
    const gate = f.get('polytun_listener_preauth_connections')?.samples ?? [];
    assert.ok(gate.some((s) => /^tcp:\/\/127\.0\.0\.1:\d+$/.test(s.labels.listener ?? '')), JSON.stringify(gate));
  });

  it('both export the process metrics under polytun_', () => {
    for (const { families } of [clientAfter, serverAfter]) {
      assert.ok(n(families, 'polytun_process_resident_memory_bytes') > 0);
      assert.ok(n(families, 'polytun_process_open_fds') > 0);
      assert.equal(families.get('polytun_process_cpu_seconds_total')?.type, 'counter');
      assert.equal(families.get('polytun_nodejs_eventloop_lag_seconds')?.type, 'gauge');
    }
  });

  it('no secret in a scrape: neither the user\'s credential nor the server key', () => {
    const link = decodeLink(server.links[0] as string);
    for (const { text } of [clientAfter, serverAfter]) {
      assert.ok(!text.includes(link.credential), 'the credential is not in the scrape');
      assert.ok(!text.includes(link.serverKey), 'the server key is not in the scrape');
    }
  });

  it('only GET/HEAD /metrics; a foreign Host header is refused', async () => {
    assert.equal((await fetch(`http://127.0.0.1:${ports.serverMetrics}/`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${ports.serverMetrics}/metrics`, { method: 'POST' })).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${ports.clientMetrics}/metrics`, { method: 'HEAD' })).status, 200);
    const forbidden = await new Promise<number>((resolve, reject) => {
      const s = net.connect(ports.clientMetrics, '127.0.0.1', () => s.end('GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n'));
      let head = '';
      s.on('data', (c: Buffer) => (head += c.toString('latin1')));
      s.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1])));
      s.on('error', reject);
    });
    assert.equal(forbidden, 403);
  });
});

describe('--metrics refuses a non-loopback address', () => {
  it('in one line naming the flag, exit status 1, unless --metrics-allow-remote', async () => {
    const r = await runCli(['client', server.links[0] as string, '--no-socks', '--no-status', '--metrics', '0.0.0.0:9464']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^polytun: --metrics: must be a loopback address .*--metrics-allow-remote/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });
});
