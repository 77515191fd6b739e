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
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { openStore, PostgresStore } from '../../../src/store/index.js';
import type { UserStore } from '../../../src/store/index.js';
import { userStoreSuite, waitFor } from './store-suite.js';
import { testDatabase } from '../../helpers/pg-cluster.js';

const db = await testDatabase();

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
