/**
 * The shared user store suite on PostgreSQL, plus two instances on one
 * database (LISTEN/NOTIFY) and the listener's reconnect.
 *
 * Database: $POLYTUN_TEST_PG if set; otherwise a throwaway cluster started
 * with scripts/pg-test-cluster.sh (and stopped after the file). Without
 * PostgreSQL binaries the file is skipped, saying why. Each test works in its
 * own schema, dropped afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { openStore, PostgresStore } from '../../../src/store/index.js';
import type { UserStore } from '../../../src/store/index.js';
import { userStoreSuite, waitFor } from './store-suite.js';

const SCRIPT = resolve(import.meta.dirname, '../../../scripts/pg-test-cluster.sh');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile('bash', [SCRIPT, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      done({ code, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

/** The database URL and how to stop it, or why there is none. */
async function database(): Promise<{ url: string; stop(): Promise<void> } | { skip: string }> {
  const env = process.env.POLYTUN_TEST_PG;
  if (env !== undefined && env !== '') return { url: env, stop: async () => undefined };
  // The script makes the folder itself, readable by the cluster's owner (`postgres` when we are root).
  const dir = join(tmpdir(), `polytun-pgtest-${process.pid}-${randomBytes(4).toString('hex')}`);
  const stop = async (): Promise<void> => {
    const stopped = await run(['stop', dir]);
    assert.equal(stopped.code, 0, `pg-test-cluster.sh stop failed: ${stopped.stderr}`);
  };
  const started = await run(['start', dir]);
  if (started.code === 3) return { skip: `PostgreSQL is not installed (${started.stderr}); set POLYTUN_TEST_PG or install postgresql` };
  if (started.code !== 0) {
    // Any other failure is a real failure, not a skip; remove what was made.
    await stop();
    assert.fail(`pg-test-cluster.sh start failed: ${started.stderr}`);
  }
  return { url: started.stdout, stop };
}

const db = await database();

if ('skip' in db) {
  describe('PostgreSQL user store', { skip: db.skip }, () => undefined);
} else {
  const url = db.url;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const stop = db.stop;
  // Client first: stopping the cluster under a live client would make it error.
  after(async () => {
    await admin.end();
    await stop();
  });
  const appNames = new WeakMap<UserStore, string>();
  let opened = 0;

  userStoreSuite('PostgreSQL', {
    createDb: async () => `t_${randomBytes(6).toString('hex')}`,
    open: async (schema) => {
      const applicationName = `polytun-test-${process.pid}-${++opened}`;
      const store = await PostgresStore.open({ url, schema, applicationName, minBackoffMs: 20, maxBackoffMs: 200 });
      appNames.set(store, applicationName);
      return store;
    },
    dropDb: async (schema) => {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    },
    sharedNotifications: true,
    cutListener: async (store) => {
      const res = await admin.query('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [`${appNames.get(store)}:listen`]);
      assert.equal(res.rowCount, 1, 'exactly one LISTEN connection to cut');
    },
  });

  describe('PostgreSQL user store specifics', () => {
    it("every write sends NOTIFY '<op>:<id>' that any client can LISTEN to", async (t) => {
      const schema = `t_${randomBytes(6).toString('hex')}`;
      const store = await openStore(url, { pgSchema: schema });
      const spy = new pg.Client({ connectionString: url });
      t.after(async () => {
        await spy.end();
        await store.close();
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      });
      assert.equal(store.backend, 'postgres');
      await spy.connect();
      const payloads: string[] = [];
      spy.on('notification', (m) => payloads.push(`${m.channel} ${m.payload ?? ''}`));
      await spy.query(`LISTEN "polytun_users_${schema}"`);
      const u = await store.createUser({ name: 'n' });
      await store.updateUser(u.id, { dst: 'example.com:80' });
      await store.deleteUser(u.id);
      const ch = `polytun_users_${schema}`;
      await waitFor(() => payloads.length >= 3, 'three notifications');
      assert.deepEqual(payloads, [`${ch} insert:${u.id}`, `${ch} update:${u.id}`, `${ch} delete:${u.id}`]);
    });

    it('an unreachable database is a typed backend error', async () => {
      // Port 1 on loopback: nothing listens there.
      await assert.rejects(PostgresStore.open({ url: 'postgres://postgres@127.0.0.1:1/none' }), { code: 'ERR_STORE_BACKEND' });
      await assert.rejects(PostgresStore.open({ url, schema: 'Bad-Name' }), { code: 'ERR_STORE_INVALID' });
    });
  });
}
