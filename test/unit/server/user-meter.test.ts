/**
 * Per-user traffic meters: every byte the proxy tallies reaches the store
 * exactly once, also when a flush fails or a session's bytes arrive after
 * its meter was dropped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nullLogger } from '../../../src/core/logger.js';
import { UserMeters, type UserMeter } from '../../../src/server/user-meter.js';
import type { TrafficEntry, UserStore } from '../../../src/store/types.js';
import { StoreError } from '../../../src/store/types.js';
import { recordingLogger } from '../../helpers/fake-egress.js';

/** A store that records addTraffic batches and fails the next `failures` calls. */
function fakeStore(failures = 0): { store: UserStore; batches: TrafficEntry[][] } {
  const batches: TrafficEntry[][] = [];
  let left = failures;
  const store = {
    backend: 'sqlite',
    addTraffic: async (entries: readonly TrafficEntry[]) => {
      if (left-- > 0) throw new StoreError('ERR_STORE_BACKEND', undefined, 'database is locked');
      batches.push([...entries]);
    },
  } as unknown as UserStore;
  return { store, batches };
}

const sum = (batches: TrafficEntry[][], userId: string) =>
  batches.flat().filter((e) => e.userId === userId).reduce((a, e) => ({ up: a.up + e.up, down: a.down + e.down }), { up: 0, down: 0 });

describe('UserMeters', () => {
  it('counts the proxy counters per user, reports each increment, flushes once', async () => {
    const { store, batches } = fakeStore();
    const seen: number[] = [];
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: (m: UserMeter) => seen.push(m.unseen) });
    const a = meters.meterFor('a');
    a.counters.bytesUp += 100;
    a.counters.bytesDown += 50;
    meters.meterFor('b').counters.bytesDown += 7;
    assert.deepEqual(seen, [100, 150, 7]);
    assert.equal(a.counters.bytesUp, 100);
    await meters.flush();
    await meters.flush(); // nothing new: no second batch
    assert.equal(batches.length, 1);
    assert.deepEqual(sum(batches, 'a'), { up: 100, down: 50 });
    assert.deepEqual(sum(batches, 'b'), { up: 0, down: 7 });
    await meters.close();
  });

  it('keeps the bytes of a failed flush for the next one', async () => {
    const { store, batches } = fakeStore(1);
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: () => undefined });
    const m = meters.meterFor('a');
    m.refs++;
    m.counters.bytesUp += 10;
    await meters.flush();
    assert.equal(batches.length, 0);
    m.counters.bytesUp += 5;
    await meters.close();
    assert.deepEqual(sum(batches, 'a'), { up: 15, down: 0 });
  });

  it('a run of failed flushes: one warning, a reminder a minute on, one line when it works again', async () => {
    const { store, batches } = fakeStore(4);
    const log = recordingLogger();
    let t = 0;
    const meters = new UserMeters({ store, logger: log, flushMs: 3_600_000, onBytes: () => undefined, now: () => t });
    const m = meters.meterFor('a');
    m.refs++;
    for (const at of [0, 10_000, 20_000, 70_000, 80_000]) {
      t = at;
      m.counters.bytesUp += 100;
      await meters.flush();
    }
    const said = log.lines.filter((l) => l.level !== 'debug').map((l) => [l.level, l.msg, l.obj]);
    assert.deepEqual(said, [
      ['warn', 'traffic flush to the user store failed; the bytes are kept and retried at every flush', { err: 'database is locked', users: 1, heldBytes: 100 }],
      ['warn', 'traffic flush to the user store still failing; the bytes are kept', { err: 'database is locked', users: 1, heldBytes: 400, failedFlushes: 4, seconds: 70 }],
      ['info', 'traffic flush to the user store works again; the bytes held back are saved', { failedFlushes: 4, seconds: 80, bytes: 500 }],
    ]);
    assert.deepEqual(sum(batches, 'a'), { up: 500, down: 0 });
    // A later failure starts a new run, logged at once.
    store.addTraffic = async () => {
      throw new StoreError('ERR_STORE_BACKEND', undefined, 'disk full');
    };
    t = 90_000;
    m.counters.bytesUp += 1;
    await meters.flush();
    assert.equal(log.lines.at(-1)?.msg, 'traffic flush to the user store failed; the bytes are kept and retried at every flush');
    store.addTraffic = async () => undefined;
    await meters.close();
  });

  it('hands each byte to the history once, at the flush after it was counted, even when the store write fails', async () => {
    const { store, batches } = fakeStore(1);
    const recorded: { kind: string; id: string; up: number; down: number; at: number | undefined }[] = [];
    const history = { record: (kind: string, id: string, up: number, down: number, at?: number) => void recorded.push({ kind, id, up, down, at }) };
    let t = 1_000_000;
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: () => undefined, history, now: () => t });
    const a = meters.meterFor('a');
    a.refs++;
    a.counters.bytesUp += 10;
    a.counters.bytesDown += 1;
    await meters.flush(); // the store refuses: the bytes go back to pending, but the history has them already
    assert.equal(batches.length, 0);
    assert.deepEqual(recorded, [{ kind: 'user', id: 'a', up: 10, down: 1, at: 1_000_000 }]);
    t += 10_000;
    a.counters.bytesUp += 5;
    await meters.flush(); // the store takes 15 + 1; the history only the 5 new bytes
    await meters.flush(); // nothing new anywhere
    assert.deepEqual(sum(batches, 'a'), { up: 15, down: 1 });
    assert.deepEqual(recorded.slice(1), [{ kind: 'user', id: 'a', up: 5, down: 0, at: 1_010_000 }]);
    // Late bytes of a dropped meter reach the history through the user's current meter.
    a.refs--;
    await meters.flush(); // drops a's meter
    const b = meters.meterFor('a');
    b.refs++;
    a.counters.bytesDown += 3;
    b.counters.bytesUp += 4;
    await meters.close();
    assert.deepEqual(recorded.slice(2).map((r) => [r.up, r.down]), [[4, 3]]);
  });

  it('late bytes of a dropped meter go to the user\'s current meter, not lost', async () => {
    const { store, batches } = fakeStore();
    const meters = new UserMeters({ store, logger: nullLogger, flushMs: 3_600_000, onBytes: () => undefined });
    const old = meters.meterFor('a');
    old.counters.bytesUp += 1;
    await meters.flush();
    await meters.flush(); // no refs, nothing pending: dropped
    const fresh = meters.meterFor('a');
    assert.notEqual(fresh, old);
    fresh.refs++;
    old.counters.bytesDown += 3; // a closing relay of the old session
    fresh.counters.bytesUp += 2;
    await meters.close();
    assert.deepEqual(sum(batches, 'a'), { up: 3, down: 3 });
  });
});
