/**
 * Data-dir secrets, signed tokens, password hashing and the password vault,
 * and the failure limiter.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import fc from 'fast-check';
import { hashPassword, openPasswordVault, PASSWORDS_FILE, verifyPassword } from '../../../src/admin/passwords.js';
import { FailureLimiter } from '../../../src/admin/rate-limit.js';
import { ADMIN_TOKEN_FILE, bearerToken, ensureAdminToken, ensureProvisionSecret, passwordTag, secretsEqual, signToken, verifyToken } from '../../../src/admin/tokens.js';
import { tempStore } from './helpers.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'polytun-admin-tok-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('admin token and provisioning key files', () => {
  it('created once (0600), then read back unchanged', async (t) => {
    const dir = await tempDir(t);
    const a = await ensureAdminToken(dir);
    assert.equal(a.created, true);
    assert.match(a.token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await stat(join(dir, ADMIN_TOKEN_FILE))).mode & 0o777, 0o600);
    const b = await ensureAdminToken(dir);
    assert.deepEqual(b, { token: a.token, created: false });
    const k1 = await ensureProvisionSecret(dir);
    assert.equal(k1.length, 32);
    assert.deepEqual(await ensureProvisionSecret(dir), k1);
    assert.notEqual(k1.toString('base64url'), a.token, 'two independent secrets');
  });

  it('a corrupt file is an error and is left untouched', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, ADMIN_TOKEN_FILE), 'not a token\n', { mode: 0o600 });
    await assert.rejects(ensureAdminToken(dir), { code: 'ERR_CONFIG' });
    assert.equal(await readFile(join(dir, ADMIN_TOKEN_FILE), 'utf8'), 'not a token\n');
  });

  it('secretsEqual and bearerToken', () => {
    assert.equal(secretsEqual('abc', 'abc'), true);
    assert.equal(secretsEqual('abc', 'abd'), false);
    assert.equal(secretsEqual('abc', 'abcd'), false);
    assert.equal(bearerToken('Bearer xyz'), 'xyz');
    assert.equal(bearerToken('bearer  xyz '), 'xyz');
    assert.equal(bearerToken('Basic xyz'), undefined);
    assert.equal(bearerToken('Bearer'), undefined);
    assert.equal(bearerToken('Bearer a b'), undefined);
    assert.equal(bearerToken(undefined), undefined);
  });
});

describe('signed tokens', () => {
  const key = Buffer.alloc(32, 1);
  const claims = { sub: '0190a1b2-0000-7000-8000-000000000001', iat: 1000, exp: 5000, pwd: 'tag' };

  it('round-trips until exp, not at exp, and not under another key', () => {
    const tok = signToken(key, claims);
    assert.deepEqual(verifyToken(key, tok, 4999), claims);
    assert.equal(verifyToken(key, tok, 5000), undefined);
    assert.equal(verifyToken(Buffer.alloc(32, 2), tok, 1000), undefined);
  });

  it('any change to any character is refused', () => {
    const tok = signToken(key, claims);
    fc.assert(
      fc.property(fc.nat(tok.length - 1), fc.constantFrom(...'ABCxyz019_-.'), (i, ch) => {
        fc.pre(tok[i] !== ch);
        const bad = tok.slice(0, i) + ch + tok.slice(i + 1);
        // Base64url's last character carries spare bits: a change there may decode to the same MAC.
        const sameBytes = Buffer.from(bad.split('.')[1] ?? '', 'base64url').equals(Buffer.from(tok.split('.')[1] ?? '', 'base64url')) && bad.split('.')[0] === tok.split('.')[0];
        assert.equal(verifyToken(key, bad, 1000) === undefined, !sameBytes);
      }),
    );
  });

  it('passwordTag changes with the hash', async () => {
    const h1 = await hashPassword('one password');
    const h2 = await hashPassword('one password');
    assert.notEqual(passwordTag(h1), passwordTag(h2), 'fresh salt, fresh tag');
    assert.equal(passwordTag(h1), passwordTag(h1));
  });
});

describe('passwords', () => {
  it('scrypt hashes verify only the right password; no hash never verifies', async () => {
    const h = await hashPassword('s3cret password');
    assert.match(h, /^scrypt\$16384\$8\$1\$/);
    assert.equal(await verifyPassword('s3cret password', h), true);
    assert.equal(await verifyPassword('s3cret passwore', h), false);
    assert.equal(await verifyPassword('s3cret password', undefined), false);
    assert.equal(await verifyPassword('x', 'not a hash'), false);
  });

  it('the vault persists (0600), and drops the entry of a user the store deletes', async (t) => {
    const { dir, store } = await tempStore(t);
    const u = await store.createUser({ name: 'v' });
    const keep = await store.createUser({ name: 'w' });
    const v1 = await openPasswordVault({ dataDir: dir, store });
    t.after(() => v1.close());
    const h = await hashPassword('password one');
    await v1.set(u.id, h);
    await v1.set(keep.id, h);
    assert.equal((await stat(join(dir, PASSWORDS_FILE))).mode & 0o777, 0o600);
    const v2 = await openPasswordVault({ dataDir: dir });
    assert.equal(await v2.get(u.id), h);
    await store.deleteUser(u.id);
    assert.equal(await v1.get(u.id), undefined);
    // The drop is written in the background: wait for it to reach the file.
    await v1.settled();
    assert.ok(!(await readFile(join(dir, PASSWORDS_FILE), 'utf8')).includes(u.id), 'the file no longer names the deleted user');
    const v3 = await openPasswordVault({ dataDir: dir });
    assert.equal(await v3.get(u.id), undefined);
    assert.equal(await v3.get(keep.id), h);
    await assert.rejects(v3.set(keep.id, 'plain text'), { code: 'ERR_CONFIG' });
  });

  it('a corrupt vault file is an error', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, PASSWORDS_FILE), '{"id": "plaintext"}');
    await assert.rejects(openPasswordVault({ dataDir: dir }), { code: 'ERR_CONFIG' });
  });
});

describe('FailureLimiter', () => {
  it('allows a burst of failures, then refills at the set rate', () => {
    let now = 0;
    const l = new FailureLimiter({ burst: 2, perMinute: 6, now: () => now });
    assert.equal(l.retryAfterMs('a'), 0);
    l.fail('a');
    assert.equal(l.retryAfterMs('a'), 0);
    l.fail('a');
    assert.equal(l.retryAfterMs('a'), 10_000);
    assert.equal(l.retryAfterMs('b'), 0, 'keys are independent');
    now = 9_999;
    assert.ok(l.retryAfterMs('a') > 0);
    now = 10_000;
    assert.equal(l.retryAfterMs('a'), 0);
  });

  it('keeps at most maxKeys, forgetting the least recently failed', () => {
    const l = new FailureLimiter({ burst: 1, perMinute: 1, maxKeys: 3, now: () => 0 });
    for (const k of ['a', 'b', 'c', 'd']) l.fail(k);
    assert.equal(l.size, 3);
    assert.equal(l.retryAfterMs('a'), 0, 'a was forgotten');
    assert.ok(l.retryAfterMs('d') > 0);
  });
});
