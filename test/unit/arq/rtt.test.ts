import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RttEstimator } from '../../../src/arq/rtt.js';

describe('RttEstimator (RFC 9002 §5)', () => {
  it('starts from the initial RTT, then the first sample sets srtt and rttvar = sample/2', () => {
    const r = new RttEstimator(333);
    assert.equal(r.smoothedRtt, 333);
    assert.equal(r.rttVar, 166.5);
    r.update(100, 0, 25, 5000);
    assert.deepEqual([r.latestRtt, r.minRtt, r.smoothedRtt, r.rttVar, r.samples, r.firstSampleAt], [100, 100, 100, 50, 1, 5000]);
  });

  it('takes the reported ack delay out of the sample, capped at max_ack_delay', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25, 0);
    r.update(140, 20, 25, 1); // adjusted 120
    assert.equal(r.smoothedRtt, 0.875 * 100 + 0.125 * 120);
    assert.equal(r.rttVar, 0.75 * 50 + 0.25 * 20);
    const before = r.smoothedRtt;
    const s = new RttEstimator();
    s.update(100, 0, 25, 0);
    s.update(140, 500, 25, 1); // a lying peer: only 25 taken out → 115
    assert.equal(s.smoothedRtt, 0.875 * 100 + 0.125 * 115);
    assert.notEqual(s.smoothedRtt, before);
  });

  it('never takes the ack delay below min_rtt, and min_rtt ignores it', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25, 0);
    r.update(110, 20, 25, 1); // 110 < 100 + 20: delay not subtracted
    assert.equal(r.smoothedRtt, 0.875 * 100 + 0.125 * 110);
    r.update(90, 20, 25, 2);
    assert.equal(r.minRtt, 90, 'min_rtt is the raw sample');
  });

  it('ptoBase is srtt + max(4·rttvar, 1 ms)', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25, 0);
    assert.equal(r.ptoBase, 100 + 200);
    for (let i = 0; i < 200; i++) r.update(100, 0, 25, i);
    assert.ok(r.rttVar < 0.25);
    assert.equal(r.ptoBase, r.smoothedRtt + 1, 'granularity floor');
  });
});
