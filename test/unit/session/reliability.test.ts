/**
 * Reliability on its own, without sockets: sequence numbers, cumulative
 * ACKs, resend after a resume or a path loss, reordering and duplicates.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { ProtocolError } from '../../../src/core/errors.js';
import { nullLogger } from '../../../src/core/logger.js';
import { F_DATA, F_FIN, F_OPEN, parseFrames, seqFrameSize, type SeqFrame } from '../../../src/session/frames.js';
import type { SessionPath } from '../../../src/session/multipath/path.js';
import { Reliability, type Deliverer } from '../../../src/session/reliability.js';
import { fakePath } from '../../helpers/fake-path.js';

function setup(maxUnacked = 1 << 20, maxReorder = 8): { rel: Reliability; paths: Map<number, SessionPath>; a: SessionPath; b: SessionPath } {
  const paths = new Map<number, SessionPath>();
  const a = fakePath(1).path;
  const b = fakePath(2).path;
  paths.set(1, a);
  paths.set(2, b);
  const rel = new Reliability(paths, { scheduleFlush: () => undefined }, nullLogger, maxUnacked, maxReorder, new ManualClock());
  return { rel, paths, a, b };
}

const data = (sid: number, text: string): SeqFrame => ({ type: F_DATA, seq: 0, sid, payload: Buffer.from(text), code: 0 });

/** The sequence numbers of the frames in `buf[0, end)`. */
function seqsIn(buf: Buffer, end: number): number[] {
  const out: number[] = [];
  parseFrames(buf.subarray(0, end), 0, {
    seq: (_t, seq) => out.push(seq),
    window: () => undefined, ack: () => undefined, ping: () => undefined, pong: () => undefined,
    datagram: () => undefined, goaway: () => undefined, close: () => undefined,
  });
  return out;
}

class Log implements Deliverer {
  readonly got: string[] = [];
  deliver(type: SeqFrame['type'], sid: number, payload: Buffer | undefined): void {
    this.got.push(`${type}:${sid}:${payload?.toString() ?? ''}`);
  }
}

describe('Reliability: send side', () => {
  it('numbers frames, counts them in flight on their path, and frees them on a cumulative ACK', () => {
    const { rel, a } = setup();
    const f1 = rel.track(data(1, 'abc'), a);
    const f2 = rel.track(data(1, 'de'), a);
    assert.deepEqual([f1.seq, f2.seq], [1, 2]);
    assert.equal(rel.unackedBytes, seqFrameSize(f1) + seqFrameSize(f2));
    assert.equal(a.inflight, rel.unackedBytes);
    assert.equal(rel.onAck(1), true);
    assert.equal(rel.unackedBytes, seqFrameSize(f2));
    assert.equal(a.inflight, seqFrameSize(f2));
    assert.equal(a.deliveredBytes, seqFrameSize(f1));
    assert.equal(rel.onAck(1), false, 'an old ACK frees nothing');
    assert.throws(() => rel.onAck(3), ProtocolError, 'an ACK beyond what was sent');
  });

  it('stops taking new frames at the byte bound and at the reorder bound', () => {
    const { rel, a } = setup(100, 3);
    rel.track(data(1, 'x'.repeat(50)), a);
    assert.equal(rel.canSend, true);
    rel.track(data(1, 'x'.repeat(50)), a);
    assert.equal(rel.canSend, false, 'bytes');
    const r2 = setup(1 << 20, 3);
    for (let i = 0; i < 3; i++) r2.rel.track(data(1, 'x'), r2.a);
    assert.equal(r2.rel.canSend, false, 'frames');
  });

  it('after a resume, sends every unacknowledged frame again in order, skipping ones acknowledged meanwhile', () => {
    const { rel, a, b } = setup();
    for (const t of ['a', 'b', 'c', 'd']) rel.track(data(1, t), a);
    rel.applyAck(1);
    rel.resendAll();
    assert.equal(rel.resending, true);
    rel.applyAck(2); // arrived with the resume handshake
    const buf = Buffer.alloc(1000);
    const end = rel.writeResend(buf, 0, b);
    assert.deepEqual(seqsIn(buf, end), [3, 4]);
    assert.equal(rel.resending, false);
    assert.equal(rel.framesResent, 2);
    assert.equal(b.inflight, 2 * seqFrameSize(data(1, 'c')));
  });

  it('when a path is lost, what it held goes again on the others, merged in sequence order with what already waits', () => {
    const { rel, a, b } = setup();
    rel.track(data(1, '1'), a);
    rel.track(data(1, '2'), b);
    rel.track(data(1, '3'), a);
    rel.track(data(1, '4'), b);
    rel.moveInflight(b, 'test');
    assert.equal(b.inflight, 0);
    rel.moveInflight(a, 'test');
    const buf = Buffer.alloc(1000);
    const small = rel.writeResend(buf, 0, b);
    assert.deepEqual(seqsIn(buf, small), [1, 2, 3, 4]);
  });

  it('resends only what fits, and the rest on the next record', () => {
    const { rel, a } = setup();
    for (const t of ['aaaa', 'bbbb', 'cccc']) rel.track(data(1, t), a);
    rel.resendAll();
    const size = seqFrameSize(data(1, 'aaaa'));
    const buf = Buffer.alloc(2 * size + 3);
    assert.deepEqual(seqsIn(buf, rel.writeResend(buf, 0, a)), [1, 2]);
    assert.deepEqual(seqsIn(buf, rel.writeResend(buf, 0, a)), [3]);
  });
});

describe('Reliability: receive side', () => {
  it('delivers in order, holds early frames until the gap is filled, and drops duplicates', () => {
    const { rel } = setup();
    const log = new Log();
    rel.onSeq(F_OPEN, 1, 1, Buffer.from('o'), 0, undefined, log);
    rel.onSeq(F_DATA, 3, 1, Buffer.from('c'), 0, undefined, log);
    rel.onSeq(F_FIN, 4, 1, undefined, 0, undefined, log);
    assert.deepEqual(log.got, ['2:1:o']);
    assert.equal(rel.held, 2);
    rel.onSeq(F_DATA, 3, 1, Buffer.from('c'), 0, undefined, log); // the same early frame again (resent)
    rel.onSeq(F_DATA, 2, 1, Buffer.from('b'), 0, undefined, log);
    assert.deepEqual(log.got, ['2:1:o', '1:1:b', '1:1:c', '3:1:']);
    assert.equal(rel.received, 4);
    rel.onSeq(F_DATA, 2, 1, Buffer.from('b'), 0, undefined, log); // a duplicate after a resume
    assert.equal(log.got.length, 4);
    assert.equal(rel.held, 0);
  });

  it('a held payload keeps its pool record from being reused', () => {
    const { rel } = setup();
    const lease = { buf: Buffer.alloc(8), refs: 1, poisoned: false };
    rel.onSeq(F_DATA, 2, 1, Buffer.from('x'), 0, lease, new Log());
    assert.equal(lease.poisoned, true);
  });

  it('throws when the peer makes it hold more than maxReorder frames', () => {
    const { rel } = setup(1 << 20, 2);
    const log = new Log();
    rel.onSeq(F_DATA, 3, 1, Buffer.from('x'), 0, undefined, log);
    rel.onSeq(F_DATA, 4, 1, Buffer.from('x'), 0, undefined, log);
    assert.throws(() => rel.onSeq(F_DATA, 5, 1, Buffer.from('x'), 0, undefined, log), ProtocolError);
  });

  it('owes an ACK after frames arrive, and at once after 32 of them', () => {
    const { rel } = setup(1 << 20, 64);
    const log = new Log();
    const buf = Buffer.alloc(16);
    rel.onSeq(F_DATA, 1, 1, Buffer.from('x'), 0, undefined, log);
    rel.afterRecord(0, 20);
    assert.equal(rel.ackOwed, true);
    assert.equal(rel.ackPendingNow, false, 'one frame: the ACK may wait (or ride along)');
    rel.writeAck(buf, 0);
    assert.equal(buf.readUIntBE(1, 6), 1);
    assert.equal(rel.ackOwed, false);
    for (let s = 2; s <= 33; s++) rel.onSeq(F_DATA, s, 1, Buffer.from('x'), 0, undefined, log);
    rel.afterRecord(1, 400);
    assert.equal(rel.ackPendingNow, true);
    rel.clear();
  });
});

describe('Reliability: ACK delay (manual clock)', () => {
  it('acknowledges a lone frame after 5 ms unless a record carried the ACK before', () => {
    const clock = new ManualClock(0);
    let flushes = 0;
    const a = fakePath(1).path;
    const rel = new Reliability(new Map([[1, a]]), { scheduleFlush: () => void flushes++ }, nullLogger, 1 << 20, 8, clock);
    rel.onSeq(F_DATA, 1, 1, Buffer.from('x'), 0, undefined, new Log());
    rel.afterRecord(0, 20);
    clock.advance(4);
    assert.equal(rel.ackPendingNow, false);
    clock.advance(1);
    assert.equal(rel.ackPendingNow, true);
    assert.equal(flushes, 1);
    rel.writeAck(Buffer.alloc(8), 0);
    rel.onSeq(F_DATA, 2, 1, Buffer.from('y'), 0, undefined, new Log());
    rel.afterRecord(1, 20);
    rel.writeAck(Buffer.alloc(8), 0); // a reply record carried it
    clock.advance(10);
    assert.equal(rel.ackPendingNow, false, 'nothing owed when the timer fires');
    assert.equal(flushes, 1);
  });
});
