/** The datagram lane and the control lane on their own. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { ClosedError } from '../../../src/core/errors.js';
import { ControlLane } from '../../../src/session/control-lane.js';
import { DatagramLane, MAX_DATAGRAM } from '../../../src/session/datagram-lane.js';
import { DATAGRAM_HEADER, F_DATAGRAM, F_GOAWAY, F_PING, GOAWAY_SIZE } from '../../../src/session/frames.js';
import { fakePath } from '../../helpers/fake-path.js';

describe('DatagramLane', () => {
  it('drops (and counts) datagrams with no path, too large, or beyond the queue bound', () => {
    const d = new DatagramLane(10);
    assert.equal(d.send(false, 1, Buffer.alloc(1)), false);
    assert.equal(d.send(true, 1, Buffer.alloc(MAX_DATAGRAM + 1)), false);
    assert.equal(d.send(true, 1, Buffer.alloc(8)), true);
    assert.equal(d.send(true, 1, Buffer.alloc(3)), false);
    assert.equal(d.dropped, 3);
  });

  it('writes queued datagrams in order, as many as fit, and frees their queue room', () => {
    const d = new DatagramLane(100);
    d.send(true, 7, Buffer.from('aaaa'));
    d.send(true, 8, Buffer.from('bbbb'));
    const buf = Buffer.alloc(DATAGRAM_HEADER + 4 + 3);
    const end = d.write(buf, 0);
    assert.equal(end, DATAGRAM_HEADER + 4);
    assert.equal(buf[0], F_DATAGRAM);
    assert.equal(buf.readUInt32BE(1), 7);
    assert.equal(d.write(Buffer.alloc(64), 0), DATAGRAM_HEADER + 4, 'the second one next time');
    assert.equal(d.send(true, 1, Buffer.alloc(100)), true, 'the queue is empty again');
    d.clear();
    assert.equal(d.write(Buffer.alloc(200), 0), 0);
  });
});

describe('ControlLane', () => {
  const clock = new ManualClock();
  it('numbers pings with wrapping 32-bit ids', () => {
    const c = new ControlLane(clock);
    assert.equal(c.nextPingId(), 1);
    (c as unknown as { pingSeq: number }).pingSeq = 0xffffffff;
    assert.equal(c.nextPingId(), 0);
  });

  it('ping() asks the path for a PING and resolves with the RTT of its PONG', async () => {
    const c = new ControlLane(clock);
    const { path } = fakePath(1);
    const rtt = c.ping(path, undefined);
    const buf = Buffer.alloc(64);
    assert.equal(path.writeControl(buf), 6);
    assert.equal(buf[1], F_PING);
    clock.advance(5);
    c.onPong(path, buf.readUInt32BE(2), clock.now());
    assert.equal(await rtt, 5);
    assert.equal(path.srtt !== undefined, true, 'the sample is the path\'s too');
  });

  it('ping() without a writable path rejects with ClosedError; an abort rejects with the reason', async () => {
    const c = new ControlLane(clock);
    await assert.rejects(c.ping(undefined, undefined), ClosedError);
    const ac = new AbortController();
    const p = c.ping(fakePath(1).path, ac.signal);
    ac.abort(new Error('stop'));
    await assert.rejects(p, /stop/);
  });

  it('writes a GOAWAY once, only where it fits', () => {
    const c = new ControlLane(clock);
    c.goaway(9);
    assert.equal(c.writeGoaway(Buffer.alloc(GOAWAY_SIZE - 1), 0), 0);
    const buf = Buffer.alloc(16);
    assert.equal(c.writeGoaway(buf, 0), GOAWAY_SIZE);
    assert.deepEqual([buf[0], buf.readUInt32BE(1)], [F_GOAWAY, 9]);
    assert.equal(c.writeGoaway(buf, 0), 0);
  });
});
