import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError } from '../../../src/core/errors.js';
import { ReplayWindow } from '../../../src/secure/replay.js';

/** The obvious model: remember everything, accept unseen counters within the window. */
class NaiveWindow {
  readonly seen = new Set<number>();
  top = -1;
  constructor(readonly size: number) {}
  accept(c: number): boolean {
    if (this.seen.has(c) || (c <= this.top && this.top - c >= this.size)) return false;
    this.seen.add(c);
    this.top = Math.max(this.top, c);
    return true;
  }
}

describe('ReplayWindow', () => {
  it('defaults to a 2048 window', () => {
    assert.equal(new ReplayWindow().windowSize, 2048);
  });

  it('accepts counters in order, once each', () => {
    const w = new ReplayWindow();
    for (let i = 0; i < 5000; i++) assert.equal(w.accept(i), true, `counter ${i}`);
    assert.equal(w.highest, 4999);
    for (let i = 4990; i < 5000; i++) assert.equal(w.accept(i), false, `replay ${i}`);
  });

  it('accepts out-of-order counters within the window and refuses their duplicates', () => {
    const w = new ReplayWindow({ windowSize: 64 });
    for (const c of [10, 5, 7, 6, 11, 9, 8]) assert.equal(w.accept(c), true, `first ${c}`);
    for (const c of [10, 5, 7, 6, 11, 9, 8]) assert.equal(w.accept(c), false, `again ${c}`);
    assert.equal(w.check(4), true);
    assert.equal(w.check(4), true, 'check does not mark');
    assert.equal(w.accept(4), true);
  });

  it('refuses counters that fell out of the window', () => {
    const w = new ReplayWindow({ windowSize: 100 });
    assert.equal(w.accept(1000), true);
    assert.equal(w.check(901), true); // 1000 - 901 = 99 < 100
    assert.equal(w.check(900), false); // exactly windowSize behind
    assert.equal(w.accept(0), false);
  });

  it('survives big jumps: the old window is forgotten, not misread', () => {
    const w = new ReplayWindow({ windowSize: 64 });
    for (let i = 0; i < 64; i++) w.accept(i);
    assert.equal(w.accept(1_000_000), true);
    assert.equal(w.accept(1_000_000 - 63), true); // the slot that held 1..63's bits was cleared
    assert.equal(w.accept(1_000_000 - 64), false);
    assert.equal(w.accept(2 ** 40 + 3), true);
    assert.equal(w.accept(2 ** 40 + 3), false);
    assert.equal(w.accept(2 ** 40 + 1), true);
    assert.equal(w.accept(Number.MAX_SAFE_INTEGER), true);
    assert.equal(w.accept(Number.MAX_SAFE_INTEGER - 1), true);
    assert.equal(w.accept(Number.MAX_SAFE_INTEGER), false);
  });

  it('refuses invalid counters', () => {
    const w = new ReplayWindow();
    for (const c of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) assert.equal(w.accept(c), false, String(c));
    assert.equal(w.highest, -1);
  });

  it('reset forgets everything', () => {
    const w = new ReplayWindow();
    w.accept(7);
    w.reset();
    assert.equal(w.highest, -1);
    assert.equal(w.accept(7), true);
  });

  it('rejects a bad window size', () => {
    for (const s of [0, -5, 1.5, 2 ** 30]) assert.throws(() => new ReplayWindow({ windowSize: s }), ConfigError);
  });

  it('matches a Set-based model on any sequence (property)', () => {
    // Moves relative to a walking position reach the window's edge and the
    // block boundaries far more often than uniform counters would.
    const move = fc.oneof(
      fc.integer({ min: -40, max: 40 }), // reordering and duplicates
      fc.integer({ min: -250, max: 250 }), // around the window edge
      fc.integer({ min: 0, max: 5000 }), // jumps past the window
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.array(move, { maxLength: 300, size: 'max' }), (size, moves) => {
        const w = new ReplayWindow({ windowSize: size });
        const model = new NaiveWindow(size);
        let pos = 0;
        for (const m of moves) {
          pos = Math.max(0, pos + m);
          const c = pos;
          const before = w.check(c);
          const got = w.accept(c);
          assert.equal(before, got, `check/accept disagree at ${c}`);
          assert.equal(got, model.accept(c), `counter ${c} (window ${size})`);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('matches the model around a large base (bit operators above 2^31)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4096 }), { maxLength: 200, size: 'max' }), (offsets) => {
        const base = 2 ** 33 - 1000;
        const w = new ReplayWindow();
        const model = new NaiveWindow(2048);
        for (const o of offsets) assert.equal(w.accept(base + o), model.accept(base + o));
      }),
      { numRuns: 200 },
    );
  });
});
