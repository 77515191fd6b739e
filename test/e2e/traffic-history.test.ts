/**
 * The traffic history as a server operator meets it: on by default (the
 * admin API serves it), and `gateway.history: false` turns it off (the
 * routes answer 404, nothing is kept). The history's own behaviour (buckets,
 * roll-up, pruning, PostgreSQL fleets) is tested in test/unit/store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, stopAll } from '../helpers/cli.js';
import { api, startGateway } from '../helpers/gateway.js';

before(() => ensureBuilt());
after(() => stopAll());

describe('e2e: traffic history', () => {
  it('on by default; gateway.history=false turns it off', async () => {
    const [on, off] = await Promise.all([startGateway({ listen: ['tcp://127.0.0.1:0'] }), startGateway({ listen: ['tcp://127.0.0.1:0'], extra: ['--set', 'gateway.history=false'] })]);
    const now = Date.now();
    const q = `/api/traffic/history?from=${now - 3_600_000}&to=${now}`;
    const kept = await api(on, 'GET', q);
    assert.equal(kept.status, 200, JSON.stringify(kept.body));
    const none = await api(off, 'GET', q);
    assert.equal(none.status, 404, JSON.stringify(none.body));
    await Promise.all([on.stop(true), off.stop(true)]);
  });
});
