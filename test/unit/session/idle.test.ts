import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { IdleWatch } from '../../../src/session/idle.js';

describe('IdleWatch (manual clock)', () => {
  it('fires after timeoutMs with nothing open; activity and open streams put it off', () => {
    const clock = new ManualClock(0);
    let busy = false;
    let idle = 0;
    const w = new IdleWatch(1000, () => busy, () => void idle++, clock);
    clock.advance(750);
    w.touch(); // a datagram at 750
    clock.advance(999);
    assert.equal(idle, 0, 'checked every 250 ms up to 1500: not idle for 1000 ms yet');
    clock.advance(1);
    assert.equal(idle, 1, 'idle since 750: fires at the check at 1750');
    busy = true;
    clock.advance(5000);
    assert.equal(idle, 1, 'open streams count as activity');
    busy = false;
    clock.advance(1000);
    assert.equal(idle, 2);
    w.stop();
    assert.equal(clock.pending, 0);
  });

  it('arms nothing when the timeout is 0', () => {
    const clock = new ManualClock(0);
    new IdleWatch(0, () => false, () => assert.fail('never idle'), clock);
    assert.equal(clock.pending, 0);
  });
});
