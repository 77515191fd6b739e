/** The stream table on its own: ids, limits, the peer's OPENs, the send ring. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { LimitError, ProtocolError } from '../../../src/core/errors.js';
import { F_RST } from '../../../src/session/frames.js';
import { StreamTable } from '../../../src/session/stream-table.js';
import type { StreamHost } from '../../../src/session/stream.js';

const host: StreamHost = { wake: () => undefined, consumed: () => undefined, windowCap: (_s, w) => w, remove: () => undefined, windowRttMs: () => 10 };
const settings = { window: 16384, fastWindow: 65536, maxWindow: 1 << 20, peerWindow: 16384, highWaterMark: 65536, clock: new ManualClock() };

describe('StreamTable', () => {
  it('gives the client odd ids and the server even ones, and enforces the stream limit', () => {
    const c = new StreamTable(host, 'client', 2, settings);
    assert.deepEqual([c.open(Buffer.alloc(0)).id, c.open(Buffer.alloc(0)).id], [1, 3]);
    assert.throws(() => c.open(Buffer.alloc(0)), LimitError);
    const s = new StreamTable(host, 'server', 4, settings);
    assert.equal(s.open(Buffer.from('x')).id, 2);
    assert.equal(s.get(2)?.openPayload.toString(), 'x');
  });

  it('a stream we open is in the send ring once, however often it is woken', () => {
    const t = new StreamTable(host, 'client', 8, settings);
    const s = t.open(Buffer.alloc(0));
    t.wake(s);
    t.wake(s);
    assert.deepEqual(t.ring, [s]);
  });

  it('admits peer OPENs with rising ids of the peer parity only, and refuses beyond the limit', () => {
    const t = new StreamTable(host, 'server', 1, settings);
    assert.throws(() => t.admit(2, true), ProtocolError, 'our own parity');
    assert.equal(t.admit(3, true), true);
    const s = t.accept(3, Buffer.from('dest'));
    assert.equal(s.openPayload.toString(), 'dest');
    assert.throws(() => t.admit(3, true), ProtocolError, 'id reused');
    assert.throws(() => t.admit(1, true), ProtocolError, 'id going back');
    assert.equal(t.admit(5, true), false, 'over the limit');
    assert.equal(t.admit(7, false), false, 'not accepting');
  });

  it('knows which ids were ever opened (late frames for closed streams are fine, others a protocol error)', () => {
    const t = new StreamTable(host, 'client', 8, settings);
    t.admit(4, true);
    t.checkKnownId(2);
    t.checkKnownId(4);
    assert.throws(() => t.checkKnownId(6), ProtocolError);
    const s = t.open(Buffer.alloc(0));
    t.checkKnownId(s.id);
    assert.throws(() => t.checkKnownId(s.id + 2), ProtocolError);
  });

  it('queues RSTs as sequenced frames and forgets removed streams', () => {
    const t = new StreamTable(host, 'client', 8, settings);
    t.queueReset(9, 1);
    assert.deepEqual(t.pendingRst, [{ type: F_RST, seq: 0, sid: 9, payload: undefined, code: 1 }]);
    const s = t.open(Buffer.alloc(0));
    t.remove(s);
    assert.equal(t.size, 0);
  });
});
