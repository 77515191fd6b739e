import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/core/clock.js';
import { FixedWindow } from '../../../src/arq/congestion.js';
import { LossDetector } from '../../../src/arq/loss-detection.js';
import { Pacer } from '../../../src/arq/pacer.js';

const MSS = 1200;

/** Sends `n` packets as soon as the pacer allows, on a ManualClock; returns their send times. */
function paced(p: Pacer, n: number, rate: number, clock = new ManualClock(0)): number[] {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const at = p.nextSendTime(MSS, rate, clock.now());
    clock.advance(at - clock.now());
    p.onPacketSent(MSS, rate, clock.now());
    times.push(clock.now());
  }
  return times;
}

describe('Pacer', () => {
  it('lets the burst leave at once after idle, then spaces packets by size / rate', () => {
    const rate = 1_200_000; // one packet per ms
    const times = paced(new Pacer({ burstBytes: 4 * MSS }), 12, rate);
    assert.deepEqual(times.slice(0, 4), [0, 0, 0, 0]);
    for (let i = 4; i < 12; i++) assert.ok(Math.abs(times[i]! - times[i - 1]! - 1) < 1e-9, `gap before packet ${i}: ${times[i]! - times[i - 1]!}`);
  });

  it('holds the long-run rate, and the burst grows with the rate to burstMs of sending', () => {
    for (const rate of [125_000, 5_000_000, 125_000_000]) {
      const p = new Pacer();
      const times = paced(p, 5000, rate);
      const burst = Math.max(p.burstBytes, (rate * p.burstMs) / 1000);
      const expected = ((5000 * MSS - burst) * 1000) / rate;
      assert.ok(Math.abs(times[4999]! - expected) <= (MSS * 1000) / rate, `rate ${rate}: last send at ${times[4999]}, expected ${expected}`);
      const unpacedRun = times.filter((t) => t === 0).length;
      assert.equal(unpacedRun, Math.floor(burst / MSS), `rate ${rate}`);
    }
  });

  it('refills only up to the burst after idle', () => {
    const clock = new ManualClock(0);
    const p = new Pacer({ burstBytes: 2 * MSS });
    paced(p, 10, 1_200_000, clock);
    clock.advance(10_000);
    const times = paced(p, 4, 1_200_000, clock);
    assert.equal(times[1], times[0]);
    assert.ok(times[2]! > times[1]!);
  });

  it('charges a packet sent early (a probe), so the next waits longer', () => {
    const p = new Pacer({ burstBytes: MSS, burstMs: 0 });
    const rate = 1_200_000;
    p.onPacketSent(MSS, rate, 0);
    p.onPacketSent(MSS, rate, 0); // sent though the bucket was empty
    assert.equal(p.nextSendTime(MSS, rate, 0), 2);
  });

  it('never holds a packet when the rate is unbounded, and holds it for ever at rate 0', () => {
    const p = new Pacer();
    for (let i = 0; i < 100; i++) p.onPacketSent(MSS, Infinity, 5);
    assert.equal(p.nextSendTime(MSS, Infinity, 5), 5);
    assert.equal(p.nextSendTime(MSS, 0, 5), Infinity);
  });

  it('is always on in the loss detector: the controller sets the rate, every send is charged', () => {
    const ld = new LossDetector<number>({ cc: new FixedWindow(100 * MSS), pacer: { burstBytes: 2 * MSS, burstMs: 0 } });
    // FixedWindow paces at 1.25 × 100 × 1200 B / 40 ms = 3.75 MB/s once it has an RTT sample.
    ld.onPacketSent({ size: MSS, ackEliciting: true, frames: [0] }, 0);
    ld.onAck({ largest: 0, ackDelayMs: 0, ranges: [{ lo: 0, hi: 0 }] }, 40);
    const rate = ld.cc.pacingRate();
    assert.equal(rate, (1.25 * 100 * MSS * 1000) / 40);
    let now = 40;
    const gaps: number[] = [];
    for (let i = 1; i <= 10; i++) {
      const at = ld.nextSendTime(MSS, now);
      gaps.push(at - now);
      now = at;
      ld.onPacketSent({ size: MSS, ackEliciting: true, frames: [i] }, now);
    }
    assert.deepEqual(gaps.slice(0, 2), [0, 0], 'the burst');
    for (const g of gaps.slice(2)) assert.ok(Math.abs(g - (MSS * 1000) / rate) < 1e-9, `gap ${g}`);
  });
});
