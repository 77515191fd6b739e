/**
 * The ARQ byte stream's two ends: ranges, what the sender keeps and sends
 * again, and the receiver putting pieces back in order and into records —
 * for any cut, order and duplication of the stream (fast-check).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RangeSet, ReceiveStream, SendStream } from '../../../src/arq/stream-buffers.js';

const rec = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

describe('RangeSet', () => {
  it('merges touching and overlapping ranges and reports what is missing', () => {
    const s = new RangeSet();
    s.add(10, 20);
    s.add(30, 40);
    s.add(20, 25);
    assert.deepEqual(s.ranges, [{ lo: 10, hi: 25 }, { lo: 30, hi: 40 }]);
    assert.deepEqual(s.missing(0, 50), [{ lo: 0, hi: 10 }, { lo: 25, hi: 30 }, { lo: 40, hi: 50 }]);
    s.add(5, 35);
    assert.deepEqual(s.ranges, [{ lo: 5, hi: 40 }]);
    assert.ok(s.covers(6, 39));
    assert.ok(!s.covers(4, 6));
    s.dropBelow(12);
    assert.deepEqual(s.ranges, [{ lo: 12, hi: 40 }]);
  });

  it('agrees with a bitmap for any sequence of adds', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(200), fc.nat(40)), { maxLength: 40 }), (adds) => {
        const s = new RangeSet();
        const bits = new Array<boolean>(260).fill(false);
        for (const [lo, n] of adds) {
          s.add(lo, lo + n);
          for (let i = lo; i < lo + n; i++) bits[i] = true;
        }
        for (let i = 0; i < s.ranges.length; i++) {
          const r = s.ranges[i]!;
          assert.ok(r.lo < r.hi);
          if (i > 0) assert.ok(s.ranges[i - 1]!.hi < r.lo, 'disjoint and not adjacent');
        }
        const missing = new Array<boolean>(260).fill(true);
        for (const m of s.missing(0, 260)) for (let i = m.lo; i < m.hi; i++) missing[i] = false;
        for (let i = 0; i < 260; i++) assert.equal(missing[i], bits[i], `byte ${i}`);
      }),
    );
  });
});

describe('SendStream', () => {
  it('sends new data once, then only what a loss left unacknowledged', () => {
    const s = new SendStream();
    s.writeRecord(rec(100, 1), 100); // 102 bytes with its length
    s.writeRecord(rec(50, 2), 50); // 52 more: 154
    assert.equal(s.backlog, 154);
    const a = s.takeNew(60, Infinity)!;
    const b = s.takeNew(60, Infinity)!;
    const c = s.takeNew(60, 130)!; // the window stops it at 130
    assert.deepEqual([a, b, c], [{ lo: 0, hi: 60 }, { lo: 60, hi: 120 }, { lo: 120, hi: 130 }]);
    assert.equal(s.takeNew(60, 130), undefined);
    s.acked(60, 120);
    assert.equal(s.ackedBase, 0, 'a gap below keeps the base');
    s.lost(0, 60);
    s.lost(60, 120); // lost too, but acknowledged meanwhile (a spurious loss)
    assert.deepEqual(s.takeRetransmit(40), { lo: 0, hi: 40 });
    assert.deepEqual(s.takeRetransmit(40), { lo: 40, hi: 60 });
    assert.equal(s.takeRetransmit(40), undefined, 'the acknowledged range is not sent again');
    s.acked(0, 60);
    assert.equal(s.ackedBase, 120);
    assert.deepEqual(s.oldestUnacked(100), { lo: 120, hi: 130 });
    s.acked(120, 130);
    assert.equal(s.takeNew(100, Infinity)?.hi, 154);
    s.acked(130, 154);
    assert.ok(s.allAcked);
    assert.equal(s.held, 0);
  });

  it('copies any range across record chunks byte for byte', () => {
    const s = new SendStream();
    const all: Buffer[] = [];
    for (let i = 1; i <= 20; i++) {
      const r = rec(i * 13, i);
      s.writeRecord(r, r.length);
      const h = Buffer.alloc(2);
      h.writeUInt16BE(r.length);
      all.push(h, r);
    }
    const whole = Buffer.concat(all);
    fc.assert(
      fc.property(fc.nat(whole.length - 1), fc.nat(600), (lo, n) => {
        const hi = Math.min(whole.length, lo + n + 1);
        const out = Buffer.alloc(hi - lo);
        s.copy(lo, hi, out, 0);
        assert.ok(out.equals(whole.subarray(lo, hi)));
      }),
    );
  });
});

describe('ReceiveStream', () => {
  it('puts back the records for any cut, order and duplication of the stream', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
        fc.integer(),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        (sizes, cuts, seed, dupRate) => {
          const send = new SendStream();
          const records = sizes.map((n, i) => rec(n, i));
          for (const r of records) send.writeRecord(r, r.length);
          // Cut the stream into pieces of the given sizes (cycled), then shuffle and duplicate some.
          const pieces: { off: number; data: Buffer }[] = [];
          for (let i = 0; ; i++) {
            const r = send.takeNew(cuts[i % cuts.length]!, Infinity);
            if (r === undefined) break;
            const data = Buffer.alloc(r.hi - r.lo);
            send.copy(r.lo, r.hi, data, 0);
            pieces.push({ off: r.lo, data });
          }
          let x = seed >>> 0;
          const rand = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
          const order = [...pieces];
          for (const p of pieces) if (rand() < dupRate) order.push(p);
          for (let i = order.length - 1; i > 0; i--) {
            const j = Math.floor(rand() * (i + 1));
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const got: Buffer[] = [];
          const r = new ReceiveStream(1 << 20, (b) => got.push(Buffer.from(b)));
          for (const p of order) {
            assert.ok(r.accepts(p.off, p.data.length));
            r.insert(p.off, p.data);
          }
          assert.equal(r.next, send.written);
          assert.equal(r.buffered, 0);
          assert.deepEqual(got, records);
        },
      ),
    );
  });

  it('keeps overlapping pieces (a resend cut differently) without doubling bytes', () => {
    const send = new SendStream();
    const r1 = rec(300, 5);
    send.writeRecord(r1, r1.length);
    const whole = Buffer.alloc(302);
    send.copy(0, 302, whole, 0);
    const got: Buffer[] = [];
    const r = new ReceiveStream(1 << 20, (b) => got.push(Buffer.from(b)));
    r.insert(100, whole.subarray(100, 250));
    r.insert(50, whole.subarray(50, 120));
    r.insert(200, whole.subarray(200, 302));
    assert.equal(r.buffered, 252);
    assert.equal(got.length, 0);
    r.insert(0, whole.subarray(0, 60));
    assert.deepEqual(got, [r1]);
    assert.equal(r.buffered, 0);
  });

  it('refuses bytes past its window and a zero-length record', () => {
    const r = new ReceiveStream(1000, () => undefined);
    assert.ok(r.accepts(0, 1000));
    assert.ok(!r.accepts(1, 1000));
    assert.throws(() => r.insert(0, Buffer.from([0, 0])), /empty record/);
  });
});
