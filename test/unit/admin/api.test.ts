/**
 * The admin REST API over fastify.inject, against a real SQLite store and a
 * fake gateway: every route, auth, and each error status.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { InjectOptions } from 'fastify';
import { buildAdminApi } from '../../../src/admin/api.js';
import { openPasswordVault } from '../../../src/admin/passwords.js';
import { decodeLink } from '../../../src/config/link.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Logger } from '../../../src/core/logger.js';
import { keyPairFromToken, publicKeyOf, decodeKey, encodeKey, generateKeyPair } from '../../../src/secure/keys.js';
import { TrafficHistory, type HistoryStore } from '../../../src/store/index.js';
import { FakeGateway, FINGERPRINT, tempStore } from './helpers.js';

const TOKEN = 'admin-token-for-tests-0123456789abcdef';

function recordingLogger(lines: string[]): Logger {
  const rec = (obj: object, msg?: string): void => void lines.push(JSON.stringify({ obj, msg }));
  const l: Logger = { debug: rec, info: rec, warn: rec, error: rec, child: () => l };
  return l;
}

async function setup(t: TestContext, opts: { bodyLimit?: number; vault?: boolean; history?: TrafficHistory } = {}) {
  const { dir, store } = await tempStore(t);
  const gateway = new FakeGateway();
  const logLines: string[] = [];
  const passwords = opts.vault === false ? undefined : await openPasswordVault({ dataDir: dir, store });
  t.after(() => passwords?.close());
  const app = buildAdminApi({
    store,
    gateway,
    adminToken: TOKEN,
    logger: recordingLogger(logLines),
    ...(passwords === undefined ? {} : { passwords }),
    ...(opts.bodyLimit === undefined ? {} : { bodyLimit: opts.bodyLimit }),
    history: opts.history,
  });
  t.after(() => app.close());
  const call = async (method: NonNullable<InjectOptions['method']>, url: string, payload?: unknown, auth: string | null = `Bearer ${TOKEN}`) => {
    const headers: Record<string, string> = auth === null ? {} : { authorization: auth };
    const opts: InjectOptions = { method, url, headers };
    if (typeof payload === 'string') {
      headers['content-type'] = 'application/json'; // raw text, sent as if it were JSON
      opts.payload = payload;
    } else if (payload !== undefined) opts.payload = payload as object;
    const res = await app.inject(opts);
    return { status: res.statusCode, body: res.body === '' ? undefined : (res.json() as Record<string, unknown>), headers: res.headers };
  };
  return { store, gateway, app, call, logLines, passwords };
}

describe('admin API: authentication', () => {
  it('401 without a token, with a wrong one, with another scheme; the same answer each time', async (t) => {
    const { call } = await setup(t);
    const missing = await call('GET', '/api/users', undefined, null);
    const wrong = await call('GET', '/api/users', undefined, `Bearer ${TOKEN}x`);
    const basic = await call('GET', '/api/users', undefined, `Basic ${Buffer.from(`a:${TOKEN}`).toString('base64')}`);
    const unknownRoute = await call('GET', '/api/nothing-here', undefined, null);
    for (const r of [missing, wrong, basic, unknownRoute]) {
      assert.equal(r.status, 401);
      assert.equal(r.headers['www-authenticate'], 'Bearer');
      assert.deepEqual(r.body, missing.body);
    }
    assert.equal((await call('GET', '/api/users', undefined, `bearer ${TOKEN}`)).status, 200, 'the scheme is case-insensitive');
    assert.equal((await call('GET', '/api/nothing-here')).status, 404);
  });

  it('refuses a short admin token at build time', () => {
    assert.throws(() => buildAdminApi({ store: undefined as never, gateway: new FakeGateway(), adminToken: 'short' }), { code: 'ERR_ADMIN_INVALID' });
  });
});

describe('admin API: users', () => {
  it('POST creates a key user: the secret and links come once, GET never shows the secret', async (t) => {
    const { call, gateway, store } = await setup(t);
    const r = await call('POST', '/api/users', { name: 'alice', kind: 'key', quotaBytes: 1000, policy: { allow: ['10.0.0.0/8'] } });
    assert.equal(r.status, 201);
    const user = r.body?.user as Record<string, unknown>;
    const secret = r.body?.secret as string;
    assert.equal(user.name, 'alice');
    assert.equal(user.quotaBytes, 1000);
    assert.equal(user.provisioning, false);
    assert.equal(user.publicKey, encodeKey(publicKeyOf(decodeKey(secret))));
    const links = (r.body?.links as string[]).map((l) => decodeLink(l));
    assert.equal(links.length, 2);
    assert.deepEqual(
      links.map((l) => [l.carrier, l.port, l.credential, l.serverKey]),
      [
        ['tcp', 7000, secret, gateway.publicKey],
        ['wss', 443, secret, gateway.publicKey],
      ],
    );
    // Issue 14: '/ws' is the shared token path, where only token users are selected: a key user got a link that met the decoy's 404.
    assert.match(links[1]?.path ?? '', /^\/u\/[0-9a-f]{32}$/, 'a key user created without wssPath gets a path of its own');
    assert.equal(user.wssPath, links[1]?.path);
    assert.equal(links[1]?.fingerprint, FINGERPRINT);
    const got = await call('GET', `/api/users/${String(user.id)}`);
    assert.equal(got.status, 200);
    assert.equal(got.body?.name, 'alice');
    assert.equal(JSON.stringify(got.body).includes(secret), false);
    assert.equal((await call('GET', '/api/users/alice')).body?.id, user.id, 'lookup by name');
    assert.equal((await store.getUser('alice'))?.quotaBytes, 1000, 'written through the store');
  });

  it("POST a token user with its token and wssPath 'auto': links carry the token and the user's path", async (t) => {
    const { call } = await setup(t);
    const token = 'tok_0123456789abcdefghij';
    const r = await call('POST', '/api/users', { name: 'bob', kind: 'token', token, wssPath: 'auto', dst: '127.0.0.1:8080' });
    assert.equal(r.status, 201);
    const user = r.body?.user as Record<string, unknown>;
    assert.match(String(user.wssPath), /^\/u\/[0-9a-f]{32}$/);
    assert.equal(user.dst, '127.0.0.1:8080');
    assert.equal(user.publicKey, encodeKey(keyPairFromToken(token).publicKey));
    const wss = decodeLink((r.body?.links as string[])[1] ?? '');
    assert.equal(wss.credentialKind, 'token');
    assert.equal(wss.credential, token);
    assert.equal(wss.path, user.wssPath);
  });

  it('a user created from a public key alone has no secret and no links', async (t) => {
    const { call } = await setup(t);
    const pub = encodeKey(generateKeyPair().publicKey);
    const r = await call('POST', '/api/users', { name: 'carol', kind: 'key', publicKey: pub });
    assert.equal(r.status, 201);
    assert.equal(r.body?.secret, null);
    assert.deepEqual(r.body?.links, []);
    const links = await call('GET', '/api/users/carol/links');
    assert.deepEqual(links.body, { id: (r.body?.user as { id: string }).id, kind: 'key', hasSecret: false, links: [] });
  });

  it('an endpoint that cannot go into a link: create still succeeds (linksError), GET links is a 500 saying why', async (t) => {
    const { call, gateway } = await setup(t);
    gateway.eps = [{ carrier: 'tcp', host: 'bad host!', port: 1 }];
    const r = await call('POST', '/api/users', { name: 'h', kind: 'key' });
    assert.equal(r.status, 201);
    assert.deepEqual(r.body?.links, []);
    assert.match(String(r.body?.linksError), /bad host/);
    const links = await call('GET', '/api/users/h/links');
    assert.equal(links.status, 500);
    assert.equal(links.body?.error, 'misconfigured');
    assert.equal(String(links.body?.message).includes(String(r.body?.secret)), false, 'the message never carries the credential');
  });

  it('400 names the field: missing, mistyped, unknown, contradictory, refused by the store, not JSON', async (t) => {
    const { call } = await setup(t);
    const cases: [unknown, string][] = [
      [{ kind: 'key' }, 'body.name'],
      [{ name: 'x', kind: 'key', quotaBytes: '5' }, 'body.quotaBytes'],
      [{ name: 'x', kind: 'key', quota: 5 }, 'body.quota'],
      [{ name: 'x', kind: 'key', udpMaxRate: 10 }, 'body.udpMaxRate'],
      [{ name: 'x', kind: 'key', udpMaxRate: '50mbit' }, 'body.udpMaxRate'],
      [{ name: 'x', kind: 'both' }, 'body.kind'],
      [{ name: 'x', kind: 'token', publicKey: encodeKey(generateKeyPair().publicKey) }, 'body.publicKey'],
      [{ name: 'x', kind: 'key', policy: { allow: ['1.2.3.4'], extra: [] } }, 'body.policy.extra'],
      [{ name: 'x', kind: 'key', dst: 'no-port-here' }, 'dst'],
      [{ name: ' x', kind: 'key' }, 'name'],
      ['{"name": "x", ', 'body'],
    ];
    for (const [payload, field] of cases) {
      const r = await call('POST', '/api/users', payload);
      assert.equal(r.status, 400, JSON.stringify(payload));
      assert.equal(r.body?.error, 'invalid');
      assert.equal(r.body?.field, field, JSON.stringify(r.body));
      assert.ok(String(r.body?.message).startsWith(field), String(r.body?.message));
    }
  });

  it('409 when another user holds the name or the path', async (t) => {
    const { call } = await setup(t);
    assert.equal((await call('POST', '/api/users', { name: 'dup', kind: 'key', wssPath: '/p1' })).status, 201);
    const byName = await call('POST', '/api/users', { name: 'dup', kind: 'key' });
    assert.deepEqual([byName.status, byName.body?.error, byName.body?.field], [409, 'conflict', 'name']);
    const byPath = await call('POST', '/api/users', { name: 'other', kind: 'key', wssPath: '/p1' });
    assert.deepEqual([byPath.status, byPath.body?.field], [409, 'wssPath']);
    const patch = await call('PATCH', '/api/users/other', { name: 'dup' });
    assert.equal(patch.status, 404, 'other was never created');
    await call('POST', '/api/users', { name: 'other', kind: 'key' });
    assert.equal((await call('PATCH', '/api/users/other', { name: 'dup' })).status, 409);
  });

  it('413 for a body over the limit (default 64 KiB, and a configured one)', async (t) => {
    const { call } = await setup(t);
    const big = { name: 'x', kind: 'key', policy: { allow: Array.from({ length: 700 }, () => 'a'.repeat(100)) } };
    assert.ok(JSON.stringify(big).length > 64 * 1024);
    const r = await call('POST', '/api/users', big);
    assert.deepEqual([r.status, r.body?.error], [413, 'too_large']);
    const small = await setup(t, { bodyLimit: 200 });
    assert.equal((await small.call('POST', '/api/users', { name: 'y', kind: 'key', policy: { allow: ['y'.repeat(150)] } })).status, 201);
    assert.equal((await small.call('POST', '/api/users', { name: 'z', kind: 'key', policy: { allow: ['y'.repeat(250)] } })).status, 413);
  });

  it('GET /api/users pages by limit+offset and by the keyset cursor', async (t) => {
    const { call } = await setup(t);
    for (let i = 0; i < 5; i++) await call('POST', '/api/users', { name: `u${i}`, kind: 'key' });
    const p1 = await call('GET', '/api/users?limit=2');
    assert.deepEqual((p1.body?.users as { name: string }[]).map((u) => u.name), ['u0', 'u1']);
    assert.equal(p1.body?.total, 5);
    const p2 = await call('GET', `/api/users?limit=2&after=${String(p1.body?.next)}`);
    assert.deepEqual((p2.body?.users as { name: string }[]).map((u) => u.name), ['u2', 'u3']);
    const p3 = await call('GET', '/api/users?limit=2&offset=4');
    assert.deepEqual((p3.body?.users as { name: string }[]).map((u) => u.name), ['u4']);
    assert.equal(p3.body?.next, null);
    const bad = await call('GET', '/api/users?limit=0');
    assert.deepEqual([bad.status, bad.body?.field], [400, 'querystring.limit']);
    assert.equal((await call('GET', '/api/users?limit=abc')).status, 400);
  });

  it('PATCH changes fields live, rekeys (new secret once), sets and clears the provisioning password', async (t) => {
    const { call, store, passwords } = await setup(t);
    const created = await call('POST', '/api/users', { name: 'dave', kind: 'token' });
    const id = (created.body?.user as { id: string }).id;
    const changes: string[] = [];
    const off = store.onChange((c) => void changes.push(c.op));
    t.after(off);
    assert.equal((created.body?.user as { udpMaxRate: unknown }).udpMaxRate, null, 'no udp rate cap of its own by default');
    const r = await call('PATCH', `/api/users/${id}`, { enabled: false, quotaBytes: null, expiresAt: 2_000_000_000_000, provisionPassword: 'correct horse', udpMaxRate: 6_250_000 });
    assert.equal(r.status, 200);
    assert.deepEqual(changes, ['update'], 'the store notified the change (caches follow it live)');
    const u = r.body?.user as Record<string, unknown>;
    assert.deepEqual([u.enabled, u.expiresAt, u.provisioning, u.udpMaxRate], [false, 2_000_000_000_000, true, 6_250_000]);
    assert.equal((await store.getUser(id))?.udpMaxRate, 6_250_000, 'written through the store');
    assert.ok((await passwords?.get(id))?.startsWith('scrypt$'));
    assert.equal(r.body?.secret, undefined, 'no secret without rekey');
    const rk = await call('PATCH', `/api/users/${id}`, { rekey: true, provisionPassword: null });
    assert.equal(typeof rk.body?.secret, 'string');
    assert.notEqual(rk.body?.secret, created.body?.secret);
    assert.notEqual((rk.body?.user as { publicKey: string }).publicKey, u.publicKey);
    assert.equal((rk.body?.links as string[]).length, 2);
    assert.equal(await passwords?.get(id), undefined);
    assert.equal((await call('PATCH', `/api/users/${id}`, {})).status, 400, 'an empty patch is refused');
    assert.equal((await call('PATCH', '/api/users/nobody', { enabled: true })).status, 404);
  });

  it('PATCH token: a key user becomes a token user (given or generated token), its links carry the token on the shared path', async (t) => {
    const { call, store } = await setup(t);
    const created = await call('POST', '/api/users', { name: 'tokenized', kind: 'key', wssPath: null });
    const id = (created.body?.user as { id: string }).id;
    const given = 'T'.repeat(20) + '_given-token';
    const r = await call('PATCH', `/api/users/${id}`, { token: given });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body?.secret, given, 'the reply carries the token once');
    assert.equal((r.body?.user as { kind: string }).kind, 'token');
    assert.equal((r.body?.user as { publicKey: string }).publicKey, keyPairFromToken(given).publicKey.toString('base64url'));
    const wss = decodeLink((r.body?.links as string[])[1] ?? '');
    assert.deepEqual([wss.credential, wss.credentialKind, wss.path], [given, 'token', '/ws']);
    assert.equal((await store.getUser(id, { withSecret: true }))?.secret, given);

    const auto = await call('PATCH', `/api/users/${id}`, { token: 'auto' });
    assert.equal(auto.status, 200);
    assert.match(String(auto.body?.secret), /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(auto.body?.secret, given);
    assert.deepEqual([(await call('PATCH', `/api/users/${id}`, { token: 'short' })).body?.field], ['body.token']);
    const both = await call('PATCH', `/api/users/${id}`, { token: 'auto', rekey: true });
    assert.deepEqual([both.status, both.body?.field], [400, 'body.token']);
  });

  it('provisionPassword is refused when provisioning is not enabled', async (t) => {
    const { call } = await setup(t, { vault: false });
    const r = await call('POST', '/api/users', { name: 'e', kind: 'key', provisionPassword: 'long enough' });
    assert.deepEqual([r.status, r.body?.field], [400, 'body.provisionPassword']);
  });

  it('DELETE closes the live sessions too unless kick=false, and the reply says how many are left', async (t) => {
    const { call, gateway, store, logLines } = await setup(t);
    const a = ((await call('POST', '/api/users', { name: 'a', kind: 'key' })).body?.user as { id: string }).id;
    const b = ((await call('POST', '/api/users', { name: 'b', kind: 'key' })).body?.user as { id: string }).id;
    gateway.addSession('s1', a);
    gateway.addSession('s2', b);
    gateway.addSession('s3', b);
    const soft = await call('DELETE', `/api/users/${a}?kick=false`);
    assert.deepEqual(soft.body, { deleted: true, id: a, kicked: 0, liveSessions: 1 });
    assert.deepEqual(gateway.live.map((s) => s.id), ['s1', 's2', 's3']);
    assert.equal(await store.getUser(a), undefined);
    const hard = await call('DELETE', `/api/users/b`);
    assert.deepEqual(hard.body, { deleted: true, id: b, kicked: 2, liveSessions: 0 });
    assert.deepEqual(gateway.live.map((s) => s.id), ['s1']);
    assert.deepEqual(gateway.kicks.map((k) => k.reason), ['user deleted', 'user deleted']);
    assert.ok(logLines.some((l) => /admin API: user deleted; its live sessions go on/.test(l) && /"liveSessions":1/.test(l)), logLines.join('\n'));
    assert.ok(logLines.some((l) => /"msg":"admin API: user deleted"/.test(l) && /"kicked":2/.test(l)), logLines.join('\n'));
    assert.equal((await call('DELETE', `/api/users/${b}`)).status, 404);
    assert.equal((await call('DELETE', `/api/users/x?kick=maybe`)).status, 400);
  });

  it('POST /api/users/:id/kick closes the sessions of that user only', async (t) => {
    const { call, gateway } = await setup(t);
    const a = ((await call('POST', '/api/users', { name: 'a', kind: 'key' })).body?.user as { id: string }).id;
    gateway.addSession('s1', a);
    gateway.addSession('s2', 'someone-else');
    assert.deepEqual((await call('POST', '/api/users/a/kick')).body, { id: a, kicked: 1 });
    assert.deepEqual(gateway.live.map((s) => s.id), ['s2']);
  });

  it('GET traffic sums stored counters and live sessions; GET links rebuilds the links', async (t) => {
    const { call, gateway, store } = await setup(t);
    const created = await call('POST', '/api/users', { name: 'f', kind: 'key', quotaBytes: 1000 });
    const id = (created.body?.user as { id: string }).id;
    await store.addTraffic([{ userId: id, up: 100, down: 250 }]);
    gateway.addSession('s1', id, 10);
    gateway.addSession('s2', id, 5);
    const tr = await call('GET', `/api/users/${id}/traffic`);
    assert.deepEqual(tr.body, {
      id,
      name: 'f',
      bytesUp: 100,
      bytesDown: 250,
      totalBytes: 350,
      quotaBytes: 1000,
      remainingBytes: 650,
      live: { sessions: 2, bytesSent: 15, bytesReceived: 30 },
    });
    const links = await call('GET', `/api/users/${id}/links`);
    assert.deepEqual(links.body?.links, created.body?.links);
    assert.equal((await call('GET', '/api/users/nobody/traffic')).status, 404);
    assert.equal((await call('GET', '/api/users/nobody/links')).status, 404);
  });

  it("GET traffic/history: a user's points and every user's, by range and resolution; 400 for a bad range, 404 when off", async (t) => {
    const T0 = Date.UTC(2026, 2, 1, 10);
    const { store } = await tempStore(t);
    const clock = new ManualClock(T0);
    const history = new TrafficHistory({ store: store.history as HistoryStore, node: 'n', clock, now: () => clock.now() });
    t.after(() => history.close());
    const { call, store: apiStore } = await setup(t, { history });
    const a = (await apiStore.createUser({ name: 'a' })).id;
    history.record('user', a, 10, 20, T0 + 1_000);
    history.record('user', a, 1, 2, T0 + 61_000);
    history.record('user', 'someone-else', 100, 200, T0 + 1_000);
    await history.flush();
    // The history and the API's user store are two databases here; the API reads the history it was given.
    const mine = await call('GET', `/api/users/a/traffic/history?from=${T0}&to=${T0 + 3_600_000}`);
    assert.deepEqual(mine.body, {
      id: a,
      from: T0,
      to: T0 + 3_600_000,
      resolution: 60,
      points: [
        { at: T0, up: 10, down: 20 },
        { at: T0 + 60_000, up: 1, down: 2 },
      ],
    });
    const hourly = await call('GET', `/api/users/${a}/traffic/history?from=${T0}&to=${T0 + 3_600_000}&res=3600`);
    assert.deepEqual(hourly.body?.points, [{ at: T0, up: 11, down: 22 }]);
    const all = await call('GET', `/api/traffic/history?from=${T0}&to=${T0 + 3_600_000}&res=3600`);
    assert.deepEqual(all.body?.points, [{ at: T0, up: 111, down: 222 }]);
    const bad = await call('GET', `/api/traffic/history?from=${T0}&to=${T0}`);
    assert.deepEqual([bad.status, bad.body?.field], [400, 'querystring.from']);
    assert.deepEqual((await call('GET', '/api/traffic/history?res=300')).status, 400);
    assert.equal((await call('GET', `/api/traffic/history?from=0&to=${T0}`)).status, 400, 'too many points');
    assert.equal((await call('GET', '/api/users/nobody/traffic/history')).status, 404);
    const { call: callOff } = await setup(t);
    const off = await callOff('GET', '/api/traffic/history');
    assert.deepEqual([off.status, off.body?.message], [404, 'traffic history is off on this server']);
  });
});

describe('admin API: sessions and status', () => {
  it('lists sessions (all, or one user), kicks one by id, 404 for an unknown id', async (t) => {
    const { call, gateway } = await setup(t);
    const a = ((await call('POST', '/api/users', { name: 'a', kind: 'key' })).body?.user as { id: string }).id;
    gateway.addSession('aa01', a);
    gateway.addSession('bb02', null);
    assert.deepEqual((await call('GET', '/api/sessions')).body?.sessions, gateway.sessions());
    assert.deepEqual(((await call('GET', '/api/sessions?user=a')).body?.sessions as { id: string }[]).map((s) => s.id), ['aa01']);
    assert.equal((await call('GET', '/api/sessions?user=nobody')).status, 404);
    assert.deepEqual((await call('DELETE', '/api/sessions/bb02')).body, { kicked: true, id: 'bb02' });
    assert.deepEqual(gateway.kicks, [{ id: 'bb02', reason: 'kicked by admin' }]);
    const again = await call('DELETE', '/api/sessions/bb02');
    assert.deepEqual([again.status, again.body?.error], [404, 'not_found']);
  });

  it('GET /api/status merges the gateway status with the store', async (t) => {
    const { call, gateway } = await setup(t);
    await call('POST', '/api/users', { name: 'a', kind: 'key' });
    gateway.addSession('s', null);
    const r = await call('GET', '/api/status');
    assert.deepEqual(r.body, { ...gateway.status(), listeners: [...gateway.status().listeners], users: 1, store: 'sqlite' });
  });

  it('a failing gateway is a 500 without detail, logged without the token or any secret', async (t) => {
    const { call, gateway, logLines } = await setup(t);
    const created = await call('POST', '/api/users', { name: 'g', kind: 'key' });
    gateway.status = () => {
      throw new Error('gateway exploded');
    };
    const r = await call('GET', '/api/status');
    assert.deepEqual([r.status, r.body], [500, { error: 'internal', message: 'internal error' }]);
    const errors = logLines.filter((l) => !l.includes('"msg":"admin API: ')); // the admin actions' own lines
    assert.equal(errors.length, 1, logLines.join('\n'));
    assert.match(errors[0] ?? '', /gateway exploded/);
    const all = logLines.join('\n');
    assert.equal(all.includes(TOKEN), false);
    assert.equal(all.includes(String(created.body?.secret)), false);
  });
});
