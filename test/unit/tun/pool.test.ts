import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, LimitError } from '../../../src/core/errors.js';
import { formatIpBytes } from '../../../src/tun/ipaddr.js';
import { AddressPool } from '../../../src/tun/pool.js';

const dir = mkdtempSync(join(tmpdir(), 'polytun-pool-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `leases-${n++}.json`);
const ip = (b: Buffer | undefined): string => (b ? formatIpBytes(b) : 'none');

describe('AddressPool', () => {
  it('hands out .2, .3 … with the paired IPv6 address; the server has .1', async () => {
    const pool = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00:8::/64' });
    assert.equal(ip(pool.gateway4), '10.8.0.1');
    assert.equal(ip(pool.gateway6), 'fd00:8::1');
    assert.equal(pool.capacity, 253);
    const a = pool.acquire('alice');
    const b = pool.acquire('bob');
    assert.deepEqual([ip(a.v4), ip(a.v6), ip(b.v4), ip(b.v6)], ['10.8.0.2', 'fd00:8::2', '10.8.0.3', 'fd00:8::3']);
    assert.equal(pool.inUse, 2);
  });

  it('is sticky per user; a user with two sessions holds two addresses', async () => {
    let now = 0;
    const pool = await AddressPool.open({ v4: '10.8.0.0/24', now: () => now++ });
    const a1 = pool.acquire('alice');
    const b = pool.acquire('bob');
    const a2 = pool.acquire('alice'); // alice's second device
    assert.deepEqual([a1.host, b.host, a2.host], [2, 3, 4]);
    a1.release();
    a1.release(); // idempotent
    a2.release(); // released last: alice's most recent
    b.release();
    // alice gets back her most recently used address, bob his own
    const bAgain = pool.acquire('bob');
    const aAgain = pool.acquire('alice');
    assert.equal(bAgain.host, 3);
    assert.equal(aAgain.host, 4);
    assert.deepEqual(pool.leasesOf('alice').sort(), [2, 4]);
  });

  it('when full, takes over the least recently used free lease; when all are held, refuses', async () => {
    let now = 1000;
    const pool = await AddressPool.open({ v4: '10.8.0.0/29', now: () => now }); // 5 client addresses
    const held = ['a', 'b', 'c', 'd', 'e'].map((u) => {
      now += 10;
      return pool.acquire(u);
    });
    assert.throws(() => pool.acquire('f'), LimitError);
    now += 10;
    held[3]?.release(); // d, released first
    now += 10;
    held[1]?.release(); // b
    const f = pool.acquire('f');
    assert.equal(f.host, held[3]?.host, 'the least recently used free lease goes');
    assert.deepEqual(pool.leasesOf('d'), []);
  });

  it('leases survive a restart (file), keep their offsets when the block changes, drop what no longer fits', async () => {
    const file = fresh();
    const p1 = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00:8::/64', file });
    for (const u of ['alice', 'bob', 'carol']) p1.acquire(u);
    await p1.flush();
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { pool: string; leases: { user: string; host: number; v4: string; v6: string }[] };
    assert.equal(saved.pool, '10.8.0.0/24,fd00:8::/64');
    assert.deepEqual(saved.leases.map((l) => [l.user, l.host, l.v4, l.v6]), [
      ['alice', 2, '10.8.0.2', 'fd00:8::2'],
      ['bob', 3, '10.8.0.3', 'fd00:8::3'],
      ['carol', 4, '10.8.0.4', 'fd00:8::4'],
    ]);
    const p2 = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00:8::/64', file });
    assert.equal(p2.acquire('bob').host, 3);
    assert.equal(p2.acquire('dave').host, 5);
    const p3 = await AddressPool.open({ v4: '10.9.0.0/29', file }); // capacity 5: offsets 2..6
    assert.equal(ip(p3.acquire('carol').v4), '10.9.0.4');
    // Their saves are still queued: let them land before after() removes the folder.
    await Promise.all([p2.flush(), p3.flush()]);
  });

  it('refuses bad blocks and unreadable files', async () => {
    await assert.rejects(AddressPool.open({ v4: 'fd00::/64' }), ConfigError);
    await assert.rejects(AddressPool.open({ v4: '10.8.0.0/31' }), ConfigError);
    await assert.rejects(AddressPool.open({ v4: '10.8.0.1/24' }), ConfigError);
    await assert.rejects(AddressPool.open({ v4: '10.8.0.0/24', v6: '10.9.0.0/24' }), ConfigError);
    await assert.rejects(AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00::/127' }), ConfigError);
    const bad = fresh();
    writeFileSync(bad, '{"version": 9}');
    await assert.rejects(AddressPool.open({ v4: '10.8.0.0/24', file: bad }), ConfigError);
    writeFileSync(bad, 'not json');
    await assert.rejects(AddressPool.open({ v4: '10.8.0.0/24', file: bad }), ConfigError);
  });

  it('a /30 has exactly one client address; capacity follows the smaller family', async () => {
    const p = await AddressPool.open({ v4: '10.8.0.0/30' });
    assert.equal(p.capacity, 1);
    assert.equal(ip(p.acquire('a').v4), '10.8.0.2');
    assert.throws(() => p.acquire('b'), LimitError);
    const q = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00::/125' });
    assert.equal(q.capacity, 6);
  });
});
