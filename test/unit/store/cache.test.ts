/**
 * UserCache ordering rules, on a scripted store whose reads resolve when the
 * test says so: out-of-order re-reads, a delete racing a read, and a resync
 * reload that pages with afterId and re-reads what changed meanwhile.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { UserCache, userRefusal } from '../../../src/store/index.js';
import type { ListOptions, StoreChange, User, UserStore } from '../../../src/store/index.js';

function user(id: string, over: Partial<User> = {}): User {
  return {
    id, name: `n-${id}`, kind: 'key', publicKey: generateKeyPair().publicKey, wssPath: `/u/${id}`, dst: null, policy: {},
    quotaBytes: null, expiresAt: null, enabled: true, mtt: false, udpMaxRate: null, createdAt: 1, updatedAt: 1, bytesUp: 0, bytesDown: 0, ...over,
  };
}

/** A store whose getUser answers are released by the test, in any order. */
class ScriptedStore {
  readonly table = new Map<string, User>();
  readonly reads: { id: string; answer(u: User | undefined): void }[] = [];
  readonly listCalls: ListOptions[] = [];
  listener: ((c: StoreChange) => void) | undefined;

  asStore(): UserStore {
    const notUsed = (): never => assert.fail('not used by the cache');
    return {
      backend: 'sqlite',
      getUser: (id: string) => new Promise<User | undefined>((answer) => this.reads.push({ id, answer })),
      listUsers: async (o: ListOptions = {}) => {
        this.listCalls.push(o);
        const ids = [...this.table.keys()].sort().filter((id) => id > (o.afterId ?? ''));
        return ids.slice(0, o.limit ?? 100).map((id) => this.table.get(id) as User);
      },
      onChange: (l: (c: StoreChange) => void) => {
        this.listener = l;
        return () => {
          this.listener = undefined;
        };
      },
      createUser: notUsed, findByPublicKey: notUsed, findByPath: notUsed, updateUser: notUsed, deleteUser: notUsed,
      addTraffic: notUsed, resetAll: notUsed, count: notUsed, close: notUsed,
    };
  }

  emit(c: StoreChange): void {
    this.listener?.(c);
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('UserCache', () => {
  it('applies only the newest re-read when reads resolve out of order', async () => {
    const s = new ScriptedStore();
    const cache = await UserCache.open({ store: s.asStore() });
    s.emit({ op: 'insert', userId: 'a' });
    s.emit({ op: 'update', userId: 'a' });
    const [first, second] = s.reads as [ScriptedStore['reads'][0], ScriptedStore['reads'][0]];
    second.answer(user('a', { enabled: false, updatedAt: 2 }));
    await tick();
    first.answer(user('a', { enabled: true, updatedAt: 1 }));
    await tick();
    assert.equal(cache.byId('a')?.enabled, false, 'the stale first read must not overwrite the newer one');
    cache.close();
    assert.equal(s.listener, undefined, 'close unsubscribes');
  });

  it('a delete wins over a read still in flight', async () => {
    const s = new ScriptedStore();
    s.table.set('a', user('a'));
    const cache = await UserCache.open({ store: s.asStore() });
    const a = cache.byId('a') as User;
    assert.equal(cache.byKey(a.publicKey)?.id, 'a');
    s.emit({ op: 'update', userId: 'a' });
    s.emit({ op: 'delete', userId: 'a' });
    assert.equal(cache.byKey(a.publicKey), undefined);
    assert.equal(cache.byPath('/u/a'), undefined);
    s.reads[0]?.answer(a);
    await tick();
    assert.equal(cache.byId('a'), undefined, 'the read that started before the delete must not resurrect the user');
    cache.close();
  });

  it('a user taking over another one\'s path keeps it when the other one\'s update lands later', async () => {
    const s = new ScriptedStore();
    s.table.set('a', user('a', { wssPath: '/p' }));
    const cache = await UserCache.open({ store: s.asStore() });
    s.emit({ op: 'update', userId: 'a' });
    s.emit({ op: 'insert', userId: 'b' });
    const [readA, readB] = s.reads as [ScriptedStore['reads'][0], ScriptedStore['reads'][0]];
    readB.answer(user('b', { wssPath: '/p' }));
    await tick();
    readA.answer(user('a', { wssPath: null, updatedAt: 2 }));
    await tick();
    assert.equal(cache.byPath('/p')?.id, 'b');
    cache.close();
  });

  it('resync reloads with keyset paging and re-reads ids changed during the reload', async () => {
    const s = new ScriptedStore();
    for (const id of ['a', 'b', 'c', 'd', 'e']) s.table.set(id, user(id));
    const cache = await UserCache.open({ store: s.asStore(), pageSize: 2 });
    assert.equal(cache.size, 5);
    assert.deepEqual(s.listCalls.map((c) => c.afterId), ['', 'b', 'd']);
    s.table.delete('a');
    s.table.set('f', user('f'));
    s.emit({ op: 'resync' });
    // An update arrives while the reload runs, and its read lands before the
    // reload ends; the reload's pages (read earlier) still hold the old 'c'.
    s.emit({ op: 'update', userId: 'c' });
    s.reads[0]?.answer(user('c', { enabled: false, updatedAt: 9 }));
    await tick();
    await tick();
    assert.deepEqual([...cache.users()].map((u) => u.id).sort(), ['b', 'c', 'd', 'e', 'f']);
    const again = s.reads.slice(1).filter((r) => r.id === 'c');
    assert.equal(again.length, 1, "'c' changed during the reload: it is read again rather than trusted from the page");
    again[0]?.answer(user('c', { enabled: false, updatedAt: 9 }));
    await tick();
    assert.equal(cache.byId('c')?.enabled, false);
    cache.close();
  });

  it('userRefusal: disabled, expired, over quota', () => {
    assert.equal(userRefusal(user('a')), undefined);
    assert.equal(userRefusal(user('a', { enabled: false })), 'disabled');
    assert.equal(userRefusal(user('a', { expiresAt: 1000 }), 999), undefined);
    assert.equal(userRefusal(user('a', { expiresAt: 1000 }), 1000), 'expired');
    assert.equal(userRefusal(user('a', { quotaBytes: 10, bytesUp: 4, bytesDown: 5 })), undefined);
    assert.equal(userRefusal(user('a', { quotaBytes: 10, bytesUp: 5, bytesDown: 5 })), 'quota');
  });
});
