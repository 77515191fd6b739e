/**
 * The suite every user store backend runs: a backend's test file calls
 * `userStoreSuite(name, fixture)` with a way to make an empty database and to
 * open store instances on it.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { decodeKey, generateKeyPair, keyPairFromToken, publicKeyOf } from '../../../src/secure/keys.js';
import { StoreError, UserCache, userRefusal } from '../../../src/store/index.js';
import type { StoreChange, User, UserStore } from '../../../src/store/index.js';

/** What a backend's test file provides. */
export interface StoreSuiteFixture {
  /** Makes a fresh, empty database and returns its handle (a folder, a schema…). */
  createDb(): Promise<string>;
  /** Opens one more store instance on a database made by createDb. */
  open(db: string): Promise<UserStore>;
  /** Removes a database made by createDb (its stores are closed by then). */
  dropDb(db: string): Promise<void>;
  /** True when a change made through one instance reaches another instance's onChange (PostgreSQL). */
  sharedNotifications: boolean;
  /** Kills the LISTEN connection of `store` from outside, so it has to reconnect. */
  cutListener?(store: UserStore): Promise<void>;
}

const WAIT_MS = 30_000; // a hang guard only: a loaded machine may take seconds

/** Polls `cond` until it holds, at most WAIT_MS; fails naming `what`. */
export async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Asserts that `p` rejects with a StoreError of `code` naming `field`. */
async function rejectsStore(p: Promise<unknown>, code: string, field?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (field !== undefined) assert.equal(err.field, field);
    return true;
  });
}

/** Records the changes a store reports. */
function recorder(store: UserStore): { changes: StoreChange[]; has(op: string, id: string): boolean } {
  const changes: StoreChange[] = [];
  store.onChange((c) => changes.push(c));
  return { changes, has: (op, id) => changes.some((c) => c.op === op && 'userId' in c && c.userId === id) };
}

/** Runs the whole contract against one backend. */
export function userStoreSuite(name: string, fx: StoreSuiteFixture): void {
  /** A fresh database and an opener whose stores (and the database) are cleaned up after the test. */
  async function setup(t: TestContext): Promise<{ store: UserStore; open(): Promise<UserStore>; db: string }> {
    const db = await fx.createDb();
    const opened: UserStore[] = [];
    const caches: UserCache[] = [];
    t.after(async () => {
      for (const c of caches) c.close();
      for (const s of opened) await s.close();
      await fx.dropDb(db);
    });
    const open = async (): Promise<UserStore> => {
      const s = await fx.open(db);
      opened.push(s);
      return s;
    };
    return { store: await open(), open, db };
  }

  async function cacheOf(t: TestContext, store: UserStore): Promise<UserCache> {
    const c = await UserCache.open({ store, retryMs: 50 });
    t.after(() => c.close());
    return c;
  }

  describe(`${name}: user store`, () => {
    it('creates a key user with a generated key pair, and the defaults', async (t) => {
      const { store } = await setup(t);
      const before = Date.now();
      const u = await store.createUser({ name: 'alice' });
      assert.match(u.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(u.kind, 'key');
      assert.equal(u.publicKey.length, 32);
      assert.equal(typeof u.secret, 'string');
      assert.deepEqual(publicKeyOf(decodeKey(u.secret as string)), u.publicKey);
      assert.equal(u.wssPath, null);
      assert.equal(u.dst, null);
      assert.deepEqual(u.policy, {});
      assert.equal(u.quotaBytes, null);
      assert.equal(u.expiresAt, null);
      assert.equal(u.enabled, true);
      assert.equal(u.bytesUp, 0);
      assert.equal(u.bytesDown, 0);
      assert.ok(u.createdAt >= before - 1000 && u.updatedAt === u.createdAt);
      assert.equal(await store.count(), 1);
    });

    it('derives token users from the token; keeps no secret for a public key alone', async (t) => {
      const { store } = await setup(t);
      const tok = await store.createUser({ name: 'tok', credential: { kind: 'token', token: 'correct horse battery staple 0123456789' } });
      assert.equal(tok.kind, 'token');
      assert.equal(tok.secret, 'correct horse battery staple 0123456789');
      assert.deepEqual(tok.publicKey, keyPairFromToken('correct horse battery staple 0123456789').publicKey);
      const gen = await store.createUser({ name: 'gen', credential: { kind: 'token' } });
      assert.deepEqual(gen.publicKey, keyPairFromToken(gen.secret as string).publicKey);
      const pair = generateKeyPair();
      const pubOnly = await store.createUser({ name: 'pub', credential: { kind: 'key', publicKey: pair.publicKey } });
      assert.equal(pubOnly.secret, null);
      assert.deepEqual(pubOnly.publicKey, pair.publicKey);
      const priv = generateKeyPair();
      const withPriv = await store.createUser({ name: 'priv', credential: { kind: 'key', privateKey: priv.privateKey } });
      assert.deepEqual(withPriv.publicKey, priv.publicKey);
      assert.deepEqual(decodeKey(withPriv.secret as string), priv.privateKey);
      await rejectsStore(store.createUser({ name: 'bad', credential: { kind: 'key', privateKey: priv.privateKey, publicKey: pair.publicKey } }), 'ERR_STORE_INVALID', 'credential');
      await rejectsStore(store.createUser({ name: 'short', credential: { kind: 'key', publicKey: Buffer.alloc(31) } }), 'ERR_STORE_INVALID', 'credential');
    });

    it('looks users up by id, name, key and path; secrets only when asked', async (t) => {
      const { store } = await setup(t);
      const a = await store.createUser({ name: 'alice', wssPath: '/u/alice' });
      const b = await store.createUser({ name: 'bob', wssPath: '/u/bob' });
      const byId = await store.getUser(a.id);
      assert.equal(byId?.name, 'alice');
      assert.equal(Object.hasOwn(byId as object, 'secret'), false);
      assert.equal((await store.getUser('bob'))?.id, b.id);
      assert.equal((await store.getUser('bob', { withSecret: true }))?.secret, b.secret);
      assert.equal((await store.findByPublicKey(b.publicKey))?.id, b.id);
      assert.equal(Object.hasOwn((await store.findByPublicKey(b.publicKey)) as object, 'secret'), false);
      assert.equal((await store.findByPath('/u/alice'))?.id, a.id);
      assert.equal((await store.findByPath('/u/alice', { withSecret: true }))?.secret, a.secret);
      assert.equal(await store.getUser('carol'), undefined);
      assert.equal(await store.getUser('0190aaaa-0000-7000-8000-000000000000'), undefined);
      assert.equal(await store.findByPublicKey(generateKeyPair().publicKey), undefined);
      assert.equal(await store.findByPath('/u/carol'), undefined);
    });

    it('lists users in creation order with limit, offset and keyset paging', async (t) => {
      const { store } = await setup(t);
      const made: User[] = [];
      for (let i = 0; i < 7; i++) made.push(await store.createUser({ name: `user${i}` }));
      const all = await store.listUsers();
      assert.deepEqual(all.map((u) => u.name), made.map((u) => u.name));
      assert.ok(all.every((u) => !Object.hasOwn(u, 'secret')));
      assert.deepEqual((await store.listUsers({ withSecret: true })).map((u) => u.secret), made.map((u) => u.secret));
      assert.deepEqual((await store.listUsers({ limit: 3, offset: 2 })).map((u) => u.name), ['user2', 'user3', 'user4']);
      assert.deepEqual((await store.listUsers({ limit: 2, afterId: made[4]?.id as string })).map((u) => u.name), ['user5', 'user6']);
      await rejectsStore(store.listUsers({ limit: 0 }), 'ERR_STORE_INVALID', 'list');
    });

    it('updates fields, re-keys, and reports an unknown id', async (t) => {
      const { store } = await setup(t);
      const u = await store.createUser({ name: 'alice', wssPath: '/u/a' });
      // The clock must move past u.updatedAt (ms resolution). A 5 ms timer is not
      // enough: timers count from the loop's cached time, which lags under load.
      await waitFor(() => Date.now() > u.updatedAt, 'the clock to pass the creation time');
      const v = await store.updateUser(u.id, { name: 'alice2', dst: 'example.com:443', policy: { allow: ['10.0.0.0/8'], deny: ['*:25'] }, quotaBytes: 1000, wssPath: null });
      assert.equal(v.name, 'alice2');
      assert.equal(v.dst, 'example.com:443');
      assert.deepEqual(v.policy, { allow: ['10.0.0.0/8'], deny: ['*:25'] });
      assert.equal(v.quotaBytes, 1000);
      assert.equal(v.wssPath, null);
      assert.ok(v.updatedAt > u.updatedAt);
      assert.equal(v.createdAt, u.createdAt);
      assert.deepEqual(v.publicKey, u.publicKey);
      // The freed path can be taken by someone else.
      await store.createUser({ name: 'bob', wssPath: '/u/a' });
      const rekeyed = await store.updateUser(u.id, { credential: { kind: 'token', token: 'new-token-of-alice' } });
      assert.equal(rekeyed.kind, 'token');
      assert.equal(await store.findByPublicKey(u.publicKey), undefined);
      assert.equal((await store.findByPublicKey(keyPairFromToken('new-token-of-alice').publicKey))?.id, u.id);
      assert.equal((await store.getUser(u.id, { withSecret: true }))?.secret, 'new-token-of-alice');
      await rejectsStore(store.updateUser('0190aaaa-0000-7000-8000-000000000000', { enabled: false }), 'ERR_STORE_NOT_FOUND', 'id');
    });

    it('deletes users and resets all', async (t) => {
      const { store } = await setup(t);
      const a = await store.createUser({ name: 'a' });
      await store.createUser({ name: 'b' });
      await store.createUser({ name: 'c' });
      assert.equal(await store.deleteUser(a.id), true);
      assert.equal(await store.deleteUser(a.id), false);
      assert.equal(await store.getUser(a.id), undefined);
      assert.equal(await store.count(), 2);
      assert.equal(await store.resetAll(), 2);
      assert.equal(await store.count(), 0);
      assert.deepEqual(await store.listUsers(), []);
    });

    it('refuses duplicates with ERR_STORE_CONFLICT naming the field', async (t) => {
      const { store } = await setup(t);
      const a = await store.createUser({ name: 'alice', wssPath: '/u/a', credential: { kind: 'token', token: 'tok-a' } });
      const b = await store.createUser({ name: 'bob', wssPath: '/u/b' });
      await rejectsStore(store.createUser({ name: 'alice' }), 'ERR_STORE_CONFLICT', 'name');
      await rejectsStore(store.createUser({ name: 'x', credential: { kind: 'token', token: 'tok-a' } }), 'ERR_STORE_CONFLICT', 'publicKey');
      await rejectsStore(store.createUser({ name: 'y', credential: { kind: 'key', publicKey: b.publicKey } }), 'ERR_STORE_CONFLICT', 'publicKey');
      await rejectsStore(store.createUser({ name: 'z', wssPath: '/u/b' }), 'ERR_STORE_CONFLICT', 'wssPath');
      await rejectsStore(store.updateUser(b.id, { name: 'alice' }), 'ERR_STORE_CONFLICT', 'name');
      await rejectsStore(store.updateUser(b.id, { wssPath: '/u/a' }), 'ERR_STORE_CONFLICT', 'wssPath');
      await rejectsStore(store.updateUser(b.id, { credential: { kind: 'token', token: 'tok-a' } }), 'ERR_STORE_CONFLICT', 'publicKey');
      // Nothing changed on a failed write; many users may have no path.
      assert.equal((await store.getUser(b.id))?.wssPath, '/u/b');
      assert.equal(await store.count(), 2);
      await store.createUser({ name: 'n1' });
      await store.createUser({ name: 'n2' });
      assert.equal((await store.getUser(a.id))?.name, 'alice');
    });

    it('validates input with ERR_STORE_INVALID', async (t) => {
      const { store } = await setup(t);
      await rejectsStore(store.createUser({ name: '' }), 'ERR_STORE_INVALID', 'name');
      await rejectsStore(store.createUser({ name: ' padded' }), 'ERR_STORE_INVALID', 'name');
      await rejectsStore(store.createUser({ name: 'p', wssPath: 'no-slash' }), 'ERR_STORE_INVALID', 'wssPath');
      await rejectsStore(store.createUser({ name: 'p', wssPath: '/a?b=c' }), 'ERR_STORE_INVALID', 'wssPath');
      await rejectsStore(store.createUser({ name: 'd', dst: 'no-port' }), 'ERR_STORE_INVALID', 'dst');
      await rejectsStore(store.createUser({ name: 'q', quotaBytes: -1 }), 'ERR_STORE_INVALID', 'quotaBytes');
      await rejectsStore(store.createUser({ name: 'e', expiresAt: 1.5 }), 'ERR_STORE_INVALID', 'expiresAt');
      await rejectsStore(store.createUser({ name: 'x', policy: { allow: 'all' as unknown as string[] } }), 'ERR_STORE_INVALID', 'policy');
      await rejectsStore(store.createUser({ name: 'x', policy: { permit: [] } as unknown as { allow: string[] } }), 'ERR_STORE_INVALID', 'policy');
      assert.equal(await store.count(), 0);
    });

    it('round-trips expiry, enabled, quota, dst and policy through a reopen', async (t) => {
      const { store, open } = await setup(t);
      const expiresAt = Date.UTC(2031, 4, 6, 7, 8, 9, 123);
      const u = await store.createUser({ name: 'e', expiresAt, enabled: false, quotaBytes: 2 ** 40, dst: '[2001:db8::1]:8443', policy: { deny: ['*.example.com'] } });
      await store.close();
      const again = await open();
      const r = await again.getUser(u.id);
      assert.equal(r?.expiresAt, expiresAt);
      assert.equal(r?.enabled, false);
      assert.equal(r?.quotaBytes, 2 ** 40);
      assert.equal(r?.dst, '[2001:db8::1]:8443');
      assert.deepEqual(r?.policy, { deny: ['*.example.com'] });
      const back = await again.updateUser(u.id, { enabled: true, expiresAt: null, quotaBytes: null });
      assert.equal(back.enabled, true);
      assert.equal(back.expiresAt, null);
      assert.equal(back.quotaBytes, null);
      await assert.rejects(store.count(), { code: 'ERR_CLOSED' });
    });

    it('round-trips the mtt flag (off by default) through create, patch and a reopen', async (t) => {
      const { store, open } = await setup(t);
      const plain = await store.createUser({ name: 'plain' });
      assert.equal(plain.mtt, false);
      const m = await store.createUser({ name: 'm', wssPath: '/m', dst: '127.0.0.1:1', mtt: true });
      assert.equal(m.mtt, true);
      assert.equal((await store.updateUser(plain.id, { mtt: true })).mtt, true);
      await rejectsStore(store.createUser({ name: 'bad', mtt: 'yes' as unknown as boolean }), 'ERR_STORE_INVALID', 'mtt');
      await store.close();
      const again = await open();
      assert.equal((await again.getUser(m.id))?.mtt, true);
      assert.equal((await again.updateUser(m.id, { mtt: false })).mtt, false);
    });

    it('round-trips a per-user udp rate cap (none by default), refusing what is not bytes per second', async (t) => {
      const { store, open } = await setup(t);
      const plain = await store.createUser({ name: 'plain' });
      assert.equal(plain.udpMaxRate, null);
      const capped = await store.createUser({ name: 'capped', udpMaxRate: 6_250_000 });
      assert.equal(capped.udpMaxRate, 6_250_000);
      assert.equal((await store.updateUser(plain.id, { udpMaxRate: 125_000 })).udpMaxRate, 125_000);
      for (const bad of [0, 999, 1.5, 1e13, '50mbit'] as unknown as number[]) {
        await rejectsStore(store.createUser({ name: `bad-${String(bad)}`, udpMaxRate: bad }), 'ERR_STORE_INVALID', 'udpMaxRate');
      }
      await store.close();
      const again = await open();
      assert.equal((await again.getUser(capped.id))?.udpMaxRate, 6_250_000);
      assert.equal((await again.updateUser(capped.id, { udpMaxRate: null })).udpMaxRate, null);
    });

    it('adds traffic in batches, summing duplicates and ignoring unknown users', async (t) => {
      const { store } = await setup(t);
      const a = await store.createUser({ name: 'a' });
      const b = await store.createUser({ name: 'b' });
      await store.addTraffic([
        { userId: a.id, up: 10, down: 100 },
        { userId: b.id, up: 1, down: 2 },
        { userId: a.id, up: 5, down: 50 },
        { userId: '0190aaaa-0000-7000-8000-000000000000', up: 9, down: 9 },
      ]);
      await store.addTraffic([]);
      const ra = await store.getUser(a.id);
      assert.deepEqual([ra?.bytesUp, ra?.bytesDown], [15, 150]);
      assert.equal(ra?.updatedAt, a.updatedAt, 'counters are not a config change');
      const rb = await store.getUser(b.id);
      assert.deepEqual([rb?.bytesUp, rb?.bytesDown], [1, 2]);
      await rejectsStore(store.addTraffic([{ userId: a.id, up: -1, down: 0 }]), 'ERR_STORE_INVALID', 'traffic');
      const reset = await store.updateUser(a.id, { resetTraffic: true });
      assert.deepEqual([reset.bytesUp, reset.bytesDown], [0, 0]);
    });

    it('sums concurrent traffic batches exactly', async (t) => {
      const { store, open } = await setup(t);
      const other = await open();
      const users = [await store.createUser({ name: 'a' }), await store.createUser({ name: 'b' }), await store.createUser({ name: 'c' })];
      const batches: Promise<void>[] = [];
      for (let i = 0; i < 40; i++) {
        // Two instances, users in varying order: on PostgreSQL this races row locks across connections.
        const order = i % 2 === 0 ? users : [...users].reverse();
        const via = i % 3 === 0 ? other : store;
        batches.push(via.addTraffic(order.map((u) => ({ userId: u.id, up: i + users.indexOf(u), down: 1 }))));
      }
      await Promise.all(batches);
      for (const [j, u] of users.entries()) {
        const r = await store.getUser(u.id);
        assert.equal(r?.bytesUp, (39 * 40) / 2 + 40 * j, `bytesUp of ${u.name}`);
        assert.equal(r?.bytesDown, 40, `bytesDown of ${u.name}`);
      }
    });

    it('notifies insert, update and delete; a throwing listener does not break writes', async (t) => {
      const { store } = await setup(t);
      const rec = recorder(store);
      store.onChange(() => {
        throw new Error('listener bug');
      });
      const off: StoreChange[] = [];
      const unsubscribe = store.onChange((c) => off.push(c));
      unsubscribe();
      const u = await store.createUser({ name: 'n' });
      await waitFor(() => rec.has('insert', u.id), 'the insert event');
      await store.updateUser(u.id, { enabled: false });
      await waitFor(() => rec.has('update', u.id), 'the update event');
      await store.deleteUser(u.id);
      await waitFor(() => rec.has('delete', u.id), 'the delete event');
      const v = await store.createUser({ name: 'm' });
      const w = await store.createUser({ name: 'o' });
      await store.resetAll();
      await waitFor(() => rec.has('delete', v.id) && rec.has('delete', w.id), 'a delete event per user on resetAll');
      assert.deepEqual(off, []);
      // No event for a failed write.
      const before = rec.changes.length;
      await rejectsStore(store.updateUser(u.id, { enabled: true }), 'ERR_STORE_NOT_FOUND');
      assert.equal(await store.deleteUser(u.id), false);
      const sentinel = await store.createUser({ name: 'sentinel' });
      await waitFor(() => rec.has('insert', sentinel.id), 'the sentinel insert');
      assert.deepEqual(rec.changes.slice(before), [{ op: 'insert', userId: sentinel.id }]);
    });

    it('notifies an update when traffic makes a user cross its quota, once', async (t) => {
      const { store } = await setup(t);
      const q = await store.createUser({ name: 'q', quotaBytes: 100 });
      const free = await store.createUser({ name: 'free' });
      const rec = recorder(store);
      await store.addTraffic([{ userId: q.id, up: 40, down: 40 }, { userId: free.id, up: 1000, down: 0 }]);
      await store.addTraffic([{ userId: q.id, up: 10, down: 10 }]);
      await store.addTraffic([{ userId: q.id, up: 1, down: 0 }]);
      const sentinel = await store.createUser({ name: 'sentinel' });
      await waitFor(() => rec.has('insert', sentinel.id), 'the sentinel insert');
      assert.deepEqual(rec.changes.filter((c) => c.op === 'update'), [{ op: 'update', userId: q.id }]);
      const r = await store.getUser(q.id);
      assert.equal(r === undefined ? undefined : userRefusal(r), 'quota');
    });

    it('UserCache loads, follows changes, and answers by key and path', async (t) => {
      const { store } = await setup(t);
      const early = await store.createUser({ name: 'early', wssPath: '/u/early' });
      const cache = await cacheOf(t, store);
      assert.equal(cache.byKey(early.publicKey)?.id, early.id);
      assert.equal(cache.byPath('/u/early')?.id, early.id);
      assert.equal(Object.hasOwn(cache.byId(early.id) as object, 'secret'), false, 'the cache holds no secrets');
      const late = await store.createUser({ name: 'late', credential: { kind: 'token', token: 'late-token' } });
      await waitFor(() => cache.byKey(late.publicKey) !== undefined, 'the new user in the cache');
      await store.updateUser(early.id, { wssPath: '/u/moved', credential: { kind: 'token', token: 'early-2' } });
      await waitFor(() => cache.byPath('/u/moved') !== undefined, 'the moved path');
      assert.equal(cache.byPath('/u/early'), undefined);
      assert.equal(cache.byKey(early.publicKey), undefined);
      assert.equal(cache.byKey(keyPairFromToken('early-2').publicKey)?.id, early.id);
      await store.updateUser(late.id, { enabled: false });
      await waitFor(() => cache.byId(late.id)?.enabled === false, 'the disabled flag');
      assert.equal(userRefusal(cache.byId(late.id) as User), 'disabled');
      await store.deleteUser(late.id);
      await waitFor(() => cache.byKey(late.publicKey) === undefined, 'the deleted user to leave the cache');
      assert.equal(cache.size, 1);
    });

    it('migrates a fresh database from two instances at once', async (t) => {
      const db = await fx.createDb();
      const results = await Promise.allSettled([fx.open(db), fx.open(db), fx.open(db)]);
      const stores = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      t.after(async () => {
        for (const s of stores) await s.close();
        await fx.dropDb(db);
      });
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      const [s0, s1] = stores as [UserStore, UserStore, UserStore];
      const u = await s0.createUser({ name: 'shared' });
      assert.equal((await s1.getUser('shared'))?.id, u.id);
    });

    if (fx.sharedNotifications) {
      it('a change through one instance reaches the other instance and its cache', async (t) => {
        const { store: a, open } = await setup(t);
        const b = await open();
        const recB = recorder(b);
        const cacheB = await cacheOf(t, b);
        const u = await a.createUser({ name: 'remote', wssPath: '/u/remote' });
        await waitFor(() => recB.has('insert', u.id), "B's insert event");
        await waitFor(() => cacheB.byKey(u.publicKey)?.id === u.id, "the user in B's cache");
        assert.equal(cacheB.byPath('/u/remote')?.id, u.id);
        await a.updateUser(u.id, { enabled: false });
        await waitFor(() => cacheB.byId(u.id)?.enabled === false, "the update in B's cache");
        await a.deleteUser(u.id);
        await waitFor(() => cacheB.byId(u.id) === undefined, "the delete in B's cache");
        assert.ok(recB.has('update', u.id) && recB.has('delete', u.id));
      });
    }

    if (fx.cutListener !== undefined) {
      const cut = fx.cutListener;
      it('the listener reconnects after its connection is killed, and the cache catches up', async (t) => {
        const { store: a, open } = await setup(t);
        const b = await open();
        const recB = recorder(b);
        const cacheB = await cacheOf(t, b);
        await cut(b);
        // Made while B may not be listening: B learns of it by the resync after reconnecting.
        const missed = await a.createUser({ name: 'missed' });
        await waitFor(() => recB.changes.some((c) => c.op === 'resync'), 'a resync event after the reconnect');
        await waitFor(() => cacheB.byId(missed.id) !== undefined, 'the user made during the outage in B\'s cache');
        const after = await a.createUser({ name: 'after' });
        await waitFor(() => recB.has('insert', after.id), 'a notification on the new LISTEN connection');
        await waitFor(() => cacheB.byId(after.id) !== undefined, 'the later user in B\'s cache');
      });
    }
  });
}
