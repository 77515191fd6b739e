import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, realClock } from '../../../src/core/clock.js';

describe('ManualClock', () => {
  it('fires timers in time order during advance(), with now() at their due time', () => {
    const c = new ManualClock(0);
    const seen: string[] = [];
    c.setTimeout(() => seen.push(`b@${c.now()}`), 20);
    c.setTimeout(() => seen.push(`a@${c.now()}`), 10);
    const i = c.setInterval(() => seen.push(`i@${c.now()}`), 15);
    c.advance(31);
    assert.deepEqual(seen, ['a@10', 'i@15', 'b@20', 'i@30']);
    assert.equal(c.now(), 31);
    c.clear(i);
    c.advance(100);
    assert.equal(seen.length, 4);
    assert.equal(c.pending, 0);
  });

  it('a timer armed by a firing timer fires in the same advance if it falls due', () => {
    const c = new ManualClock(0);
    const seen: number[] = [];
    c.setTimeout(() => c.setTimeout(() => seen.push(c.now()), 5), 5);
    c.advance(10);
    assert.deepEqual(seen, [10]);
  });

  it('sleep resolves once time has passed', async () => {
    const c = new ManualClock(0);
    let done = false;
    const p = c.sleep(50).then(() => (done = true));
    c.advance(49);
    await Promise.resolve();
    assert.equal(done, false);
    c.advance(1);
    await p;
    assert.equal(done, true);
  });
});

describe('realClock', () => {
  it('is monotonic and its timers fire and can be cleared', async () => {
    const a = realClock.now();
    let fired = false;
    const t = realClock.setTimeout(() => (fired = true), 1);
    realClock.clear(t);
    await realClock.sleep(5);
    assert.equal(fired, false);
    assert.ok(realClock.now() >= a);
  });
});
