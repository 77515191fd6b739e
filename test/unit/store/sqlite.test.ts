/**
 * The shared user store suite on SQLite, plus what only SQLite has: the file
 * in the data directory, its permissions, WAL mode and the migrations table.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openStore, SqliteStore } from '../../../src/store/index.js';
import { eventually } from '../../helpers/eventually.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../../src/store/migrations.js';
import { userStoreSuite } from './store-suite.js';

userStoreSuite('SQLite', {
  createDb: () => mkdtemp(join(tmpdir(), 'polytun-store-')),
  open: (dir) => openStore('', { dataDir: dir }),
  dropDb: (dir) => rm(dir, { recursive: true, force: true }),
  sharedNotifications: false,
});

describe('SQLite user store file', () => {
  it("openStore('') makes users.db in dataDir, owner-only, in WAL mode, migrated", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const data = join(dir, 'nested', 'data');
    const store = await openStore('', { dataDir: data });
    await store.createUser({ name: 'a' });
    await store.close();
    const file = join(data, 'users.db');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(data)).mode & 0o777, 0o700);
    const db = new Database(file, { readonly: true });
    t.after(() => db.close());
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    const versions = db.prepare('SELECT version FROM polytun_migrations ORDER BY version').all() as { version: number }[];
    assert.deepEqual(versions.map((v) => v.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    // The secret column is named for what it holds.
    assert.equal((db.prepare('SELECT count(*) AS n FROM users WHERE secret_plaintext IS NOT NULL').get() as { n: number }).n, 1);
  });

  it('migration 2 puts the mtt controller\'s existing users (mtt:… with a path and a dst) in mtt mode', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // A version-1 database, as an older polytun left it.
    const db = new Database(join(dir, 'users.db'));
    const v1 = MIGRATIONS.find((m) => m.version === 1);
    db.exec(v1?.sqlite ?? '');
    db.exec('CREATE TABLE polytun_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT');
    db.prepare('INSERT INTO polytun_migrations VALUES (1, ?, 0)').run('users');
    const row = db.prepare('INSERT INTO users (id, name, public_key, kind, wss_path, dst, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0)');
    row.run('00000000-0000-7000-8000-000000000001', 'mtt:/p', Buffer.alloc(32, 1), 'token', '/p', '127.0.0.1:1');
    row.run('00000000-0000-7000-8000-000000000002', 'alice', Buffer.alloc(32, 2), 'key', '/a', '127.0.0.1:1');
    db.close();
    const store = await openStore('', { dataDir: dir });
    t.after(() => store.close());
    assert.equal((await store.findByPath('/p'))?.mtt, true);
    assert.equal((await store.findByPath('/a'))?.mtt, false);
    // Every later migration ran too: no user had a udp rate cap.
    assert.equal((await store.findByPath('/a'))?.udpMaxRate, null);
  });

  it("'sqlite:' means the same file; 'sqlite:PATH' names one; other schemes are refused", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const a = await openStore('', { dataDir: dir });
    const u = await a.createUser({ name: 'same' });
    await a.close();
    const b = await openStore('sqlite:', { dataDir: dir });
    assert.equal((await b.getUser('same'))?.id, u.id);
    await b.close();
    const c = await openStore(`sqlite:${join(dir, 'other.db')}`);
    assert.ok(c instanceof SqliteStore);
    assert.equal(await c.count(), 0);
    await c.close();
    await assert.rejects(openStore(''), { code: 'ERR_STORE_INVALID' });
    await assert.rejects(openStore('mysql://u:secret@h/db'), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'ERR_STORE_INVALID');
      assert.doesNotMatch(err.message, /secret/, 'credentials in the URL are not echoed');
      return true;
    });
  });

  it('a broken file is a typed backend error', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'users.db'), Buffer.alloc(4096, 0x41));
    await assert.rejects(openStore('', { dataDir: dir }), { code: 'ERR_STORE_BACKEND' });
  });

  it('a users.db readable by others is made 0600 again, with a warning', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await (await openStore('', { dataDir: dir })).close();
    const { chmod } = await import('node:fs/promises');
    await chmod(join(dir, 'users.db'), 0o644);
    const warnings: string[] = [];
    const log = { debug: () => undefined, info: () => undefined, warn: (_o: object, m?: string) => void warnings.push(m ?? ''), error: () => undefined, child: () => log };
    await (await openStore('', { dataDir: dir, logger: log })).close();
    assert.equal((await stat(join(dir, 'users.db'))).mode & 0o777, 0o600);
    assert.match(warnings.join('\n'), /readable by other users; changed its mode to 600/);
  });

  it('read-only: nothing is created, writes are refused with the reason; another process\'s writes reach onChange as a resync', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(openStore('', { dataDir: join(dir, 'missing'), readOnly: true }), { code: 'ERR_STORE_BACKEND' });
    const { existsSync } = await import('node:fs');
    assert.equal(existsSync(join(dir, 'missing')), false, 'no directory created');
    const writer = await openStore('', { dataDir: dir });
    t.after(() => writer.close());
    const ro = await openStore('', { dataDir: dir, readOnly: true });
    t.after(() => ro.close());
    await assert.rejects(ro.createUser({ name: 'x' }), /the user store is read-only: opened read-only/);
    const server = new SqliteStore({ path: join(dir, 'users.db'), externalCheckMs: 20 });
    t.after(() => server.close());
    const seen: string[] = [];
    server.onChange((c) => seen.push(c.op));
    await writer.createUser({ name: 'from-the-cli' });
    await eventually(async () => assert.deepEqual(seen, ['resync']));
    assert.equal((await ro.getUser('from-the-cli'))?.name, 'from-the-cli');
  });
});
