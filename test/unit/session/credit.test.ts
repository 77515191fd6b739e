/** Session credit on its own: send room, the receive window, WINDOW frames, fair shares. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../../../src/core/errors.js';
import { SessionCredit } from '../../../src/session/credit.js';
import { F_WINDOW, WINDOW_SIZE } from '../../../src/session/frames.js';
import type { PolyStream } from '../../../src/session/stream.js';

const KIB = 1024;

/** What the credit reads of a stream. */
function stream(id: number, advertisedLimit: number, consumedBytes = 0): PolyStream {
  return { id, advertisedLimit, consumedBytes, creditExcess: 0, windowSent: 16 * KIB } as unknown as PolyStream;
}

describe('SessionCredit', () => {
  it('sends within the peer window, which only grows', () => {
    const c = new SessionCredit(1024 * KIB, 16 * KIB, 512 * KIB, 100);
    assert.equal(c.sendRoom, 100);
    c.onSent(60);
    assert.equal(c.sendRoom, 40);
    c.onPeerWindow(50);
    assert.equal(c.sendRoom, 40, 'a lower WINDOW is ignored');
    c.onPeerWindow(200);
    assert.equal(c.sendRoom, 140);
  });

  it('throws when the peer overruns the session window, and re-advertises after a quarter is returned', () => {
    const c = new SessionCredit(100, 10, 50, 100);
    c.onReceived(100);
    assert.throws(() => c.onReceived(1), ProtocolError);
    const c2 = new SessionCredit(100, 10, 50, 100);
    const buf = Buffer.alloc(64);
    c2.onReceived(24);
    c2.release(24);
    assert.equal(c2.writeWindows(buf, 0, new Map()), 0, 'less than a quarter: no WINDOW');
    c2.onReceived(1);
    c2.release(1);
    assert.equal(c2.writeWindows(buf, 0, new Map()), WINDOW_SIZE);
    assert.equal(buf[0], F_WINDOW);
    assert.equal(buf.readUInt32BE(1), 0, 'the session window');
    assert.equal(buf.readUIntBE(5, 6), 125);
    c2.onReceived(100); // 125 in total: within the new limit
  });

  it('queues a stream WINDOW only when its limit rose past what was sent, and writes what fits', () => {
    const c = new SessionCredit(1024 * KIB, 16 * KIB, 512 * KIB, 1024 * KIB);
    const s = stream(3, 16 * KIB);
    assert.equal(c.consumed(s), false);
    const t = stream(5, 40 * KIB, 8 * KIB);
    assert.equal(c.consumed(t), true);
    assert.equal(t.creditExcess, 16 * KIB, 'outstanding beyond the initial window');
    c.restate([3, 5]);
    const small = Buffer.alloc(WINDOW_SIZE * 2);
    const streams = new Map([[3, s], [5, t]]);
    assert.equal(c.writeWindows(small, 0, streams), 2 * WINDOW_SIZE, 'two of three fit');
    assert.equal(c.writeWindows(Buffer.alloc(64), 0, streams), WINDOW_SIZE, 'the rest next time');
    assert.equal(t.windowSent, 40 * KIB);
  });

  it('caps a stream window at half of the budget the others leave free, never below the initial window', () => {
    const c = new SessionCredit(1024 * KIB, 16 * KIB, 512 * KIB, 1024 * KIB);
    const a = stream(1, 16 * KIB + 600 * KIB);
    c.consumed(a);
    const b = stream(3, 16 * KIB);
    assert.equal(c.windowCap(b, 1 << 30), 16 * KIB + 212 * KIB);
    c.forget(a);
    assert.equal(c.windowCap(b, 1 << 30), 512 * KIB, 'the maximum stream window');
    assert.equal(c.windowCap(b, 1), 16 * KIB);
  });
});
