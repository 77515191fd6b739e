import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RateSample } from '../../../src/arq/delivery-rate.js';
import { FixedRate } from '../../../src/arq/fixed-rate.js';
import { RttEstimator } from '../../../src/arq/rtt.js';
import { type LinkSpec, runBottleneck } from '../../helpers/bottleneck-link.js';

const RATE = 2_500_000;
const RTT = 50;
const BDP = (RATE * RTT) / 1000;
const link = (loss: number): LinkSpec => ({ rate: RATE, baseRttMs: RTT, bufferBytes: 4 * BDP, loss, seed: 2 });
const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

const rateSample = (deliveryRate: number, isAppLimited = false): RateSample => ({
  delivered: 0,
  interval: RTT,
  deliveryRate,
  isAppLimited,
  priorDelivered: 0,
  totalDelivered: 0,
  rtt: RTT,
  priorInFlight: 0,
  bytesInFlight: 0,
});

describe('FixedRate', () => {
  it('sends at the rate asked for whatever the random loss, raised to make up for it', (t) => {
    const shares: number[] = [];
    for (const loss of [0, 0.05]) {
      const [s] = runBottleneck(link(loss), [new FixedRate({ rate: 0.8 * RATE })], 15_000, 5_000);
      shares.push(s!.goodput / RATE);
      t.diagnostic(`asked 80 % of the link at ${pct(loss)} loss: goodput ${pct(s!.goodput / RATE)}; wire bytes per useful byte ${(s!.sentBytes / s!.usefulBytes).toFixed(3)}`);
    }
    for (const share of shares) assert.ok(Math.abs(share - 0.8) < 0.03, `goodput ${pct(share)} of the link`);
  });

  it('gives up on hopeless sending: at ten times the link, what it sends stays within 2 × what arrives', (t) => {
    for (const loss of [0, 0.05]) {
      const cc = new FixedRate({ rate: 10 * RATE });
      const [s] = runBottleneck(link(loss), [cc], 15_000, 5_000);
      const amplification = s!.sentBytes / s!.arrivedBytes;
      t.diagnostic(`asked 10 × the link at ${pct(loss)} loss: sent ${amplification.toFixed(2)} × what arrived; goodput ${pct(s!.goodput / RATE)}`);
      assert.ok(amplification <= 2, `sent ${amplification} × what arrived`);
      assert.ok(cc.cappedAcks > 0);
      assert.ok(s!.goodput >= 0.85 * RATE, 'the cap still fills the link');
    }
  });

  it('holds a client to the server cap', () => {
    const cc = new FixedRate({ rate: 10 * RATE, maxRate: RATE / 2 });
    assert.equal(cc.targetRate, RATE / 2);
    const [s] = runBottleneck(link(0), [cc], 10_000, 2_000);
    assert.ok(Math.abs(s!.goodput / RATE - 0.5) < 0.02, `goodput ${pct(s!.goodput / RATE)}`);
    assert.ok(s!.sentBytes / s!.arrivedBytes < 1.01);
  });

  it('makes up for measured loss up to 1.25 ×, and sizes its window at twice rate × RTT', () => {
    const rtt = new RttEstimator();
    rtt.update(RTT, 0, 25, 0);
    const cc = new FixedRate({ rate: 1_000_000 });
    cc.onAck(9000, rtt, 10);
    cc.onLoss([{ pn: 1, size: 1000, timeSent: 0, inFlight: true }], 10);
    assert.equal(cc.pacingRate(), 1_000_000 / 0.9);
    assert.equal(cc.window, (2 * cc.pacingRate() * RTT) / 1000);
    cc.onLoss([{ pn: 2, size: 9000, timeSent: 0, inFlight: true }], 20);
    assert.equal(cc.pacingRate(), 1_250_000);
  });

  it('lifts the cap once more gets through, and app-limited samples do not set it', () => {
    const rtt = new RttEstimator();
    const cc = new FixedRate({ rate: 1_000_000, windowMs: 1000 });
    cc.onAck(1000, rtt, 0, rateSample(50_000, true));
    assert.equal(cc.pacingRate(), 1_000_000);
    cc.onAck(1000, rtt, 100, rateSample(100_000));
    assert.equal(cc.pacingRate(), 150_000);
    cc.onAck(1000, rtt, 900, rateSample(400_000));
    assert.equal(cc.pacingRate(), 600_000);
    cc.onAck(1000, rtt, 1950, rateSample(900_000));
    assert.equal(cc.pacingRate(), 1_000_000);
  });

  it('refuses a rate or cap that is not positive', () => {
    assert.throws(() => new FixedRate({ rate: 0 }), RangeError);
    assert.throws(() => new FixedRate({ rate: 1, maxRate: 0 }), RangeError);
  });
});
