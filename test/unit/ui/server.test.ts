/**
 * The dashboard API's guard and read routes over real HTTP handling
 * (fastify inject, and a real listen for SSE): the Host check against DNS
 * rebinding, the CSRF header and same-origin check on POSTs, the password
 * login (cookie flags, rate limit), SSE snapshots and the reader cap.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildUiApi } from '../../../src/ui/server.js';
import { CSRF_HEADER } from '../../../src/ui/guard.js';
import { HOST, csrfOf, fakeTunnel, makeLink } from './helpers.js';

const apps: FastifyInstance[] = [];
after(async () => Promise.all(apps.map((a) => a.close())));
function build(init: Partial<Parameters<typeof buildUiApi>[0]> = {}): FastifyInstance {
  const tunnel = fakeTunnel();
  const app = buildUiApi({ tunnel: () => tunnel, wizard: { configFile: '/nonexistent/client.yaml' }, ...init });
  apps.push(app);
  return app;
}

describe('ui guard, no password (loopback)', () => {
  it('answers loopback Host names and refuses any other (DNS rebinding)', async () => {
    const app = build();
    for (const host of [HOST, 'localhost:7080', '[::1]:7080']) {
      const r = await app.inject({ method: 'GET', url: '/api/status', headers: { host } });
      assert.equal(r.statusCode, 200, host);
      assert.equal((r.json() as { state: string }).state, 'open');
    }
    for (const host of ['evil.example:7080', '192.168.1.5:7080', 'evil.example']) {
      const r = await app.inject({ method: 'GET', url: '/api/status', headers: { host } });
      assert.equal(r.statusCode, 403, host);
      assert.equal((r.json() as { error: string }).error, 'forbidden_host');
    }
  });

  it('refuses a POST without the CSRF token, with a wrong one, or from another origin', async () => {
    const app = build();
    const body = { link: makeLink() };
    const none = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST }, payload: body });
    assert.equal(none.statusCode, 403);
    assert.equal((none.json() as { error: string }).error, 'csrf');
    assert.match((none.json() as { message: string }).message, /GET \/api\/session/);
    const wrong = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, [CSRF_HEADER]: 'guess' }, payload: body });
    assert.equal(wrong.statusCode, 403);
    const csrf = await csrfOf(app);
    const cross = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, [CSRF_HEADER]: csrf, origin: 'https://evil.example' }, payload: body });
    assert.equal(cross.statusCode, 403);
    assert.equal((cross.json() as { error: string }).error, 'cross_origin');
    const site = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, [CSRF_HEADER]: csrf, 'sec-fetch-site': 'cross-site' }, payload: body });
    assert.equal(site.statusCode, 403);
    const ok = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, [CSRF_HEADER]: csrf, origin: `http://${HOST}` }, payload: body });
    assert.equal(ok.statusCode, 200, ok.body);
  });

  it('serves fronts, timeline and paths; 503 not_running before a tunnel; security headers', async () => {
    const app = build();
    const f = await app.inject({ method: 'GET', url: '/api/fronts', headers: { host: HOST } });
    assert.deepEqual((f.json() as { fronts: unknown[] }).fronts, [{ kind: 'socks5', listen: '127.0.0.1:1080', counters: { connections: 2, accepted: 5 } }]);
    assert.equal(f.headers['cache-control'], 'no-store');
    assert.match(String(f.headers['content-security-policy']), /default-src 'none'/);
    assert.equal(f.headers['access-control-allow-origin'], undefined);
    const t = await app.inject({ method: 'GET', url: '/api/timeline', headers: { host: HOST } });
    assert.equal((t.json() as { events: { kind: string }[] }).events[0]?.kind, 'connected');
    const h = await app.inject({ method: 'GET', url: '/api/history?path=tcp://127.0.0.1:4433', headers: { host: HOST } });
    assert.equal(h.statusCode, 404);
    assert.match((h.json() as { message: string }).message, /ui\.history/);
    const idle = build({ tunnel: () => undefined });
    const s = await idle.inject({ method: 'GET', url: '/api/status', headers: { host: HOST } });
    assert.equal(s.statusCode, 503);
    assert.equal((s.json() as { error: string }).error, 'not_running');
    assert.match((s.json() as { message: string }).message, /wizard/);
  });

  it('refuses a body over the limit with 413', async () => {
    const app = build({ bodyLimit: 1024 });
    const csrf = await csrfOf(app);
    const r = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, [CSRF_HEADER]: csrf, 'content-type': 'application/json' }, payload: JSON.stringify({ link: 'x'.repeat(4000) }) });
    assert.equal(r.statusCode, 413);
  });
});

describe('ui guard, with a password', () => {
  const password = 'correct horse battery';

  it('needs a login; the cookie is HttpOnly and SameSite=Strict; POSTs need the session CSRF token', async () => {
    const app = build({ password });
    const before = await app.inject({ method: 'GET', url: '/api/status', headers: { host: HOST } });
    assert.equal(before.statusCode, 401);
    const sess = await app.inject({ method: 'GET', url: '/api/session', headers: { host: HOST } });
    assert.deepEqual(sess.json(), { passwordRequired: true, authenticated: false });
    const bad = await app.inject({ method: 'POST', url: '/api/login', headers: { host: HOST }, payload: { password: 'nope' } });
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.headers['set-cookie'], undefined);
    const good = await app.inject({ method: 'POST', url: '/api/login', headers: { host: HOST }, payload: { password } });
    assert.equal(good.statusCode, 200);
    const setCookie = String(good.headers['set-cookie']);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    const cookie = setCookie.split(';')[0] as string;
    const csrf = (good.json() as { csrf: string }).csrf;
    const st = await app.inject({ method: 'GET', url: '/api/status', headers: { host: HOST, cookie } });
    assert.equal(st.statusCode, 200);
    const noCsrf = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, cookie }, payload: { link: makeLink() } });
    assert.equal(noCsrf.statusCode, 403);
    // Another session's (or the password-less) token is not this session's.
    const other = build({ password });
    const otherCsrf = await csrfOf(other).catch(() => 'none');
    assert.equal(otherCsrf, 'none');
    const ok = await app.inject({ method: 'POST', url: '/api/wizard/link', headers: { host: HOST, cookie, [CSRF_HEADER]: csrf }, payload: { link: makeLink() } });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(await csrfOf(app, cookie), csrf);
    const out = await app.inject({ method: 'POST', url: '/api/logout', headers: { host: HOST, cookie, [CSRF_HEADER]: csrf } });
    assert.equal(out.statusCode, 200);
    const after = await app.inject({ method: 'GET', url: '/api/status', headers: { host: HOST, cookie } });
    assert.equal(after.statusCode, 401);
  });

  it('serves the page and its assets without a login (they hold no secret), with their own CSP, to loopback Host names only', async () => {
    const web = mkdtempSync(join(tmpdir(), 'polytun-ui-web-'));
    try {
      mkdirSync(join(web, 'assets'));
      writeFileSync(join(web, 'index.html'), '<!doctype html><script type="module" src="/assets/app-1.js"></script>');
      writeFileSync(join(web, 'assets', 'app-1.js'), 'console.log(1)');
      const app = build({ password, webRoot: web });
      const page = await app.inject({ method: 'GET', url: '/', headers: { host: HOST } });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /app-1\.js/);
      assert.match(String(page.headers['content-security-policy']), /script-src 'self'/, 'the page policy, not the API\'s default-src none');
      assert.equal(page.headers['cache-control'], 'no-store');
      const asset = await app.inject({ method: 'GET', url: '/assets/app-1.js', headers: { host: HOST } });
      assert.equal(asset.statusCode, 200);
      assert.match(String(asset.headers['cache-control']), /immutable/);
      // The API behind it still needs the login; other Host names get nothing, page included.
      assert.equal((await app.inject({ method: 'GET', url: '/api/fronts', headers: { host: HOST } })).statusCode, 401);
      assert.equal((await app.inject({ method: 'GET', url: '/assets/../api/fronts', headers: { host: HOST } })).statusCode, 401);
      assert.equal((await app.inject({ method: 'GET', url: '/', headers: { host: 'evil.example:7080' } })).statusCode, 403);
    } finally {
      rmSync(web, { recursive: true, force: true });
    }
  });

  it('rate-limits wrong passwords per IP (429 with Retry-After), even for the right one then', async () => {
    const app = build({ password });
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await app.inject({ method: 'POST', url: '/api/login', headers: { host: HOST }, payload: { password: `wrong${i}` } })).statusCode);
    assert.deepEqual(codes, [401, 401, 401, 401, 401, 429]);
    const right = await app.inject({ method: 'POST', url: '/api/login', headers: { host: HOST }, payload: { password } });
    assert.equal(right.statusCode, 429);
    assert.ok(Number(right.headers['retry-after']) > 0);
    const otherIp = await app.inject({ method: 'POST', url: '/api/login', headers: { host: HOST }, remoteAddress: '127.0.0.9', payload: { password } });
    assert.equal(otherIp.statusCode, 200);
  });

  it('off loopback (anyHost) accepts other Host names but still needs the login', async () => {
    const app = build({ password, anyHost: true });
    const r = await app.inject({ method: 'GET', url: '/api/status', headers: { host: 'router.lan:7080' } });
    assert.equal(r.statusCode, 401);
  });
});

/** Reads `n` SSE events from url. */
function readEvents(url: string, n: number): Promise<{ event: string; data: unknown }[]> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host: HOST } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`status ${res.statusCode}`));
      }
      assert.match(String(res.headers['content-type']), /text\/event-stream/);
      let buf = '';
      const out: { event: string; data: unknown }[] = [];
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? '';
          const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null') as unknown;
          out.push({ event, data });
          if (out.length === n) {
            req.destroy();
            resolve(out);
          }
        }
      });
    });
    req.on('error', (e) => (e.message === 'socket hang up' ? undefined : reject(e)));
  });
}

describe('ui events (SSE)', () => {
  it('pushes a fresh status snapshot each period, and refuses readers past the cap', async () => {
    const app = build({ eventIntervalMs: 30, maxEventClients: 1 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/events`;
    const first = readEvents(url, 3);
    await new Promise((r) => setTimeout(r, 10));
    const busy = await new Promise<number>((resolve) => http.get(url, { headers: { host: HOST } }, (res) => (res.resume(), resolve(res.statusCode ?? 0))));
    assert.equal(busy, 503);
    const events = await first;
    assert.deepEqual(events.map((e) => e.event), ['status', 'status', 'status']);
    const sent = events.map((e) => (e.data as { bytesSent: number }).bytesSent);
    assert.ok(sent[0]! < sent[1]! && sent[1]! < sent[2]!, `a fresh snapshot each time: ${sent.join(',')}`);
  });
});
