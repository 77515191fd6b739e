import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FixedWindow } from '../../../src/arq/congestion.js';
import { RttEstimator } from '../../../src/arq/rtt.js';

describe('FixedWindow', () => {
  it('lets packets leave while bytes in flight are below the window', () => {
    const cc = new FixedWindow(10_000);
    assert.equal(cc.canSend(0), true);
    assert.equal(cc.canSend(9_999), true);
    assert.equal(cc.canSend(10_000), false);
  });

  it('paces at 1.25 × window per smoothed RTT once there is a sample, and not before', () => {
    const cc = new FixedWindow(100_000);
    const rtt = new RttEstimator();
    cc.onAck(1000, rtt);
    assert.equal(cc.pacingRate(), Infinity);
    rtt.update(50, 0, 25, 0);
    cc.onAck(1000, rtt);
    assert.equal(cc.pacingRate(), (1.25 * 100_000 * 1000) / 50);
  });

  it('refuses a window that is not positive', () => {
    assert.throws(() => new FixedWindow(0), RangeError);
    assert.throws(() => new FixedWindow(Number.NaN), RangeError);
  });
});
