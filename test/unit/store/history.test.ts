/**
 * TrafficHistory on the SQLite user store (a temp data dir), time driven by
 * a ManualClock: buckets, hour points that sum the minute points, pruning at
 * 7 and 90 days, points that outlive a restart, a retried flush that does
 * not count twice, and bounded memory while the store fails.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { MemoryMetrics } from '../../../src/core/metrics.js';
import { openStore, StoreError, TrafficHistory, type HistoryPoint, type HistoryStore, type TrafficHistoryInit, type UserStore } from '../../../src/store/index.js';
import { recordingLogger } from '../../helpers/fake-egress.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** 2026-03-01 10:00:00 UTC: an hour boundary. */
const T0 = Date.UTC(2026, 2, 1, 10, 0, 0);

async function openDb(t: TestContext): Promise<{ dir: string; store: UserStore; history: HistoryStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'polytun-history-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await openStore('', { dataDir: dir });
  t.after(() => store.close());
  assert.ok(store.history, 'the SQLite store keeps a history');
  return { dir, store, history: store.history };
}

/** A TrafficHistory on `store` whose wall time is the ManualClock's (which starts at T0). */
function make(store: HistoryStore, init: Partial<TrafficHistoryInit> = {}): { h: TrafficHistory; clock: ManualClock } {
  const clock = (init.clock as ManualClock | undefined) ?? new ManualClock(T0);
  const h = new TrafficHistory({ store, node: 'n1', clock, now: () => clock.now(), flushMs: HOUR, pruneMs: HOUR, ...init });
  return { h, clock };
}

const sum = (pts: readonly HistoryPoint[]) => pts.reduce((a, p) => ({ up: a.up + p.up, down: a.down + p.down }), { up: 0, down: 0 });

describe('TrafficHistory on SQLite', () => {
  it('puts bytes in their minute and hour buckets, per series, and sums them over series', async (t) => {
    const { history } = await openDb(t);
    const { h } = make(history);
    h.record('user', 'u1', 100, 10, T0 + 5_000);
    h.record('user', 'u1', 50, 5, T0 + 59_999); // same minute
    h.record('user', 'u1', 7, 0, T0 + MIN); // next minute
    h.record('user', 'u1', 1, 1, T0 + HOUR + 30_000); // next hour
    h.record('user', 'u2', 1000, 2000, T0 + 5_000);
    h.record('path', 'wan1', 3, 4, T0 + 5_000);
    h.record('user', 'u1', 0, 0, T0); // nothing: no point
    await h.flush();

    assert.deepEqual(await h.series('user', 'u1', T0, T0 + 2 * HOUR, 60), [
      { at: T0, up: 150, down: 15 },
      { at: T0 + MIN, up: 7, down: 0 },
      { at: T0 + HOUR, up: 1, down: 1 },
    ]);
    assert.deepEqual(await h.series('user', 'u1', T0, T0 + 2 * HOUR, 3600), [
      { at: T0, up: 157, down: 15 },
      { at: T0 + HOUR, up: 1, down: 1 },
    ]);
    // From the bucket holding `from` to the last one starting before `to`.
    assert.deepEqual(await h.series('user', 'u1', T0 + MIN, T0 + HOUR, 60), [{ at: T0 + MIN, up: 7, down: 0 }]);
    assert.deepEqual(await h.series('user', 'u1', T0 + 30_000, T0 + MIN, 60), [{ at: T0, up: 150, down: 15 }]);
    assert.deepEqual(await h.series('user', 'u1', T0 + HOUR - 1, T0 + HOUR + 1, 3600), [{ at: T0, up: 157, down: 15 }, { at: T0 + HOUR, up: 1, down: 1 }]);
    assert.deepEqual(await h.series('path', 'wan1', T0, T0 + HOUR, 60), [{ at: T0, up: 3, down: 4 }]);
    // Users only, both of them; the path is its own kind.
    assert.deepEqual(await h.fleetTotals(T0, T0 + 2 * HOUR, 3600), [
      { at: T0, up: 1157, down: 2015 },
      { at: T0 + HOUR, up: 1, down: 1 },
    ]);
    assert.deepEqual(await h.fleetTotals(T0, T0 + HOUR, 60, 'path'), [{ at: T0, up: 3, down: 4 }]);
    await assert.rejects(h.series('user', 'u1', T0, T0 + HOUR, 300 as 60), StoreError);
    assert.throws(() => h.record('peer' as 'user', 'x', 1, 1), StoreError);
    await h.close();
  });

  it('hour points equal the sum of their minute points, across many flushes', async (t) => {
    const { history } = await openDb(t);
    const { h, clock } = make(history, { flushMs: 30_000 });
    // A deterministic spread over 3 hours, flushed by the timer every 30 s.
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let up = 0;
    let down = 0;
    for (let s = 0; s < 3 * 3600; s += 13) {
      clock.advance(13_000);
      const u = Math.floor(rnd() * 5000);
      const d = Math.floor(rnd() * 9000);
      up += u;
      down += d;
      h.record('user', rnd() < 0.5 ? 'a' : 'b', u, d);
    }
    await h.flush();
    const hours = [...(await h.series('user', 'a', T0, T0 + 4 * HOUR, 3600)), ...(await h.series('user', 'b', T0, T0 + 4 * HOUR, 3600))];
    assert.ok(hours.length >= 6);
    for (const id of ['a', 'b']) {
      for (const hp of await h.series('user', id, T0, T0 + 4 * HOUR, 3600)) {
        const minutes = await h.series('user', id, hp.at, hp.at + HOUR, 60);
        assert.deepEqual(sum(minutes), { up: hp.up, down: hp.down }, `${id} hour ${new Date(hp.at).toISOString()}`);
      }
    }
    assert.deepEqual(sum(await h.fleetTotals(T0, T0 + 4 * HOUR, 60)), { up, down });
    assert.deepEqual(sum(await h.fleetTotals(T0, T0 + 4 * HOUR, 3600)), { up, down });
    await h.close();
  });

  it('prunes 1-minute points after 7 days and 1-hour points after 90, on its timer', async (t) => {
    const { history } = await openDb(t);
    const { h, clock } = make(history);
    h.record('user', 'u', 10, 20, T0 + 30_000);
    await h.flush();
    const minutes = () => h.series('user', 'u', 0, T0 + 365 * DAY, 60);
    const hours = () => h.series('user', 'u', 0, T0 + 365 * DAY, 3600);

    clock.advance(7 * DAY - HOUR); // the last prune before 7 days
    await h.flush();
    assert.deepEqual(await minutes(), [{ at: T0, up: 10, down: 20 }]);
    clock.advance(HOUR); // now T0 + 7 d: the bucket starting at T0 is past the cut-off at the next prune
    clock.advance(HOUR);
    await h.flush();
    assert.deepEqual(await minutes(), []);
    assert.deepEqual(await hours(), [{ at: T0, up: 10, down: 20 }]);

    clock.advance(90 * DAY - 7 * DAY - 3 * HOUR);
    await h.flush();
    assert.deepEqual(await hours(), [{ at: T0, up: 10, down: 20 }], 'still there before 90 days');
    clock.advance(3 * HOUR);
    await h.flush();
    assert.deepEqual(await hours(), []);
    await h.close();
  });

  it('keeps its points across a restart (close, reopen the database)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-history-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    let store = await openStore('', { dataDir: dir });
    let { h } = make(store.history as HistoryStore);
    h.record('user', 'u', 123, 456, T0 + 1_000);
    await h.close(); // close writes what is pending
    await store.close();

    store = await openStore('', { dataDir: dir });
    t.after(() => store.close());
    ({ h } = make(store.history as HistoryStore));
    assert.deepEqual(await h.series('user', 'u', T0, T0 + HOUR, 60), [{ at: T0, up: 123, down: 456 }]);
    h.record('user', 'u', 1, 1, T0 + 2_000);
    await h.flush();
    assert.deepEqual(await h.series('user', 'u', T0, T0 + HOUR, 3600), [{ at: T0, up: 124, down: 457 }]);
    await h.close();
  });

  it('a flush retried after a failure counts once, whether or not the failed one committed', async (t) => {
    const { history } = await openDb(t);
    let mode: 'ok' | 'lost-answer' | 'refused' = 'lost-answer';
    const flaky: HistoryStore = {
      addBatch: async (b) => {
        if (mode === 'refused') throw new StoreError('ERR_STORE_BACKEND', undefined, 'database or disk is full');
        const added = await history.addBatch(b); // commits
        if (mode === 'lost-answer') throw new StoreError('ERR_STORE_BACKEND', undefined, 'Connection terminated unexpectedly');
        return added;
      },
      series: (...a) => history.series(...a),
      totals: (...a) => history.totals(...a),
      prune: (...a) => history.prune(...a),
    };
    const log = recordingLogger();
    const { h } = make(flaky, { logger: log });
    h.record('user', 'u', 100, 1, T0);
    await h.flush(); // committed, but reported as failed
    assert.equal(h.stats().failedFlushes, 1);
    h.record('user', 'u', 5, 0, T0 + 1_000); // a newer point meanwhile
    mode = 'refused';
    await h.flush(); // the retry fails before committing
    assert.equal(h.stats().failedFlushes, 2);
    mode = 'ok';
    await h.flush(); // the retry is a no-op (already applied); then the newer point
    assert.deepEqual(await h.series('user', 'u', T0, T0 + HOUR, 60), [{ at: T0, up: 105, down: 1 }]);
    assert.deepEqual(await h.series('user', 'u', T0, T0 + HOUR, 3600), [{ at: T0, up: 105, down: 1 }]);
    assert.deepEqual(h.stats(), { heldPoints: 0, failedFlushes: 0, droppedPoints: 0, droppedBytes: 0 });
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1, 'the second failure within warnEveryMs is not logged again');
    assert.ok(log.lines.some((l) => l.level === 'info' && /works again/.test(l.msg ?? '')));
    await h.close();
  });

  it('while the store fails, holds at most maxPoints and counts (and logs) what it drops', async (t) => {
    const { history } = await openDb(t);
    let failing = true;
    const full: HistoryStore = {
      addBatch: async (b) => {
        if (failing) throw new StoreError('ERR_STORE_BACKEND', undefined, 'SQLite user store: database or disk is full');
        return history.addBatch(b);
      },
      series: (...a) => history.series(...a),
      totals: (...a) => history.totals(...a),
      prune: (...a) => history.prune(...a),
    };
    const log = recordingLogger();
    const metrics = new MemoryMetrics();
    const { h, clock } = make(full, { logger: log, maxPoints: 3, metrics, flushMs: 30_000 });
    h.record('user', 'a', 1, 1);
    h.record('user', 'b', 1, 1);
    clock.advance(30_000); // the timer's flush fails: a and b are sealed and held
    await h.flush(); // and this one too
    h.record('user', 'c', 10, 0);
    h.record('user', 'd', 20, 0); // a fourth point: dropped
    h.record('user', 'e', 30, 0); // and a fifth
    h.record('user', 'c', 5, 0); // c is held: its bytes still add up
    assert.deepEqual(h.stats(), { heldPoints: 3, failedFlushes: 2, droppedPoints: 2, droppedBytes: 50 });
    assert.equal(metrics.value('polytun_history_dropped_bytes_total'), 50);
    assert.equal(metrics.value('polytun_history_held_points'), 3);
    const drops = log.lines.filter((l) => /dropping points/.test(l.msg ?? ''));
    assert.equal(drops.length, 1, 'one line per warnEveryMs');
    assert.deepEqual({ droppedPoints: (drops[0]?.obj as { droppedPoints: number }).droppedPoints }, { droppedPoints: 1 });
    assert.ok(log.lines.some((l) => l.level === 'warn' && /writing to the store failed/.test(l.msg ?? '')));

    failing = false;
    clock.advance(30_000);
    await h.flush();
    assert.equal(h.stats().heldPoints, 0);
    assert.deepEqual(sum(await h.fleetTotals(T0, T0 + HOUR, 60)), { up: 17, down: 2 });
    await h.close();
  });
});
