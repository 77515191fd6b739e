import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { AckTracker } from '../../../src/arq/ack-tracker.js';
import { ackFrameBytes } from '../../../src/arq/ack-frame.js';

describe('AckTracker', () => {
  it('owes an ACK at once after the second ack-eliciting packet', () => {
    const clock = new ManualClock();
    const t = new AckTracker({ maxAckDelayMs: 25 });
    assert.equal(t.ackDeadline, undefined);
    assert.equal(t.onPacket(0, true, clock.now()), true);
    assert.equal(t.ackDeadline, clock.now() + 25, 'one packet: within max_ack_delay');
    assert.equal(t.ackDue(clock.now()), false);
    clock.advance(3);
    t.onPacket(1, true, clock.now());
    assert.equal(t.ackDue(clock.now()), true, 'two packets: now');
    const ack = t.takeAck(clock.now());
    assert.deepEqual(ack?.ranges, [{ lo: 0, hi: 1 }]);
    assert.equal(t.ackDeadline, undefined, 'taking the ACK clears what was owed');
  });

  it('once 100 packets arrived, owes an ACK at once only every tenth packet, but still at once for a gap', () => {
    const t = new AckTracker({ maxAckDelayMs: 25, bulkAckThreshold: 10 });
    const dueAfter = (from: number): number => {
      for (let pn = from; ; pn++) {
        t.onPacket(pn, true, 0);
        if (t.ackDue(0)) {
          t.takeAck(0);
          return pn - from + 1;
        }
      }
    };
    assert.equal(dueAfter(0), 2, 'a new flow: every second packet');
    let pn = 2;
    while (t.received < 100) pn += dueAfter(pn);
    assert.equal(dueAfter(pn), 10, 'a flow under way: every tenth');
    pn += 10;
    t.onPacket(pn + 1, true, 0); // pn itself lost
    assert.equal(t.ackDue(0), true, 'a gap is reported at once');
    const fast3 = new AckTracker({ ackElicitingThreshold: 1, bulkAckThreshold: 1 });
    for (let n = 0; n < 150; n++) {
      fast3.onPacket(n, true, 0);
      assert.equal(fast3.ackDue(0), true);
      fast3.takeAck(0);
    }
  });

  it('owes an ACK after max_ack_delay for a single packet, and reports how long it held it', () => {
    const clock = new ManualClock();
    const t = new AckTracker({ maxAckDelayMs: 25 });
    t.onPacket(0, true, clock.now());
    clock.advance(24);
    assert.equal(t.ackDue(clock.now()), false);
    clock.advance(1);
    assert.equal(t.ackDue(clock.now()), true);
    assert.equal(t.takeAck(clock.now())?.ackDelayMs, 25);
  });

  it('never owes an ACK for packets that are not ack-eliciting, but includes them', () => {
    const t = new AckTracker();
    for (let pn = 0; pn < 5; pn++) t.onPacket(pn, false, 1000);
    assert.equal(t.ackDeadline, undefined);
    t.onPacket(5, true, 1000);
    assert.deepEqual(t.takeAck(1010)?.ranges, [{ lo: 0, hi: 5 }]);
  });

  it('drops duplicates and counts them, and a duplicate ack-eliciting packet asks for an ACK again', () => {
    const t = new AckTracker();
    assert.equal(t.onPacket(3, true, 1000), true);
    t.takeAck(1000);
    assert.equal(t.onPacket(3, true, 1001), false);
    assert.equal(t.duplicates, 1);
    assert.equal(t.received, 1);
    assert.equal(t.ackDeadline, 1001 + t.maxAckDelayMs);
  });

  it('notices reordering and gaps and asks for an ACK at once', () => {
    const t = new AckTracker();
    t.onPacket(0, true, 1000);
    t.takeAck(1000);
    t.onPacket(2, true, 1001); // gap: 1 missing
    assert.equal(t.gaps, 1);
    assert.equal(t.ackDue(1001), true);
    assert.deepEqual(t.takeAck(1001)?.ranges, [{ lo: 2, hi: 2 }, { lo: 0, hi: 0 }]);
    t.onPacket(1, true, 1002); // the late one fills the gap
    assert.equal(t.reordered, 1);
    assert.equal(t.ackDue(1002), true);
    assert.deepEqual(t.takeAck(1002)?.ranges, [{ lo: 0, hi: 2 }]);
  });

  it('keeps at most maxRanges ranges, forgetting the oldest; forgotten numbers count as seen', () => {
    const t = new AckTracker({ maxRanges: 4 });
    for (let pn = 0; pn < 20; pn += 2) t.onPacket(pn, true, 1000); // 10 single ranges
    const ack = t.takeAck(1000);
    assert.deepEqual(ack?.ranges.map((r) => r.lo), [18, 16, 14, 12]);
    assert.equal(t.onPacket(3, true, 1000), false, 'below the kept ranges: dropped as seen');
    assert.equal(t.onPacket(13, true, 1000), true, 'a gap inside the kept ranges is still open');
  });

  it('forgetBelow stops acknowledging old numbers', () => {
    const t = new AckTracker();
    for (const pn of [0, 1, 2, 5, 6, 9]) t.onPacket(pn, true, 1000);
    t.forgetBelow(6);
    assert.deepEqual(t.takeAck(1000)?.ranges, [{ lo: 9, hi: 9 }, { lo: 6, hi: 6 }]);
    assert.equal(t.has(4), true);
    assert.equal(t.onPacket(4, true, 1000), false);
  });

  it('acknowledges exactly the set of numbers received, in any order (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(300), { maxLength: 200 }), (arrivals) => {
        const t = new AckTracker();
        const seen = new Set<number>();
        for (const pn of arrivals) {
          assert.equal(t.onPacket(pn, true, 1000), !seen.has(pn));
          seen.add(pn);
        }
        const ack = t.takeAck(1000);
        if (seen.size === 0) return assert.equal(ack, undefined);
        assert.ok(ack);
        ackFrameBytes(ack); // a frame the codec accepts
        const covered = new Set<number>();
        for (const r of ack.ranges) for (let pn = r.lo; pn <= r.hi; pn++) covered.add(pn);
        // With more than 32 ranges the oldest are forgotten: what is acked is exactly the received numbers from the lowest range up.
        const lowest = ack.ranges[ack.ranges.length - 1]?.lo ?? 0;
        assert.deepEqual([...covered].sort((a, b) => a - b), [...seen].filter((pn) => pn >= lowest).sort((a, b) => a - b));
        assert.equal(ack.largest, Math.max(...seen));
      }),
      { numRuns: 500 },
    );
  });
});
