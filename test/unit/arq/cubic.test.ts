import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cubic } from '../../../src/arq/cubic.js';
import type { RateSample } from '../../../src/arq/delivery-rate.js';
import { RttEstimator } from '../../../src/arq/rtt.js';
import { type LinkSpec, runBottleneck } from '../../helpers/bottleneck-link.js';

const MSS = 1200;
const RTT = 50;

/** A sample for an ACK at `now` of a packet sent one RTT earlier, with `priorInFlight` bytes out. */
const sample = (now: number, priorInFlight: number): RateSample => ({
  delivered: 0,
  interval: RTT,
  deliveryRate: 0,
  isAppLimited: false,
  priorDelivered: 0,
  totalDelivered: 0,
  rtt: RTT,
  priorInFlight,
  bytesInFlight: 0,
});

/** Acknowledges one full window, one datagram per ACK, over the round that ends at `now`. */
function round(cc: Cubic, rtt: RttEstimator, now: number): void {
  const w = cc.window;
  for (let acked = 0; acked < w; acked += MSS) cc.onAck(MSS, rtt, now, sample(now, w));
}

function estimator(): RttEstimator {
  const r = new RttEstimator();
  r.update(RTT, 0, 25, 0);
  return r;
}

const lost = (timeSent: number) => [{ pn: 0, size: MSS, timeSent, inFlight: true }];

describe('CUBIC', () => {
  it('doubles its window each round in slow start', () => {
    const cc = new Cubic();
    const rtt = estimator();
    assert.equal(cc.window, 10 * MSS);
    round(cc, rtt, 50);
    round(cc, rtt, 100);
    assert.equal(cc.window, 40 * MSS);
    assert.equal(cc.ssthresh, Infinity);
  });

  it('multiplies the window by 0.7 on a loss, once per round', () => {
    const cc = new Cubic();
    const rtt = estimator();
    for (let t = 50; t <= 300; t += 50) round(cc, rtt, t);
    const w = cc.window;
    cc.onLoss(lost(290), 310);
    assert.equal(cc.window, 0.7 * w);
    assert.equal(cc.ssthresh, 0.7 * w);
    cc.onLoss(lost(300), 320); // sent before the reduction: the same event
    assert.equal(cc.window, 0.7 * w);
    cc.onLoss(lost(315), 370);
    assert.equal(cc.window, 0.49 * w);
    assert.equal(cc.reductions, 2);
  });

  it('grows back along the cubic: concave up to W_max after K seconds, convex beyond', () => {
    const cc = new Cubic();
    const rtt = estimator();
    let t = 0;
    while (cc.window < 1000 * MSS) round(cc, rtt, (t += RTT));
    const wMax = cc.window;
    cc.onLoss(lost(t - 1), (t += 1));
    const k = Math.cbrt(((wMax / MSS) * 0.3) / 0.4) * 1000; // ms
    const at: number[] = [];
    const start = t;
    for (const target of [k / 2, k, 1.5 * k]) {
      while (t < start + target) round(cc, rtt, (t += RTT));
      at.push(cc.window / wMax);
    }
    assert.ok(at[0]! > 0.85 && at[0]! < 0.99, `at K/2: ${at[0]} × W_max`);
    assert.ok(Math.abs(at[1]! - 1) < 0.03, `at K: ${at[1]} × W_max`);
    assert.ok(at[2]! > 1.03, `at 1.5 K: ${at[2]} × W_max`);
  });

  it('does not grow a window the sender does not use, nor on ACKs of packets sent before the reduction', () => {
    const cc = new Cubic();
    const rtt = estimator();
    cc.onAck(MSS, rtt, 50, sample(50, 2 * MSS)); // 2 packets out of a 10-packet window
    assert.equal(cc.window, 10 * MSS);
    cc.onLoss(lost(40), 60);
    const w = cc.window;
    cc.onAck(MSS, rtt, 100, { ...sample(100, w), rtt: 45 }); // sent at 55, before the reduction at 60
    assert.equal(cc.window, w);
  });

  it('collapses to 2 datagrams on persistent congestion', () => {
    const cc = new Cubic();
    cc.onPersistentCongestion(1000);
    assert.equal(cc.window, 2 * MSS);
  });

  const RATE = 2_500_000;
  const BDP = (RATE * RTT) / 1000;
  const link = (loss: number): LinkSpec => ({ rate: RATE, baseRttMs: RTT, bufferBytes: BDP, loss, seed: 5 });

  it('fills the bottleneck alone when nothing is lost at random, and backs off when loss comes', (t) => {
    const clean = new Cubic();
    const [a] = runBottleneck(link(0), [clean], 15_000, 5_000);
    const lossy = new Cubic();
    const [b] = runBottleneck(link(0.02), [lossy], 15_000, 5_000);
    t.diagnostic(`goodput at 0 % loss ${((100 * a!.goodput) / RATE).toFixed(1)} % of the link (${clean.reductions} reductions), at 2 % ${((100 * b!.goodput) / RATE).toFixed(1)} % (${lossy.reductions})`);
    assert.ok(a!.goodput >= 0.9 * RATE);
    assert.ok(lossy.reductions > 20, `${lossy.reductions} reductions`);
    assert.ok(b!.goodput < 0.5 * RATE);
  });

  it('shares a bottleneck roughly fairly with a second CUBIC flow that starts later', (t) => {
    const [a, b] = runBottleneck(link(0.001), [new Cubic(), new Cubic()], 40_000, 10_000, { startsMs: [0, 3_000] });
    const ratio = Math.min(a!.goodput, b!.goodput) / Math.max(a!.goodput, b!.goodput);
    t.diagnostic(`flow shares ${((100 * a!.goodput) / RATE).toFixed(1)} % and ${((100 * b!.goodput) / RATE).toFixed(1)} % of the link (ratio ${ratio.toFixed(2)})`);
    assert.ok(ratio >= 0.7, `ratio ${ratio}`);
    assert.ok(a!.goodput + b!.goodput >= 0.7 * RATE);
  });
});
