/**
 * The client's dashboard API end to end, with real processes: a `polytun
 * server` (tcp and udp listeners) and a `polytun client … --ui`, then
 * `polytun ui` alone driving the wizard from an empty config to a working
 * tunnel.
 *
 *   test ──HTTP──▶ client --ui ══ session ══▶ server
 *   test ──HTTP──▶ polytun ui ─apply─▶ client.yaml (0600) ─▶ in-process client ─ -L forward ─▶ origin
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ensureBuilt, freePort, polytun, startClient, startServer, stopAll, waitForPort, type Proc, type Server } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';

const CSRF = 'x-polytun-csrf';
const dir = mkdtempSync(join(tmpdir(), 'polytun-ui-e2e-'));
let server: Server;
let origin: http.Server;
let originPort: number;

before(async () => {
  ensureBuilt();
  server = await startServer(['--allow', '127.0.0.1'], ['tcp://127.0.0.1:0', 'udp://127.0.0.1:0']);
  origin = http.createServer((req, res) => res.end(req.url === '/big' ? Buffer.alloc(300_000, 7) : `hello from origin ${req.url ?? ''}`));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originPort = (origin.address() as AddressInfo).port;
});
after(async () => {
  await stopAll();
  origin.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A JSON request to the dashboard at `port` (node:http: fetch would not send another Host header). */
function api(port: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers: { ...(text !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let data = '';
      res.on('data', (c: Buffer) => (data += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

async function csrf(port: number): Promise<string> {
  return (await api(port, 'GET', '/api/session')).json.csrf as string;
}

/** The first `n` SSE events of /api/events. */
function events(port: number, n: number): Promise<{ event: string; data: Record<string, unknown> }[]> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events' }, (res) => {
      let buf = '';
      const out: { event: string; data: Record<string, unknown> }[] = [];
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        for (let i = buf.indexOf('\n\n'); i >= 0 && out.length < n; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          out.push({ event: /^event: (.*)$/m.exec(block)?.[1] ?? '', data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? '{}') as Record<string, unknown> });
        }
        if (out.length >= n) {
          req.destroy();
          resolve(out);
        }
      });
    });
    req.on('error', (e) => {
      if (e.message !== 'socket hang up') reject(e); // our own destroy() after the n-th event
    });
  });
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('polytun client --ui', () => {
  let client: Proc;
  let uiPort: number;

  before(async () => {
    uiPort = await freePort();
    const socks = await freePort();
    client = await startClient(server.links[0] as string, ['--socks', `127.0.0.1:${socks}`, '--ui', `127.0.0.1:${uiPort}`, '--set', `ui.history=${join(dir, 'client-history.db')}`], socks);
    await waitForPort(uiPort, '127.0.0.1', client);
  });

  it('GET /api/status shows the connected path; other Host names are refused', async () => {
    const st = await api(uiPort, 'GET', '/api/status');
    assert.equal(st.status, 200);
    assert.equal(st.json.state, 'open');
    const paths = st.json.paths as { carrier: string; state: string; label: string }[];
    const tcpPort = /@127\.0\.0\.1:(\d+)/.exec(server.links[0] as string)?.[1];
    assert.equal(paths.length, 1);
    assert.equal(paths[0]?.carrier, 'tcp');
    assert.equal(paths[0]?.state, 'up');
    assert.equal(paths[0]?.label, `127.0.0.1:${tcpPort}`);
    const evil = await api(uiPort, 'GET', '/api/status', undefined, { host: `evil.example:${uiPort}` });
    assert.equal(evil.status, 403);
    const timeline = await api(uiPort, 'GET', '/api/timeline');
    assert.equal((timeline.json.events as { kind: string }[])[0]?.kind, 'connected');
  });

  it('GET /api/events delivers status snapshots every second', async () => {
    const got = await events(uiPort, 2);
    assert.deepEqual(got.map((e) => e.event), ['status', 'status']);
    for (const e of got) assert.equal(e.data.state, 'open');
    assert.ok((got[1]?.data.sessionAgeMs as number) > (got[0]?.data.sessionAgeMs as number), 'the second is a later snapshot');
  });

  it('the wizard check reports the tcp and udp carriers reachable and a dead port as a failure that says what to fix', async () => {
    const deadPort = await freePort();
    const dead = (server.links[0] as string).replace(/@127\.0\.0\.1:\d+/, `@127.0.0.1:${deadPort}`);
    const body = { config: { link: server.links[0], backupServers: [server.links[1], dead] } };
    const noToken = await api(uiPort, 'POST', '/api/wizard/check', body);
    assert.equal(noToken.status, 403);
    const r = await api(uiPort, 'POST', '/api/wizard/check', body, { [CSRF]: await csrf(uiPort) });
    assert.equal(r.status, 200);
    const items = r.json.items as { id: string; result: string; carrier?: string; fix?: string; detail: string }[];
    const by = (id: string) => items.find((i) => i.id === id);
    assert.equal(by('reach:link')?.result, 'pass', JSON.stringify(by('reach:link')));
    assert.equal(by('reach:backup0')?.carrier, 'udp');
    assert.equal(by('reach:backup0')?.result, 'pass', JSON.stringify(by('reach:backup0')));
    assert.equal(by('reach:backup1')?.result, 'fail');
    assert.match(by('reach:backup1')?.fix ?? '', new RegExp(`nothing listens on 127\\.0\\.0\\.1:${deadPort}`));
    assert.equal(by('udp')?.result, 'pass');
    // On loopback the server sees the udp path come from exactly this end's address.
    assert.equal(by('nat')?.result, 'pass');
    assert.match(by('nat')?.detail ?? '', /^no NAT: this machine is 127\.0\.0\.1:\d+, the server sees 127\.0\.0\.1:\d+ \(over udp\)$/);
    assert.equal(by('mtu')?.result, 'not_measured');
    // A download and an upload through each endpoint that answered, with figures; none through the dead one.
    for (const id of ['speed:link', 'speed:backup0']) {
      assert.equal(by(id)?.result, 'pass', JSON.stringify(by(id)));
      assert.match(by(id)?.detail ?? '', /↓ \d+(\.\d+)? Mbit\/s, ↑ \d+(\.\d+)? Mbit\/s/);
    }
    assert.equal(by('speed:backup1'), undefined);
    assert.equal(r.json.ok, false);
  });
});

describe('polytun client --ui: path history across a restart', () => {
  it('the bytes a path moved are in /api/history after the client restarted', async () => {
    const uiPort = await freePort();
    const socks = await freePort();
    const fwd = await freePort();
    const args = ['--socks', `127.0.0.1:${socks}`, '-L', `${fwd}:127.0.0.1:${originPort}`, '--ui', `127.0.0.1:${uiPort}`, '--set', `ui.history=${join(dir, 'restart-history.db')}`];
    const first = await startClient(server.links[0] as string, args, socks);
    await waitForPort(fwd, '127.0.0.1', first);
    assert.equal((await get(fwd, '/big')).length, 300_000);
    assert.equal(await first.stop(), 0);
    const second = await startClient(server.links[0] as string, args, socks);
    await waitForPort(uiPort, '127.0.0.1', second);
    const tcpPort = /@127\.0\.0\.1:(\d+)/.exec(server.links[0] as string)?.[1];
    const paths = (await api(uiPort, 'GET', '/api/paths')).json.paths as string[];
    assert.ok(paths.includes(`tcp://127.0.0.1:${tcpPort}`), paths.join(', '));
    const h = await api(uiPort, 'GET', `/api/history?path=${encodeURIComponent(`tcp://127.0.0.1:${tcpPort}`)}&res=60`);
    assert.equal(h.status, 200, JSON.stringify(h.json));
    const down = (h.json.points as { down: number }[]).reduce((a, p) => a + p.down, 0);
    assert.ok(down >= 300_000, `the restarted client's history holds the first run's download: ${down} bytes`);
    await second.stop();
  });
});

describe('polytun ui: the wizard from nothing to a working tunnel', () => {
  let ui: Proc;
  let uiPort: number;
  const file = join(dir, 'wizard', 'client.yaml');

  before(async () => {
    uiPort = await freePort();
    ui = polytun(['ui', '--listen', `127.0.0.1:${uiPort}`, '--config', file]);
    const rl = createInterface({ input: ui.child.stdout as NodeJS.ReadableStream });
    for await (const line of rl) if (line.includes(`http://127.0.0.1:${uiPort}/`)) break;
  });

  it('starts with no tunnel, refuses a bad config with every issue, then applies one: 0600 YAML, a tunnel that carries HTTP', async () => {
    const idle = await api(uiPort, 'GET', '/api/status');
    assert.equal(idle.status, 503);
    assert.equal(idle.json.error, 'not_running');
    const token = await csrf(uiPort);
    const link = await api(uiPort, 'POST', '/api/wizard/link', { link: server.links[0] }, { [CSRF]: token });
    assert.equal(link.status, 200);
    assert.ok(!JSON.stringify(link.json).includes((server.links[0] as string).slice(10, 50)), 'the credential is not echoed');

    const bad = await api(uiPort, 'POST', '/api/wizard/apply', { config: { link: server.links[0], socks: 'nowhere', forwards: ['x'] } }, { [CSRF]: token });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'invalid_config');
    const where = (bad.json.issues as { where: string }[]).map((i) => i.where);
    assert.ok(where.includes('config.socks') && where.includes('config.forwards[0]'), where.join(', '));
    assert.throws(() => statSync(file), /ENOENT/);

    const fwd = await freePort();
    const config = { link: server.links[0], socks: false, status: false, forwards: [`${fwd}:127.0.0.1:${originPort}`], ui: { history: false } };
    const applied = await api(uiPort, 'POST', '/api/wizard/apply', { config }, { [CSRF]: token });
    assert.equal(applied.status, 200, JSON.stringify(applied.json));
    assert.equal(applied.json.started, true);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal((parseYaml(readFileSync(file, 'utf8')) as { link: string }).link, server.links[0]);

    await eventually(async () => {
      const s = await api(uiPort, 'GET', '/api/wizard/state');
      assert.equal((s.json.tunnel as { state: string }).state, 'running', JSON.stringify(s.json));
    });
    await waitForPort(fwd, '127.0.0.1', ui);
    const accepted = async (): Promise<number | undefined> => {
      const fronts = (await api(uiPort, 'GET', '/api/fronts')).json.fronts as { kind: string; counters?: { accepted?: number } }[];
      return fronts.find((f) => f.kind === 'forward')?.counters?.accepted;
    };
    const before = await accepted();
    assert.equal(await get(fwd, '/through-the-tunnel'), 'hello from origin /through-the-tunnel');
    assert.equal(await accepted(), (before ?? NaN) + 1, 'the forward counted the request\'s connection');
    const st = await api(uiPort, 'GET', '/api/status');
    assert.equal(st.json.state, 'open');
    assert.ok((st.json.bytesReceived as number) > 0);
  });
});
