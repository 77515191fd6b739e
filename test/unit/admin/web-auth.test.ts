/**
 * The web dashboard's side of the admin listener, over fastify.inject (and
 * a real socket for the event stream): login with its rate limit, the
 * session cookie and its expiry, CSRF on cookie changes, the page's
 * headers, and the live overview.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { InjectOptions } from 'fastify';
import { buildAdminApi } from '../../../src/admin/api.js';
import { LiveFeed } from '../../../src/admin/live.js';
import { FailureLimiter } from '../../../src/admin/rate-limit.js';
import { DASHBOARD_CSP } from '../../../src/admin/web-pages.js';
import { WebSessions, sessionCookie } from '../../../src/admin/web-sessions.js';
import { FakeGateway, tempStore } from './helpers.js';

const TOKEN = 'web-auth-test-token-0123456789abcdef';
const HOST = 'admin.test:8443';

async function setup(t: TestContext, o: { secure?: boolean; webRoot?: string; maxSessions?: number; maxClients?: number } = {}) {
  const { store } = await tempStore(t);
  const gateway = new FakeGateway();
  let now = 1_000_000;
  const clock = () => now;
  const webSessions = new WebSessions({ now: clock, idleMs: 60_000, maxAgeMs: 600_000, ...(o.maxSessions === undefined ? {} : { max: o.maxSessions }) });
  const loginLimiter = new FailureLimiter({ now: clock, burst: 5, perMinute: 5 });
  const liveFeed = new LiveFeed({ view: gateway, intervalMs: 50, ...(o.maxClients === undefined ? {} : { maxClients: o.maxClients }) });
  const app = buildAdminApi({ store, gateway, adminToken: TOKEN, webSessions, loginLimiter, liveFeed, secure: o.secure ?? false, webRoot: o.webRoot ?? join(tmpdir(), 'polytun-no-such-web-root') });
  t.after(() => app.close());
  const call = async (method: NonNullable<InjectOptions['method']>, url: string, o2: { body?: object; headers?: Record<string, string>; ip?: string } = {}) => {
    const res = await app.inject({ method, url, headers: { host: HOST, ...o2.headers }, remoteAddress: o2.ip ?? '192.0.2.1', ...(o2.body === undefined ? {} : { payload: o2.body }) });
    return { status: res.statusCode, body: res.body === '' ? undefined : (res.json() as Record<string, unknown>), headers: res.headers };
  };
  const login = async (ip?: string) => {
    const r = await call('POST', '/api/login', { body: { token: TOKEN }, ...(ip === undefined ? {} : { ip }) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const cookie = sessionCookie(String(r.headers['set-cookie']).split(';')[0]);
    assert.ok(cookie !== undefined);
    return { cookie: `polytun_admin=${cookie}`, csrf: r.body?.csrf as string, setCookie: String(r.headers['set-cookie']) };
  };
  return { app, store, gateway, call, login, webSessions, advance: (ms: number) => (now += ms) };
}

describe('web dashboard: login', () => {
  it('sets an HttpOnly, SameSite=Strict, Path=/ cookie (Secure on https) and returns a CSRF token; the token is never in the cookie', async (t) => {
    const { login } = await setup(t);
    const s = await login();
    assert.match(s.setCookie, /^polytun_admin=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    assert.ok(!s.setCookie.includes(TOKEN));
    assert.match(s.csrf, /^[A-Za-z0-9_-]{43}$/);
    const secure = await setup(t, { secure: true });
    assert.match((await secure.login()).setCookie, /; Secure;/);
  });

  it('a wrong token is 401; five wrong tokens from one address, then 429 even for the right token; other addresses unaffected; a minute later it works', async (t) => {
    const { call, login, advance } = await setup(t);
    for (let i = 0; i < 5; i++) {
      const r = await call('POST', '/api/login', { body: { token: `${TOKEN}-wrong${i}` } });
      assert.equal(r.status, 401);
      assert.equal(r.headers['set-cookie'], undefined);
    }
    const limited = await call('POST', '/api/login', { body: { token: TOKEN } });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers['retry-after']) > 0);
    assert.equal(limited.headers['set-cookie'], undefined);
    await login('198.51.100.7');
    advance(13_000);
    await login();
  });

  it('refuses a login posted from another origin', async (t) => {
    const { call } = await setup(t);
    const r = await call('POST', '/api/login', { body: { token: TOKEN }, headers: { origin: 'https://evil.example' } });
    assert.equal(r.status, 403);
    assert.equal(r.headers['set-cookie'], undefined);
  });
});

describe('web dashboard: cookie sessions and CSRF', () => {
  it('a cookie reads; a change also needs X-Polytun-CSRF and a same-origin Origin; bearer scripts need neither', async (t) => {
    const { call, login, store } = await setup(t);
    const { cookie, csrf } = await login();
    assert.equal((await call('GET', '/api/users', { headers: { cookie } })).status, 200);
    const body = { name: 'alice', kind: 'token' };
    const noCsrf = await call('POST', '/api/users', { body, headers: { cookie } });
    assert.equal(noCsrf.status, 403);
    assert.match(String(noCsrf.body?.message), /x-polytun-csrf/);
    // One character off (never the same one: a token ending in 'A' got 'A' back once in 64 runs).
    const wrongCsrf = await call('POST', '/api/users', { body, headers: { cookie, 'x-polytun-csrf': `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` } });
    assert.equal(wrongCsrf.status, 403);
    const crossOrigin = await call('POST', '/api/users', { body, headers: { cookie, 'x-polytun-csrf': csrf, origin: 'http://evil.example' } });
    assert.equal(crossOrigin.status, 403);
    assert.equal(await store.count(), 0, 'nothing was created by the refused requests');
    const ok = await call('POST', '/api/users', { body, headers: { cookie, 'x-polytun-csrf': csrf, origin: `http://${HOST}` } });
    assert.equal(ok.status, 201);
    const del = await call('DELETE', '/api/users/alice', { headers: { cookie } });
    assert.equal(del.status, 403, 'DELETE is a change too');
    const bearer = await call('POST', '/api/users', { body: { name: 'bob', kind: 'token' }, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(bearer.status, 201);
    assert.equal(await store.count(), 2);
  });

  it('a wrong bearer header is 401 even beside a good cookie', async (t) => {
    const { call, login } = await setup(t);
    const { cookie } = await login();
    assert.equal((await call('GET', '/api/users', { headers: { cookie, authorization: `Bearer ${TOKEN}x` } })).status, 401);
  });

  it('GET /api/session gives the CSRF token back after a reload; logout ends the session', async (t) => {
    const { call, login } = await setup(t);
    const { cookie, csrf } = await login();
    const s = await call('GET', '/api/session', { headers: { cookie } });
    assert.deepEqual(s.body, { via: 'cookie', csrf });
    assert.deepEqual((await call('GET', '/api/session')).body, { via: null, csrf: null }, 'not logged in: said so, without a 401');
    assert.deepEqual((await call('GET', '/api/session', { headers: { authorization: `Bearer ${TOKEN}` } })).body, { via: 'bearer', csrf: null });
    assert.equal((await call('POST', '/api/logout', { headers: { cookie } })).status, 403, 'logout is a change: CSRF needed');
    const out = await call('POST', '/api/logout', { headers: { cookie, 'x-polytun-csrf': csrf } });
    assert.deepEqual([out.status, out.body], [200, { loggedOut: true }]);
    assert.match(String(out.headers['set-cookie']), /^polytun_admin=; .*Max-Age=0/);
    assert.equal((await call('GET', '/api/users', { headers: { cookie } })).status, 401);
    assert.deepEqual((await call('GET', '/api/session', { headers: { cookie } })).body, { via: null, csrf: null });
  });

  it('a session expires after its idle time, and the oldest goes when too many are open', async (t) => {
    const { call, login, advance } = await setup(t, { maxSessions: 2 });
    const a = await login();
    advance(59_000);
    assert.equal((await call('GET', '/api/users', { headers: { cookie: a.cookie } })).status, 200, 'used in time: refreshed');
    advance(59_000);
    assert.equal((await call('GET', '/api/users', { headers: { cookie: a.cookie } })).status, 200);
    advance(60_000);
    assert.equal((await call('GET', '/api/users', { headers: { cookie: a.cookie } })).status, 401, 'idle too long');
    const b = await login();
    const c = await login();
    const d = await login();
    assert.equal((await call('GET', '/api/users', { headers: { cookie: b.cookie } })).status, 401, 'evicted');
    assert.equal((await call('GET', '/api/users', { headers: { cookie: c.cookie } })).status, 200);
    assert.equal((await call('GET', '/api/users', { headers: { cookie: d.cookie } })).status, 200);
  });

  it('a forged or malformed cookie is 401', async (t) => {
    const { call } = await setup(t);
    assert.equal((await call('GET', '/api/users', { headers: { cookie: `polytun_admin=${'A'.repeat(43)}` } })).status, 401);
    assert.equal((await call('GET', '/api/users', { headers: { cookie: 'polytun_admin=<script>' } })).status, 401);
  });
});

describe('web dashboard: the page', () => {
  it('serves index and assets without auth, with the strict CSP and no-store on the page', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'polytun-web-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'assets'));
    await writeFile(join(root, 'index.html'), '<!doctype html><title>x</title><script type="module" src="/assets/app-1.js"></script>');
    await writeFile(join(root, 'assets/app-1.js'), `console.log(${JSON.stringify('x'.repeat(2000))})`);
    const { app } = await setup(t, { webRoot: root });
    const res = await app.inject({ method: 'GET', url: '/' });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /<title>x<\/title>/);
    assert.equal(res.headers['content-security-policy'], DASHBOARD_CSP);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['referrer-policy'], 'no-referrer');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(String(res.headers['content-type']), /^text\/html/);
    const js = await app.inject({ method: 'GET', url: '/assets/app-1.js', headers: { 'accept-encoding': 'gzip' } });
    assert.equal(js.statusCode, 200);
    assert.equal(js.headers['content-encoding'], 'gzip');
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.match(String(js.headers['cache-control']), /immutable/);
    assert.equal((await app.inject({ method: 'GET', url: '/assets/nope.js' })).statusCode, 404);
    assert.equal((await app.inject({ method: 'GET', url: '/assets/..%2Findex.html' })).statusCode, 404);
  });

  it('says the dashboard is not built when it is not', async (t) => {
    const { app } = await setup(t);
    const res = await app.inject({ method: 'GET', url: '/' });
    assert.equal(res.statusCode, 503);
    assert.match(res.body, /npm run build/);
  });
});

describe('web dashboard: live overview', () => {
  it('throughput is the growth of the session counters per second; users online are distinct', () => {
    const gateway = new FakeGateway();
    let now = 10_000;
    const feed = new LiveFeed({ view: gateway, now: () => now });
    const a = gateway.addSession('aa', 'u1', 1000);
    gateway.addSession('bb', 'u1', 0);
    assert.deepEqual([feed.sample().rateIn, feed.sample().sessions], [0, 2]);
    now += 2000;
    // The fake's sessions are plain objects: move their counters by hand.
    Object.assign(a, { bytesReceived: a.bytesReceived + 4000, bytesSent: a.bytesSent + 2000 });
    gateway.addSession('cc', 'u2', 500);
    const s = feed.sample();
    assert.equal(s.usersOnline, 2);
    assert.equal(s.sessions, 3);
    assert.equal(s.rateIn, (4000 + 1000) / 2, 'a session new since the last sample counts all its bytes');
    assert.equal(s.rateOut, (2000 + 500) / 2);
    assert.deepEqual(s.listeners, [{ carrier: 'tcp', address: '127.0.0.1', port: 7000, paths: 0 }]);
  });

  it('GET /api/events streams snapshots to a logged-in browser, caps the streams, and ends a stream at logout', async (t) => {
    const { app, login, gateway } = await setup(t, { maxClients: 1 });
    gateway.addSession('aa', 'u1');
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const { cookie, csrf } = await login();
    const open = (headers: Record<string, string>) =>
      new Promise<http.IncomingMessage>((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/api/events', headers }, resolve).on('error', reject));
    assert.equal((await open({})).statusCode, 401);
    const res = await open({ cookie });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (text += c));
    const ended = new Promise<void>((resolve) => res.on('end', resolve));
    while ((text.match(/^data: /gm) ?? []).length < 2) await new Promise((r) => setTimeout(r, 20));
    const first = JSON.parse(/^data: (.*)$/m.exec(text)?.[1] ?? '{}') as { sessions: number; usersOnline: number };
    assert.deepEqual([first.sessions, first.usersOnline], [1, 1]);
    const second = await open({ authorization: `Bearer ${TOKEN}` });
    assert.equal(second.statusCode, 503, 'one stream at most');
    second.resume();
    const out = await app.inject({ method: 'POST', url: '/api/logout', headers: { host: HOST, cookie, 'x-polytun-csrf': csrf } });
    assert.equal(out.statusCode, 200);
    await ended;
  });
});
