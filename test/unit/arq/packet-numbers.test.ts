import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PacketNumberSpace, type SentPacket, SentPacketTable } from '../../../src/arq/packet-numbers.js';

const pkt = (pn: number, size = 100, ackEliciting = true): SentPacket<string> => ({
  pn,
  timeSent: pn,
  size,
  ackEliciting,
  inFlight: ackEliciting,
  ackLargest: -1,
  frames: [`f${pn}`],
  lost: false,
  lostAt: 0,
});

describe('PacketNumberSpace', () => {
  it('counts up from 0 and never hands a number out twice', () => {
    const s = new PacketNumberSpace();
    assert.equal(s.largestSent, -1);
    const got = Array.from({ length: 1000 }, () => s.take());
    assert.equal(new Set(got).size, 1000);
    assert.deepEqual(got.slice(0, 3), [0, 1, 2]);
    assert.equal(s.largestSent, 999);
    assert.equal(s.next, 1000);
  });
});

describe('SentPacketTable', () => {
  it('refuses a number that is not above every earlier one', () => {
    const t = new SentPacketTable<string>();
    t.add(pkt(5));
    assert.throws(() => t.add(pkt(5)), RangeError);
    assert.throws(() => t.add(pkt(3)), RangeError);
  });

  it('keeps bytes in flight and ack-eliciting count as packets come, go and are lost', () => {
    const t = new SentPacketTable<string>();
    t.add(pkt(0, 100));
    t.add(pkt(1, 200));
    t.add(pkt(2, 50, false)); // an ACK-only packet: not in flight
    assert.equal(t.bytesInFlight, 300);
    assert.equal(t.ackElicitingOutstanding, 2);
    t.markLost(t.get(0) as SentPacket<string>, 10);
    t.markLost(t.get(0) as SentPacket<string>, 11); // twice is once
    assert.equal(t.bytesInFlight, 200);
    assert.equal(t.size, 3, 'a lost packet stays, remembered');
    assert.equal(t.remove(0)?.frames[0], 'f0');
    assert.equal(t.bytesInFlight, 200, 'removing a lost packet does not count it out twice');
    t.remove(1);
    assert.equal(t.bytesInFlight, 0);
    assert.equal(t.ackElicitingOutstanding, 0);
    assert.equal(t.remove(1), undefined);
  });

  it('inRange visits only the packets present, not every number of a huge range', () => {
    const t = new SentPacketTable<string>();
    for (let pn = 0; pn < 10; pn++) t.add(pkt(pn));
    t.remove(4);
    assert.deepEqual(t.inRange(3, 6).map((p) => p.pn), [3, 5, 6]);
    assert.deepEqual(t.inRange(0, Number.MAX_SAFE_INTEGER).length, 9);
    assert.deepEqual(t.inRange(20, 30), []);
  });

  it('cuts off the settled front so memory follows what is outstanding', () => {
    const t = new SentPacketTable<string>();
    for (let pn = 0; pn < 100_000; pn++) {
      t.add(pkt(pn));
      if (pn >= 10) t.remove(pn - 10);
    }
    assert.equal(t.size, 10);
    assert.deepEqual([...t].map((p) => p.pn), Array.from({ length: 10 }, (_, i) => 99_990 + i));
    assert.equal(t.get(99_995)?.pn, 99_995);
    assert.equal(t.get(5), undefined);
  });
});
