/**
 * The gateway's ws/wss route against a real SQLite user store: a user's own
 * path selects it; on the shared token path the bearer value a token user's
 * client sends selects that user, and nothing else does (missing, wrong or
 * stale value, the raw token, the right value on another path). The cache
 * behind it hands out users without their secret.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { wsBearerFromToken } from '../../../src/secure/keys.js';
import { openDataDir } from '../../../src/server/datadir.js';
import { Gateway } from '../../../src/server/gateway.js';
import type { User } from '../../../src/store/index.js';
import { waitUntil } from '../../helpers/eventually.js';

let dir: string;
let gw: Gateway;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'polytun-route-'));
  gw = await Gateway.open({ storeUrl: '', dataDir: await openDataDir(dir), policy: { allow: [], deny: [] }, wsTokenPath: '/tunnel' });
});
after(async () => {
  await gw.close();
  await rm(dir, { recursive: true, force: true });
});

const req = (url: string, authorization?: string): IncomingMessage => ({ url, headers: authorization === undefined ? {} : { authorization } }) as IncomingMessage;
const routed = (r: IncomingMessage): string | undefined => {
  const d = gw.route(r);
  return d.accept ? d.meta?.userId : undefined;
};

/** Waits until `ok` holds (store changes reach the cache asynchronously). */
async function until(ok: () => boolean, what: string): Promise<void> {
  await waitUntil(ok, `the cache to catch up: ${what}`);
}
const cached = (id: string, ok: (u: User | undefined) => boolean): Promise<void> => until(() => ok(gw.cache.byId(id)), id);

describe('gateway route: token users on the shared path', () => {
  it('the bearer value selects its token user on the token path only; anything else is refused', async () => {
    const tina = await gw.store.createUser({ name: 'tina', credential: { kind: 'token' } });
    const kim = await gw.store.createUser({ name: 'kim', wssPath: '/u/kim' });
    await cached(tina.id, (u) => u !== undefined);
    await cached(kim.id, (u) => u !== undefined);
    const token = tina.secret as string;
    const bearer = wsBearerFromToken(token);

    assert.equal(routed(req('/tunnel', `Bearer ${bearer}`)), tina.id);
    assert.equal(routed(req('/tunnel?x=1', `bearer  ${bearer}`)), tina.id, 'query ignored, scheme case-insensitive');
    assert.equal(routed(req('/u/kim')), kim.id, 'a per-user path still selects without a token');
    for (const [what, r] of [
      ['no header', req('/tunnel')],
      ['wrong value', req('/tunnel', `Bearer ${wsBearerFromToken('not-the-token')}`)],
      ['the raw token', req('/tunnel', `Bearer ${token}`)],
      ['another scheme', req('/tunnel', `Basic ${bearer}`)],
      ['right value, other path', req('/', `Bearer ${bearer}`)],
      ['right value, path prefix', req('/tunnel/x', `Bearer ${bearer}`)],
    ] as const) {
      assert.deepEqual(gw.route(r), { accept: false }, what);
    }
    assert.equal('secret' in (gw.cache.byId(tina.id) as object), false, 'the cache keeps no secret');
  });

  it('a new token stops the old value at once; a deleted user is refused; a key user has no bearer', async () => {
    const tom = await gw.store.createUser({ name: 'tom', credential: { kind: 'token' } });
    await cached(tom.id, (u) => u !== undefined);
    const old = wsBearerFromToken(tom.secret as string);
    assert.equal(routed(req('/tunnel', `Bearer ${old}`)), tom.id);
    const newer = 'N'.repeat(24) + '-tom';
    await gw.store.updateUser(tom.id, { credential: { kind: 'token', token: newer } });
    await until(() => routed(req('/tunnel', `Bearer ${wsBearerFromToken(newer)}`)) === tom.id, 'new token');
    assert.deepEqual(gw.route(req('/tunnel', `Bearer ${old}`)), { accept: false });
    await gw.store.updateUser(tom.id, { credential: { kind: 'key' } });
    await cached(tom.id, (u) => u?.kind === 'key');
    assert.deepEqual(gw.route(req('/tunnel', `Bearer ${wsBearerFromToken(newer)}`)), { accept: false }, 'a key user is not selected by its old token');
    await gw.store.deleteUser(tom.id);
    await cached(tom.id, (u) => u === undefined);
    assert.deepEqual(gw.route(req('/tunnel', `Bearer ${old}`)), { accept: false });
  });
});
