/**
 * Provisioning (/token + /config) over fastify.inject with a real SQLite
 * store, the file password vault and the data-dir HMAC key.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { hashPassword, openPasswordVault } from '../../../src/admin/passwords.js';
import { buildProvisionApi, type ProvisionInit } from '../../../src/admin/provision.js';
import { ensureProvisionSecret, PROVISION_SECRET_FILE } from '../../../src/admin/tokens.js';
import { decodeLink } from '../../../src/config/link.js';
import type { UserStore } from '../../../src/store/index.js';
import { FakeGateway, FINGERPRINT, tempStore } from './helpers.js';

const PASSWORD = 'router password 1';

interface Env {
  dir: string;
  store: UserStore;
  gateway: FakeGateway;
  clock: { now: number };
  userId: string;
}

async function env(t: TestContext): Promise<Env> {
  const { dir, store } = await tempStore(t);
  const vault = await openPasswordVault({ dataDir: dir, store });
  const u = await store.createUser({ name: 'router1', credential: { kind: 'token' }, wssPath: '/u/r1', dst: null });
  await vault.set(u.id, await hashPassword(PASSWORD));
  vault.close();
  return { dir, store, gateway: new FakeGateway(), clock: { now: 1_700_000_000_000 }, userId: u.id };
}

/** A provisioning server "process": its own vault and key loaded from the data dir. */
async function start(t: TestContext, e: Env, extra: Partial<ProvisionInit> = {}): Promise<FastifyInstance> {
  const passwords = await openPasswordVault({ dataDir: e.dir, store: e.store });
  const app = buildProvisionApi({ store: e.store, gateway: e.gateway, passwords, secret: await ensureProvisionSecret(e.dir), now: () => e.clock.now, ...extra });
  t.after(async () => {
    await app.close();
    passwords.close();
  });
  return app;
}

async function login(app: FastifyInstance, username: string, password: string, ip = '127.0.0.1') {
  const res = await app.inject({
    method: 'POST',
    url: '/token',
    remoteAddress: ip,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown>, headers: res.headers };
}

async function config(app: FastifyInstance, token: string | undefined) {
  const res = await app.inject({ method: 'GET', url: '/config', headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: res.json() as Record<string, unknown>, headers: res.headers };
}

describe('provisioning: /token and /config', () => {
  it('logs in with a form (omr style) or JSON and hands out the complete client config', async (t) => {
    const e = await env(t);
    const app = await start(t, e);
    const r = await login(app, 'router1', PASSWORD);
    assert.equal(r.status, 200);
    assert.equal(r.body.token_type, 'bearer');
    assert.equal(r.body.expires_in, 86400);
    assert.equal(r.body.token, r.body.access_token);
    assert.equal(r.body.expires, e.clock.now + 86_400_000);
    const viaJson = await app.inject({ method: 'POST', url: '/token', payload: { username: 'router1', password: PASSWORD } });
    assert.equal(viaJson.statusCode, 200);

    const c = await config(app, String(r.body.access_token));
    assert.equal(c.status, 200);
    const secret = (await e.store.getUser(e.userId, { withSecret: true }))?.secret;
    assert.deepEqual(c.body.user, { id: e.userId, name: 'router1' });
    assert.deepEqual(c.body.credential, { kind: 'token', secret });
    assert.equal(c.body.wssPath, '/u/r1');
    assert.deepEqual(c.body.server, {
      publicKey: e.gateway.publicKey,
      endpoints: [
        { carrier: 'tcp', host: 'gw.example', port: 7000 },
        { carrier: 'wss', host: 'gw.example', port: 443, sni: 'gw.example', fingerprint: FINGERPRINT, path: '/u/r1' },
      ],
    });
    const wss = decodeLink((c.body.links as string[])[1] ?? '');
    assert.deepEqual([wss.credential, wss.credentialKind, wss.path, wss.sni, wss.serverKey], [secret, 'token', '/u/r1', 'gw.example', e.gateway.publicKey]);
  });

  it('401 for a wrong password, an unknown name, a user without password, a login by id; 400 names a missing field', async (t) => {
    const e = await env(t);
    await e.store.createUser({ name: 'nopass' });
    const app = await start(t, e, { rateLimit: { burst: 100 } });
    for (const [name, pw] of [['router1', 'wrong password'], ['ghost', PASSWORD], ['nopass', PASSWORD], [e.userId, PASSWORD]] as const) {
      const r = await login(app, name, pw);
      assert.equal(r.status, 401, name);
      assert.deepEqual(r.body, { detail: 'Incorrect username or password' });
      assert.equal(r.headers['www-authenticate'], 'Bearer');
    }
    const missing = await app.inject({ method: 'POST', url: '/token', payload: { username: 'router1' } });
    assert.equal(missing.statusCode, 400);
    assert.match((missing.json() as { detail: string }).detail, /^body\.password/);
  });

  it('a token survives a restart (same data dir) and dies with another key', async (t) => {
    const e = await env(t);
    const first = await start(t, e);
    const token = String((await login(first, 'router1', PASSWORD)).body.access_token);
    await first.close();
    const second = await start(t, e);
    assert.equal((await config(second, token)).status, 200, 'the key came back from provision.secret');
    assert.equal((await stat(join(e.dir, PROVISION_SECRET_FILE))).mode & 0o777, 0o600);

    const otherDir = await mkdtemp(join(tmpdir(), 'polytun-admin-other-'));
    t.after(() => rm(otherDir, { recursive: true, force: true }));
    const foreign = await start(t, { ...e, dir: otherDir });
    assert.equal((await config(foreign, token)).status, 401);
  });

  it('401 for missing, garbage, forged and expired tokens, and after a password change', async (t) => {
    const e = await env(t);
    const app = await start(t, e);
    const token = String((await login(app, 'router1', PASSWORD)).body.access_token);
    const [payload = '', mac = ''] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, exp: (claims.exp as number) + 1e9 })).toString('base64url');
    const flipped = `${payload}.${mac.slice(0, 10)}${mac[10] === 'A' ? 'B' : 'A'}${mac.slice(11)}`;
    for (const bad of [undefined, 'garbage', `${payload}.`, `${forgedPayload}.${mac}`, flipped]) {
      const r = await config(app, bad);
      assert.equal(r.status, 401, String(bad));
      assert.deepEqual(r.body, { detail: 'Could not validate credentials' });
    }
    assert.equal((await config(app, token)).status, 200);
    e.clock.now += 86_400_000 - 1;
    assert.equal((await config(app, token)).status, 200, 'valid until its last millisecond');
    e.clock.now += 1;
    assert.equal((await config(app, token)).status, 401, 'expired');

    e.clock.now = 1_700_000_000_000;
    const fresh = String((await login(app, 'router1', PASSWORD)).body.access_token);
    const vault = await openPasswordVault({ dataDir: e.dir });
    await vault.set(e.userId, await hashPassword('a new password'));
    vault.close();
    const restarted = await start(t, e);
    assert.equal((await config(restarted, fresh)).status, 401, 'a new password revokes old tokens');
  });

  it('403 for a disabled or expired user, on /config and after a correct password on /token', async (t) => {
    const e = await env(t);
    const app = await start(t, e);
    const token = String((await login(app, 'router1', PASSWORD)).body.access_token);
    await e.store.updateUser(e.userId, { enabled: false });
    assert.deepEqual([(await config(app, token)).status, (await config(app, token)).body], [403, { detail: 'user is disabled' }]);
    assert.equal((await login(app, 'router1', PASSWORD)).status, 403);
    await e.store.updateUser(e.userId, { enabled: true, expiresAt: e.clock.now - 1 });
    assert.deepEqual((await config(app, token)).body, { detail: 'user is expired' });
  });

  it('rate-limits failed logins per address (429 + Retry-After), refills over time, other addresses unaffected', async (t) => {
    const e = await env(t);
    const app = await start(t, e, { rateLimit: { burst: 3, perMinute: 60 } });
    for (let i = 0; i < 3; i++) assert.equal((await login(app, 'router1', 'nope', '192.0.2.7')).status, 401);
    const limited = await login(app, 'router1', PASSWORD, '192.0.2.7');
    assert.equal(limited.status, 429, 'even the right password waits');
    assert.equal(limited.headers['retry-after'], '1');
    assert.equal((await login(app, 'router1', PASSWORD, '192.0.2.8')).status, 200);
    // IPv6 clients share one bucket per /64.
    for (let i = 0; i < 3; i++) await login(app, 'router1', 'nope', `2001:db8:1:2::${i + 1}`);
    assert.equal((await login(app, 'router1', PASSWORD, '2001:db8:1:2:ffff::9')).status, 429);
    assert.equal((await login(app, 'router1', PASSWORD, '2001:db8:1:3::1')).status, 200);
    e.clock.now += 1000;
    assert.equal((await login(app, 'router1', PASSWORD, '192.0.2.7')).status, 200, 'one token came back after a second');
  });
});
