import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { LimitError } from '../../../src/core/errors.js';
import { PacketOpener, PacketSealer, type Opened } from '../../../src/secure/packet-crypt.js';
import { HEADER, TAG } from '../../../src/secure/packet-wire.js';

const key = randomBytes(32);
const mask = randomBytes(16);

function pair(opts: { epochPackets?: number; rekeyAfterMs?: number; counterLimit?: number; window?: number } = {}) {
  const clock = new ManualClock();
  const init = { cipher: 'chacha20-poly1305' as const, ...(opts.epochPackets !== undefined && { epochPackets: opts.epochPackets }) };
  const sealer = new PacketSealer(key, mask, init, clock, opts.rekeyAfterMs, opts.counterLimit);
  const opener = new PacketOpener(key, mask, init, opts.window);
  const open = (d: Buffer): Opened | string => {
    const copy = Buffer.from(d);
    const h = opener.peek(copy);
    // The index picks the session (the channel checks it is its own); here every datagram is for index 1.
    return h === undefined || h.index !== 1 ? 'malformed' : opener.open(copy, h);
  };
  return { clock, sealer, opener, open };
}

const rec = (n: number, fill = 7): Buffer => Buffer.alloc(n, fill);

describe('packet sealing and opening', () => {
  it('round trip: the record and kind come back, padding stripped, records ending in zeros intact', () => {
    const { sealer, open } = pair();
    const r = Buffer.from([0, 1, 2, 0, 0]);
    const d = sealer.seal(1, r, 0, r.length, 1, 9);
    assert.equal(d.length, HEADER + r.length + 1 + 9 + TAG);
    const o = open(d) as Opened;
    assert.equal(o.kind, 1);
    assert.deepEqual(o.record, r);
    assert.equal(o.counter, 0);
    assert.equal(o.newest, true);
  });

  it('the header shows nothing: neither the index nor the counter is in clear, and equal headers look different', () => {
    const { sealer, opener } = pair();
    const a = sealer.seal(0x01020304, rec(100), 0, 100, 1, 0);
    const b = sealer.seal(0x01020304, rec(100), 0, 100, 1, 0);
    assert.notDeepEqual(a.subarray(0, 4), Buffer.from([1, 2, 3, 4]));
    assert.notDeepEqual(a.subarray(0, HEADER), b.subarray(0, HEADER));
    assert.deepEqual(opener.peek(a), { index: 0x01020304, counter: 0 });
    assert.deepEqual(opener.peek(b), { index: 0x01020304, counter: 1 });
  });

  it('counters only grow, one per datagram: a nonce is never used twice', () => {
    const { sealer, opener } = pair();
    const seen = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const h = opener.peek(sealer.seal(1, rec(10), 0, 10, 1, 0));
      assert.ok(h && !seen.has(h.counter) && h.counter === i);
      seen.add(h.counter);
    }
  });

  it('replayed and too-old datagrams are refused; reordered ones within the window open once', () => {
    const { sealer, open } = pair({ window: 64 });
    const ds = Array.from({ length: 100 }, () => sealer.seal(1, rec(20), 0, 20, 1, 0));
    assert.equal(typeof open(ds[5] as Buffer), 'object');
    assert.equal(open(ds[5] as Buffer), 'replayed');
    assert.equal(typeof open(ds[99] as Buffer), 'object');
    assert.equal(open(ds[20] as Buffer), 'replayed', '79 behind a 64 window');
    const late = open(ds[50] as Buffer) as Opened;
    assert.equal(late.newest, false, 'reordered: fresh but not the newest');
    assert.equal(open(ds[50] as Buffer), 'replayed');
  });

  it('a wrong key, an altered byte or a truncation does not open', () => {
    const { sealer, open } = pair();
    const d = sealer.seal(1, rec(40), 0, 40, 1, 0);
    const other = new PacketSealer(randomBytes(32), mask, { cipher: 'chacha20-poly1305' }, new ManualClock()).seal(1, rec(40), 0, 40, 1, 0);
    assert.equal(open(other), 'forged');
    for (const at of [0, 5, 11, 12, 30, d.length - 1]) {
      const bad = Buffer.from(d);
      bad[at] = (bad[at] as number) ^ 0x40;
      assert.ok(open(bad) === 'forged' || open(bad) === 'malformed', `byte ${at}`);
    }
    assert.equal(open(d.subarray(0, d.length - 1)), 'forged');
    assert.equal(typeof open(d), 'object', 'the original still opens: failures mark nothing');
  });

  it('rekeys by epoch: after epochPackets datagrams the key changes, both ends follow, old keys are dropped', () => {
    const { sealer, opener, open } = pair({ epochPackets: 4 });
    for (let i = 0; i < 20; i++) {
      const d = sealer.seal(1, rec(30, i), 0, 30, 1, 0);
      assert.equal(sealer.epoch, Math.floor(i / 4));
      const o = open(d) as Opened;
      assert.equal(o.record[0], i);
    }
    assert.deepEqual(opener.heldEpochs, [3, 4]);
    // A datagram of epoch 4 sealed under epoch 0's key (the key not rotated) does not open.
    const stale = new PacketSealer(key, mask, { cipher: 'chacha20-poly1305', epochPackets: 1 << 20 }, new ManualClock());
    for (let i = 0; i < 20; i++) stale.seal(1, rec(1), 0, 1, 1, 0);
    assert.equal(open(stale.seal(1, rec(30), 0, 30, 1, 0)), 'forged');
  });

  it('a counter far ahead costs no key derivation and is refused', () => {
    const { sealer, opener, open } = pair({ epochPackets: 4 });
    const ahead = new PacketSealer(key, mask, { cipher: 'chacha20-poly1305', epochPackets: 4 }, new ManualClock(), undefined);
    for (let i = 0; i < 16; i++) ahead.seal(1, rec(1), 0, 1, 1, 0); // epochs 0..3 spent
    assert.equal(typeof open(sealer.seal(1, rec(1), 0, 1, 1, 0)), 'object');
    assert.equal(open(ahead.seal(1, rec(1), 0, 1, 1, 0)), 'forged', 'epoch 4 is more than two ahead of 0');
    assert.deepEqual(opener.heldEpochs, [0]);
  });

  it('time rekey: after rekeyAfterMs the sender jumps to the next epoch, and the receiver follows', () => {
    const { clock, sealer, open } = pair({ epochPackets: 1000, rekeyAfterMs: 60_000 });
    assert.equal((open(sealer.seal(1, rec(5), 0, 5, 1, 0)) as Opened).counter, 0);
    clock.advance(60_000);
    const o = open(sealer.seal(1, rec(5), 0, 5, 1, 0)) as Opened;
    assert.equal(o.counter, 1000);
    assert.equal(sealer.epoch, 1);
  });

  it('refuses to seal past the counter limit: never a nonce reused', () => {
    const { sealer } = pair({ counterLimit: 2 });
    for (let i = 0; i < 3; i++) sealer.seal(1, rec(1), 0, 1, 1, 0);
    assert.throws(() => sealer.seal(1, rec(1), 0, 1, 1, 0), LimitError);
    assert.throws(() => sealer.seal(1, rec(1), 0, 1, 1, 0), LimitError);
  });
});
