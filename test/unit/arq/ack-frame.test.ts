import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError } from '../../../src/core/errors.js';
import { type AckFrame, type AckRange, ackFrameBytes, ackFrameLength, decodeAckFrame, encodeAckFrame } from '../../../src/arq/ack-frame.js';
import { MAX_ACK_RANGES } from '../../../src/arq/constants.js';
import { readVarint, writeVarint } from '../../../src/arq/varint.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

/** Arbitrary valid frames: descending ranges built from gaps and lengths. */
const frameArb: fc.Arbitrary<AckFrame> = fc
  .record({
    top: fc.oneof(fc.nat(100), fc.nat(1 << 20), fc.nat(Number.MAX_SAFE_INTEGER)),
    delayUs: fc.oneof(fc.nat(100_000), fc.nat(2 ** 40)),
    parts: fc.array(fc.tuple(fc.nat(70), fc.nat(70)), { minLength: 1, maxLength: MAX_ACK_RANGES }),
  })
  .map(({ top, delayUs, parts }) => {
    const ranges: AckRange[] = [];
    let hi = top;
    for (const [gap, len] of parts) {
      if (hi < 0) break;
      const lo = Math.max(0, hi - len);
      ranges.push({ lo, hi });
      hi = lo - gap - 2;
    }
    return { largest: top, ackDelayMs: delayUs / 1000, ranges };
  });

describe('varint', () => {
  it('uses QUIC’s lengths and reads back what it wrote', () => {
    const cases: [number, string][] = [
      [0, '00'],
      [63, '3f'],
      [64, '4040'],
      [16383, '7fff'],
      [16384, '80004000'],
      [2 ** 30 - 1, 'bfffffff'],
      [2 ** 30, 'c000000040000000'],
      [Number.MAX_SAFE_INTEGER, 'c01fffffffffffff'],
    ];
    for (const [v, h] of cases) {
      const buf = new Uint8Array(8);
      const end = writeVarint(buf, 0, v);
      assert.equal(hex(buf.subarray(0, end)), h, `${v}`);
      const c = { buf, pos: 0, end };
      assert.equal(readVarint(c, 'x'), v);
      assert.equal(c.pos, end);
    }
  });

  it('refuses a value wider than a safe integer', () => {
    assert.throws(() => readVarint({ buf: bytes('c020000000000000'), pos: 0, end: 8 }, 'x'), ProtocolError);
    assert.throws(() => writeVarint(new Uint8Array(8), 0, 2 ** 53), RangeError);
  });
});

describe('ACK frame codec', () => {
  it('lays out largest, delay, count, first range, then gap/length pairs (hex fixture)', () => {
    // 100..95, 92..90 (gap 1: 94 and 93 missing), 10..10
    const f: AckFrame = { largest: 100, ackDelayMs: 1.5, ranges: [{ lo: 95, hi: 100 }, { lo: 90, hi: 92 }, { lo: 10, hi: 10 }] };
    const b = ackFrameBytes(f);
    // 100 → 4064; 1500 µs → 45dc; 2 extra ranges; first 5; gap 1, len 2; gap 78, len 0
    assert.equal(hex(b), '406445dc0205' + '0102' + '404e00');
    assert.deepEqual(decodeAckFrame(b), { frame: f, end: b.length });
  });

  it('decodes at an offset and stops at its own end (frames follow each other)', () => {
    const f: AckFrame = { largest: 7, ackDelayMs: 0, ranges: [{ lo: 0, hi: 7 }] };
    const buf = new Uint8Array(3 + ackFrameLength(f) + 2).fill(0xee);
    const end = encodeAckFrame(f, buf, 3);
    assert.deepEqual(decodeAckFrame(buf, 3), { frame: f, end });
  });

  it('refuses to encode a frame that breaks its invariants', () => {
    assert.throws(() => ackFrameBytes({ largest: 5, ackDelayMs: 0, ranges: [] }), RangeError);
    assert.throws(() => ackFrameBytes({ largest: 6, ackDelayMs: 0, ranges: [{ lo: 0, hi: 5 }] }), RangeError);
    assert.throws(() => ackFrameBytes({ largest: 9, ackDelayMs: 0, ranges: [{ lo: 5, hi: 9 }, { lo: 3, hi: 4 }] }), RangeError, 'adjacent ranges');
  });

  it('rejects truncation, ranges below 0 and too many ranges with ProtocolError', () => {
    const good = ackFrameBytes({ largest: 100, ackDelayMs: 1, ranges: [{ lo: 95, hi: 100 }, { lo: 90, hi: 92 }] });
    for (let n = 0; n < good.length; n++) assert.throws(() => decodeAckFrame(good.subarray(0, n)), ProtocolError, `truncated at ${n}`);
    assert.throws(() => decodeAckFrame(bytes('05000006')), ProtocolError, 'first range longer than largest');
    assert.throws(() => decodeAckFrame(bytes('0500010105')), ProtocolError, 'gap below 0');
    assert.throws(() => decodeAckFrame(bytes('050001000103')), ProtocolError, 'second range below 0');
    assert.throws(() => decodeAckFrame(bytes(`0500${(MAX_ACK_RANGES).toString(16).padStart(2, '0')}00`)), ProtocolError, 'one range too many');
  });

  it('refuses a huge range count before reading a single range', () => {
    // 2^53-1 extra ranges announced in 8 bytes, nothing behind: must fail on the count, not loop.
    const b = bytes('0000c01fffffffffffff00');
    assert.throws(() => decodeAckFrame(b), (e: unknown) => e instanceof ProtocolError && /ranges/.test(e.message));
  });

  it('round-trips every valid frame (fast-check)', () => {
    fc.assert(
      fc.property(frameArb, (f) => {
        const b = ackFrameBytes(f);
        assert.equal(b.length, ackFrameLength(f));
        assert.deepEqual(decodeAckFrame(b), { frame: f, end: b.length });
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws anything but ProtocolError on arbitrary bytes, and what it accepts is valid (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (b) => {
        let out: { frame: AckFrame; end: number };
        try {
          out = decodeAckFrame(b);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `threw ${String(e)}`);
          return;
        }
        assert.ok(out.end <= b.length);
        // What decodes is a frame the encoder accepts, and it encodes back to the bytes read
        // (varints may be non-minimal on input, so compare the decoded values, not the bytes).
        assert.deepEqual(decodeAckFrame(ackFrameBytes(out.frame)).frame, out.frame);
      }),
      { numRuns: 5000 },
    );
  });
});
