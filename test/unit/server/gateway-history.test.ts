/**
 * The gateway keeps per-user traffic history by default: bytes counted by a
 * user's meter reach the history at the meters' flush, land in the SQLite
 * store in the data dir, and are still there after a restart. (The meter is
 * reached through the gateway's private field: the sessions that feed it in
 * production need real carriers; test/e2e covers those.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDataDir } from '../../../src/server/datadir.js';
import { Gateway, type GatewayInit } from '../../../src/server/gateway.js';
import type { UserMeters } from '../../../src/server/user-meter.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 2, 1, 10, 0, 0);

describe('gateway traffic history', () => {
  it("records users' traffic by default and keeps it across a restart; history: false turns it off", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'polytun-gwhist-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    let now = T0 + 5_000;
    const init = async (more: Partial<GatewayInit> = {}): Promise<GatewayInit> => ({ storeUrl: '', dataDir: await openDataDir(dir), policy: { allow: [], deny: [] }, now: () => now, ...more });
    const meters = (gw: Gateway) => (gw as unknown as { meters: UserMeters }).meters;

    let gw = await Gateway.open(await init());
    const alice = await gw.store.createUser({ name: 'alice' });
    assert.ok(gw.history);
    const m = meters(gw).meterFor(alice.id);
    m.counters.bytesUp += 1000;
    m.counters.bytesDown += 5000;
    await gw.flushTraffic();
    now += 60_000;
    m.counters.bytesUp += 1;
    await gw.close(); // the last bytes go out with close

    gw = await Gateway.open(await init());
    t.after(() => gw.close());
    const h = gw.history;
    assert.ok(h);
    assert.deepEqual(await h.series('user', alice.id, T0, T0 + HOUR, 60), [
      { at: T0, up: 1000, down: 5000 },
      { at: T0 + 60_000, up: 1, down: 0 },
    ]);
    assert.deepEqual(await h.fleetTotals(T0, T0 + HOUR, 3600), [{ at: T0, up: 1001, down: 5000 }]);
    await gw.close();

    const off = await Gateway.open(await init({ history: false }));
    t.after(() => off.close());
    assert.equal(off.history, undefined);
    meters(off).meterFor(alice.id).counters.bytesUp += 7;
    await off.flushTraffic();
    const total = await off.store.history?.totals('user', T0, T0 + HOUR, 3600);
    assert.deepEqual(total, [{ at: T0, up: 1001, down: 5000 }], 'nothing recorded while off');
  });
});
