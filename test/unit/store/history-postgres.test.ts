/**
 * TrafficHistory on PostgreSQL: two servers of a fleet (two stores, two
 * node ids) write to one database; each series and the fleet totals sum
 * them, each node's rows stay its own, and a retried batch counts once.
 * Database as in postgres.test.ts (test/helpers/pg-cluster.ts); skipped,
 * saying why, only when PostgreSQL is not installed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../../src/core/clock.js';
import { PostgresStore, TrafficHistory, type HistoryStore } from '../../../src/store/index.js';
import { testDatabase } from '../../helpers/pg-cluster.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 2, 1, 10, 0, 0);

const db = await testDatabase();

if ('skip' in db) {
  describe('TrafficHistory on PostgreSQL', { skip: db.skip }, () => undefined);
} else {
  const { url } = db;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  after(async () => {
    await admin.end();
    await db.stop();
  });

  describe('TrafficHistory on PostgreSQL', () => {
    it("two servers' traffic sums in one view; each node keeps its own rows", async (t) => {
      const schema = `t_${randomBytes(6).toString('hex')}`;
      // Two servers starting at once: the migration runs once, under the advisory lock.
      const [s1, s2] = await Promise.all([PostgresStore.open({ url, schema }), PostgresStore.open({ url, schema })]);
      const clock = new ManualClock(T0);
      const mk = (store: PostgresStore, node: string) => new TrafficHistory({ store: store.history, node, clock, now: () => clock.now(), flushMs: HOUR });
      const h1 = mk(s1, 'vps-a');
      const h2 = mk(s2, 'vps-b');
      t.after(async () => {
        await Promise.all([h1.close(), h2.close()]);
        await Promise.all([s1.close(), s2.close()]);
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      });

      h1.record('user', 'alice', 100, 1000, T0 + 1_000);
      h2.record('user', 'alice', 20, 200, T0 + 2_000); // alice on both servers, same minute
      h2.record('user', 'bob', 3, 30, T0 + MIN + 1);
      h1.record('user', 'alice', 5, 50, T0 + HOUR);
      h2.record('path', 'wan1', 9, 9, T0); // not a user: not in the user totals
      await Promise.all([h1.flush(), h2.flush()]);

      assert.deepEqual(await h1.series('user', 'alice', T0, T0 + 2 * HOUR, 60), [
        { at: T0, up: 120, down: 1200 },
        { at: T0 + HOUR, up: 5, down: 50 },
      ]);
      // Either server sees the fleet.
      assert.deepEqual(await h2.fleetTotals(T0, T0 + 2 * HOUR, 60), [
        { at: T0, up: 120, down: 1200 },
        { at: T0 + MIN, up: 3, down: 30 },
        { at: T0 + HOUR, up: 5, down: 50 },
      ]);
      assert.deepEqual(await h1.fleetTotals(T0, T0 + 2 * HOUR, 3600), [
        { at: T0, up: 123, down: 1230 },
        { at: T0 + HOUR, up: 5, down: 50 },
      ]);
      const rows = await admin.query<{ node: string; up: string }>(
        `SELECT node, bytes_up AS up FROM "${schema}".traffic_history WHERE series_id = 'alice' AND resolution = 60 AND bucket = to_timestamp($1 / 1000.0) ORDER BY node`,
        [T0],
      );
      assert.deepEqual(rows.rows, [
        { node: 'vps-a', up: '100' },
        { node: 'vps-b', up: '20' },
      ]);

      // Pruning (from either server) removes old minutes fleet-wide, keeps the hours.
      clock.advance(7 * DAY + 2 * HOUR);
      await h1.prune();
      assert.deepEqual(await h2.series('user', 'alice', 0, T0 + DAY, 60), []);
      assert.deepEqual(await h2.series('user', 'alice', 0, T0 + DAY, 3600), [
        { at: T0, up: 120, down: 1200 },
        { at: T0 + HOUR, up: 5, down: 50 },
      ]);
    });

    it('a batch retried after a lost answer is added once', async (t) => {
      const schema = `t_${randomBytes(6).toString('hex')}`;
      const store = await PostgresStore.open({ url, schema });
      let lose = true;
      const real = store.history;
      const flaky: HistoryStore = {
        addBatch: async (b) => {
          const added = await real.addBatch(b);
          if (lose) throw new Error('Connection terminated unexpectedly');
          return added;
        },
        series: (...a) => real.series(...a),
        totals: (...a) => real.totals(...a),
        prune: (...a) => real.prune(...a),
      };
      const clock = new ManualClock(T0);
      const h = new TrafficHistory({ store: flaky, node: 'n', clock, now: () => clock.now(), flushMs: HOUR });
      t.after(async () => {
        await h.close();
        await store.close();
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      });
      h.record('user', 'u', 7, 70, T0);
      await h.flush();
      assert.equal(h.stats().failedFlushes, 1);
      lose = false;
      await h.flush();
      assert.equal(h.stats().heldPoints, 0);
      assert.deepEqual(await h.series('user', 'u', T0, T0 + HOUR, 3600), [{ at: T0, up: 7, down: 70 }]);
    });
  });
}
