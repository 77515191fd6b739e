import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FixedWindow, type RttView } from '../../../src/arq/congestion.js';
import { DeliveryRate, type RateSample } from '../../../src/arq/delivery-rate.js';
import { LossDetector } from '../../../src/arq/loss-detection.js';

const MSS = 1200;

/** Sends `n` packets `gap` ms apart from `t0`, each acknowledged alone `rtt` ms after it left; returns the samples. */
function pipeline(n: number, gap: number, rtt: number, t0 = 0, minRtt = 0): RateSample[] {
  const d = new DeliveryRate();
  const sent: { size: number; timeSent: number; delivery: ReturnType<DeliveryRate['onPacketSent']> }[] = [];
  const samples: RateSample[] = [];
  let inFlight = 0;
  const events: { at: number; kind: 'send' | 'ack'; i: number }[] = [];
  for (let i = 0; i < n; i++) events.push({ at: t0 + i * gap, kind: 'send', i }, { at: t0 + i * gap + rtt, kind: 'ack', i });
  events.sort((a, b) => a.at - b.at || (a.kind === 'ack' ? -1 : 1));
  for (const e of events) {
    if (e.kind === 'send') {
      sent[e.i] = { size: MSS, timeSent: e.at, delivery: d.onPacketSent(e.at, inFlight) };
      inFlight += MSS;
    } else {
      d.onPacketAcked(sent[e.i]!, e.at);
      inFlight -= MSS;
      samples.push(d.takeSample(minRtt, inFlight + MSS, inFlight)!);
    }
  }
  return samples;
}

describe('DeliveryRate', () => {
  it('measures the rate a paced flow is delivered at', () => {
    // 1200 bytes every 2 ms = 600 kB/s, 50 ms RTT.
    const samples = pipeline(200, 2, 50);
    const last = samples[samples.length - 1]!;
    assert.ok(Math.abs(last.deliveryRate - 600_000) < 600_000 * 0.03, `rate ${last.deliveryRate}`);
    assert.equal(last.rtt, 50);
    assert.equal(last.totalDelivered, 200 * MSS);
    assert.equal(last.isAppLimited, false);
  });

  it('takes the longer of the send and the ACK span, so bunched ACKs do not inflate the rate', () => {
    const d = new DeliveryRate();
    const p = (t: number, inFlight: number) => ({ size: MSS, timeSent: t, delivery: d.onPacketSent(t, inFlight) });
    const a = p(0, 0);
    const b = p(1, MSS);
    d.onPacketAcked(a, 100); // a late ACK: 100 ms
    d.takeSample(0, 2 * MSS, MSS);
    const flight = [100, 101, 102, 103, 104].map((t, i) => p(t, (i + 1) * MSS));
    // b and the flight are acknowledged 51 ms after the flight left, one ACK each.
    let s;
    for (const [i, q] of [b, ...flight].entries()) {
      d.onPacketAcked(q, 151 + i * 0.8);
      s = d.takeSample(0, 0, 0)!;
    }
    // The last packet's ACK span is 155 - 100 = 55 ms; its flight began with a's send at 0: 104 ms.
    assert.equal(s!.interval, 104);
    assert.equal(s!.delivered, 6 * MSS);
    assert.ok(s!.deliveryRate < (6 * MSS * 1000) / 100);
  });

  it('keeps a sample shorter than min RTT for its counts but gives it no rate', () => {
    const samples = pipeline(3, 1, 10, 0, 50);
    for (const s of samples) {
      assert.equal(s.interval, -1);
      assert.equal(s.deliveryRate, 0);
    }
    assert.equal(samples[2]!.totalDelivered, 3 * MSS);
  });

  it('marks packets sent while app-limited until that flight is delivered', () => {
    const d = new DeliveryRate();
    const a = { size: MSS, timeSent: 0, delivery: d.onPacketSent(0, 0) };
    d.onAppLimited(MSS);
    assert.equal(d.appLimited, true);
    const b = { size: MSS, timeSent: 1, delivery: d.onPacketSent(1, MSS) };
    d.onPacketAcked(a, 50);
    assert.equal(d.takeSample(0, 2 * MSS, MSS)!.isAppLimited, false, 'sent before the mark');
    d.onPacketAcked(b, 51);
    assert.equal(d.takeSample(0, MSS, 0)!.isAppLimited, true);
    assert.equal(d.appLimited, false, 'the flight in flight at the mark is delivered');
    const c = { size: MSS, timeSent: 60, delivery: d.onPacketSent(60, 0) };
    d.onPacketAcked(c, 110);
    assert.equal(d.takeSample(0, MSS, 0)!.isAppLimited, false);
  });

  it('starts a new flight after idle, so the idle time is not in the interval', () => {
    const d = new DeliveryRate();
    const a = { size: MSS, timeSent: 0, delivery: d.onPacketSent(0, 0) };
    d.onPacketAcked(a, 50);
    d.takeSample(0, MSS, 0);
    // Idle for 10 s, then two packets 1 ms apart.
    const b = { size: MSS, timeSent: 10_000, delivery: d.onPacketSent(10_000, 0) };
    const c = { size: MSS, timeSent: 10_001, delivery: d.onPacketSent(10_001, MSS) };
    d.onPacketAcked(b, 10_050);
    d.takeSample(0, 2 * MSS, MSS);
    d.onPacketAcked(c, 10_051);
    const s = d.takeSample(0, MSS, 0)!;
    assert.equal(s.interval, 51, "from the restart at 10 000, not from the last ACK before the idle");
    assert.equal(s.delivered, 2 * MSS);
  });

  it('reaches the controller through the loss detector, one sample per ACK', () => {
    const seen: (RateSample | undefined)[] = [];
    class Recording extends FixedWindow {
      override onAck(bytes: number, rtt: RttView, _now?: number, s?: RateSample): void {
        super.onAck(bytes, rtt);
        seen.push(s);
      }
    }
    const ld = new LossDetector<number>({ cc: new Recording(100 * MSS) });
    const send = (from: number, t: number): void => {
      for (let i = from; i < from + 5; i++) ld.onPacketSent({ size: MSS, ackEliciting: true, frames: [i] }, t + (i - from) * 2);
    };
    send(0, 0);
    ld.onAck({ largest: 4, ackDelayMs: 0, ranges: [{ lo: 0, hi: 4 }] }, 60);
    send(5, 60);
    ld.onAck({ largest: 9, ackDelayMs: 0, ranges: [{ lo: 0, hi: 9 }] }, 120);
    assert.equal(seen.length, 2);
    // Packet 9 speaks for the second flight: it left with 5 packets delivered, the flight began at 60.
    const s = seen[1]!;
    assert.deepEqual(
      [s.priorDelivered, s.totalDelivered, s.delivered, s.interval, s.rtt, s.priorInFlight, s.bytesInFlight],
      [5 * MSS, 10 * MSS, 5 * MSS, 60, 120 - 68, 5 * MSS, 0],
    );
    assert.equal(s.deliveryRate, (5 * MSS * 1000) / 60);
  });
});
