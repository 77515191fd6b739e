/**
 * The sans-IO ARQ connection between two ends over a simulated link under a
 * ManualClock: records arrive whole and in order through loss, reordering
 * and duplication; the window holds; bad packets are counted and change
 * nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Bbr } from '../../../src/arq/bbr.js';
import { ArqConnection, FRAME_ACK, FRAME_PING, FRAME_STREAM } from '../../../src/arq/connection.js';
import { decodeAckFrame, encodeAckFrame } from '../../../src/arq/ack-frame.js';
import { FixedWindow } from '../../../src/arq/congestion.js';
import { readVarint, writeVarint } from '../../../src/arq/varint.js';
import { ManualClock } from '../../../src/core/clock.js';
import { prng } from '../../helpers/bottleneck-link.js';

interface LinkOpts {
  delayMs: number;
  loss: number;
  /** Extra random delay up to this much: packets overtake each other. */
  jitterMs?: number;
  dup?: number;
  /** Bytes per ms the link serves (a rate limit with an unbounded queue); Infinity for none. */
  rate?: number;
  seed?: number;
  recvWindow?: number;
  cc?: () => ConstructorParameters<typeof ArqConnection>[0]['cc'];
}

/** Two connections joined by a simulated link; `run` moves time from event to event. */
function linked(o: LinkOpts) {
  const clock = new ManualClock(0);
  const rand = prng(o.seed ?? 7);
  const got: Buffer[][] = [[], []];
  const dgrams: Buffer[][] = [[], []];
  const mk = (side: 0 | 1): ArqConnection =>
    new ArqConnection({
      cc: o.cc?.() ?? new Bbr(),
      maxPacket: 1150,
      recvWindow: o.recvWindow,
      onRecord: (r) => got[side]!.push(Buffer.from(r)),
      onDatagram: (r) => {
        dgrams[side]!.push(Buffer.from(r));
        // Delivered while stream bytes wait out of order for a repair: not held behind them.
        if (ends[side].recv.buffered > 0) overtook[side]!++;
      },
    });
  const overtook = [0, 0];
  const ends = [mk(0), mk(1)] as const;
  type Flight = { at: number; to: 0 | 1; data: Buffer };
  let flights: Flight[] = [];
  const busyUntil = [0, 0];
  const wire = [0, 0];
  /** Ranges of each ACK frame each side sent. */
  const ackRanges: number[][] = [[], []];
  const out = Buffer.alloc(1150);
  const sendAll = (now: number): void => {
    for (const from of [0, 1] as const) {
      for (;;) {
        const n = ends[from].poll(now, out);
        if (n === 0) break;
        wire[from]! += n;
        const c = { buf: out, pos: 0, end: n };
        readVarint(c, 'pn');
        if (out[c.pos] === FRAME_ACK) ackRanges[from]!.push(decodeAckFrame(out, c.pos + 1, n).frame.ranges.length);
        if (rand() < o.loss) continue;
        const rate = o.rate ?? Infinity;
        const start = Math.max(now, busyUntil[from]!);
        busyUntil[from] = start + n / rate;
        const at = busyUntil[from]! + o.delayMs + rand() * (o.jitterMs ?? 0);
        const data = Buffer.from(out.subarray(0, n));
        flights.push({ at, to: (1 - from) as 0 | 1, data });
        if (rand() < (o.dup ?? 0)) flights.push({ at: at + 1, to: (1 - from) as 0 | 1, data });
      }
    }
  };
  const run = (until: () => boolean, maxMs = 120_000): void => {
    while (!until()) {
      const now = clock.now();
      if (now > maxMs) throw new Error(`not done after ${maxMs} simulated ms`);
      sendAll(now);
      let next = Infinity;
      for (const f of flights) next = Math.min(next, f.at);
      for (const e of ends) next = Math.min(next, e.nextWake(now) ?? Infinity);
      if (next === Infinity) throw new Error('stuck: nothing in flight and no timer');
      clock.advance(Math.max(0, next - now) || 0.01);
      const t = clock.now();
      const due = flights.filter((f) => f.at <= t);
      flights = flights.filter((f) => f.at > t);
      for (const f of due) ends[f.to].receive(f.data, t);
    }
  };
  return { clock, ends, got, dgrams, overtook, run, wire, ackRanges };
}

const records = (n: number, seed = 1): Buffer[] => {
  const r = prng(seed);
  return Array.from({ length: n }, (_, i) => {
    const b = Buffer.alloc(1 + Math.floor(r() * 20_000));
    b.fill(i & 0xff);
    b[0] = i >> 8;
    return b;
  });
};

describe('arq connection', () => {
  it('delivers records whole and in order both ways over a clean link', () => {
    const l = linked({ delayMs: 10, loss: 0 });
    const a = records(200, 1);
    const b = records(50, 2);
    for (const r of a) l.ends[0].write(r, r.length);
    for (const r of b) l.ends[1].write(r, r.length);
    l.run(() => l.got[1]!.length === a.length && l.got[0]!.length === b.length);
    assert.deepEqual(l.got[1], a);
    assert.deepEqual(l.got[0], b);
    assert.equal(l.ends[0].ld.lost, 0);
    assert.equal(l.ends[0].stats.retransmittedBytes, 0);
  });

  it('recovers from 10 % loss, reordering and duplication, sending again only what was lost', () => {
    const l = linked({ delayMs: 25, loss: 0.1, jitterMs: 8, dup: 0.05, seed: 3 });
    const a = records(300, 3);
    for (const r of a) l.ends[0].write(r, r.length);
    l.run(() => l.got[1]!.length === a.length);
    assert.deepEqual(l.got[1], a);
    const s = l.ends[0].stats;
    const useful = l.ends[0].send.written;
    assert.ok(l.ends[0].ld.lost > 0 && s.retransmittedBytes > 0, 'losses were repaired');
    // Resends stay near the loss rate (10 %, plus spurious ones from reordering): far from a go-back-N's.
    assert.ok(s.retransmittedBytes < 0.3 * useful, `resent ${s.retransmittedBytes} of ${useful}`);
    assert.ok(l.ends[1].acks.duplicates > 0, 'duplicates were seen and dropped');
    l.run(() => l.ends[0].send.allAcked);
  });

  it('survives a long blackout by probing, and finishes once the link is back', () => {
    let loss = 0;
    const l = linked({ delayMs: 20, loss: 0, seed: 5 });
    const a = records(40, 5);
    for (const r of a) l.ends[0].write(r, r.length);
    l.run(() => l.got[1]!.length >= 5);
    // Nothing gets through for 5 s.
    const ends = l.ends;
    const realReceive = ends[1].receive.bind(ends[1]);
    const until = l.clock.now() + 5000;
    ends[1].receive = (p, now) => (now < until ? undefined : realReceive(p, now));
    loss = ends[0].ld.probeTimeouts;
    l.run(() => l.got[1]!.length === a.length);
    assert.deepEqual(l.got[1], a);
    assert.ok(ends[0].ld.probeTimeouts > loss + 2, 'probe timeouts backed off through the blackout');
  });

  it('never holds more than its window out of order, and the sender never sends past it', () => {
    const window = 64 * 1024;
    const l = linked({ delayMs: 30, loss: 0.05, seed: 9, recvWindow: window, cc: () => new FixedWindow(1 << 22) });
    const a = records(100, 9);
    for (const r of a) l.ends[0].write(r, r.length);
    let most = 0;
    l.run(() => {
      most = Math.max(most, l.ends[1].recv.buffered);
      return l.got[1]!.length === a.length;
    });
    assert.deepEqual(l.got[1], a);
    assert.ok(most > 0 && most <= window, `held ${most} of a ${window}-byte window`);
    assert.equal(l.ends[1].stats.overWindow, 0, 'an honest sender stays inside the window');
  });

  it('counts and drops malformed packets, an ACK for packets never sent and data past the window', () => {
    const clock = new ManualClock(0);
    const got: Buffer[] = [];
    const c = new ArqConnection({ cc: new Bbr(), maxPacket: 1150, recvWindow: 1000, onRecord: (r) => got.push(r) });
    const pkt = (...parts: (number | Buffer)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : p)));
    const v = (n: number): Buffer => {
      const b = Buffer.alloc(8);
      return b.subarray(0, writeVarint(b, 0, n));
    };
    c.receive(Buffer.alloc(0), clock.now()); // empty
    c.receive(pkt(v(1)), clock.now()); // no frames
    c.receive(pkt(v(2), 0x7f), clock.now()); // unknown frame
    c.receive(pkt(v(3), FRAME_STREAM, v(0), v(50), Buffer.alloc(10)), clock.now()); // length past the end
    c.receive(pkt(v(4), FRAME_STREAM, v(0), v(0)), clock.now()); // empty stream frame
    assert.equal(c.stats.malformed, 5);
    assert.equal(c.acks.ackDeadline, undefined, 'nothing of them is acknowledged');
    c.receive(pkt(v(5), FRAME_STREAM, v(990), v(20), Buffer.alloc(20)), clock.now());
    assert.equal(c.stats.overWindow, 1);
    assert.equal(c.acks.has(5), false, 'data past the window is not acknowledged: it will be sent again');
    const ack = Buffer.alloc(64);
    const n = encodeAckFrame({ largest: 1000, ackDelayMs: 0, ranges: [{ lo: 900, hi: 1000 }] }, ack, 0);
    c.receive(pkt(v(6), FRAME_ACK, ack.subarray(0, n), FRAME_PING), clock.now());
    assert.equal(c.ld.unknownAcks, 1);
    assert.equal(c.failure, undefined);
    // A zero-length record in the stream breaks the framing: the connection fails (the channel aborts).
    c.receive(pkt(v(7), FRAME_STREAM, v(0), v(2), Buffer.from([0, 0])), clock.now());
    assert.match(String(c.failure), /empty record/);
    assert.equal(got.length, 0);
  });

  it('datagrams go unreliably: never resent, and never behind a stream that waits for a lost packet', () => {
    const l = linked({ delayMs: 20, loss: 0.2, seed: 21 });
    // Stream data first: with 20 % loss it keeps waiting for repairs.
    const a = records(40, 21);
    for (const r of a) l.ends[0].write(r, r.length);
    const n = 400;
    let queued = 0;
    for (let i = 0; i < n; i++) {
      const d = Buffer.alloc(200, i & 0xff);
      d.writeUInt16BE(i, 0);
      if (l.ends[0].sendDatagram(d)) queued++;
      if (i % 50 === 49) l.run(() => l.ends[0].stats.datagramsSent >= queued);
    }
    l.run(() => l.got[1]!.length === a.length);
    assert.deepEqual(l.got[1], a, 'the stream is intact');
    const got = l.dgrams[1]!;
    assert.equal(l.ends[0].stats.datagramsSent, queued);
    // About 80 % arrive; the lost ones are gone for good (not resent: a resend would bring them near 100 %).
    assert.ok(got.length > 0.65 * queued && got.length < 0.92 * queued, `${got.length} of ${queued} datagrams arrived at 20 % loss`);
    for (const d of got) assert.equal(d.length, 200);
    assert.equal(new Set(got.map((d) => d.readUInt16BE(0))).size, got.length, 'none twice');
    assert.ok(l.overtook[1]! > 0, 'datagrams were delivered while the stream waited for a lost packet');
    // Oversize and overflow are refused, counted.
    assert.equal(l.ends[0].sendDatagram(Buffer.alloc(l.ends[0].maxDatagram + 1)), false);
    assert.ok(l.ends[0].stats.datagramsDropped >= 1);
  });

  it('a datagram of the largest size leaves though the ACK it would ride with is large; no ACK-only packets in a loop', () => {
    const mk = () => new ArqConnection({ cc: new FixedWindow(1 << 20), maxPacket: 1150, onRecord: () => {}, onDatagram: () => {} });
    const a = mk();
    const b = mk();
    const out = Buffer.alloc(1150);
    // a streams to b; b misses every third packet, so its ACK carries many ranges.
    for (const r of records(120, 5)) a.write(r, r.length);
    for (let i = 0, n = a.poll(0, out); n > 0; i++, n = a.poll(0, out)) if (i % 3 !== 2) b.receive(Buffer.from(out.subarray(0, n)), 1);
    assert.ok(b.stats.packetsIn > 20);
    assert.ok(b.sendDatagram(Buffer.alloc(b.maxDatagram, 9)));
    // Before, every poll put the (opportunistic) ACK first, the datagram never fitted behind it,
    // and poll answered with another ACK-only packet for as long as the socket took them.
    let polls = 0;
    for (let n = b.poll(2, out); n > 0; n = b.poll(2, out)) assert.ok(++polls <= 3, `poll keeps sending: ${polls} packets, ${b.stats.ackOnly} ACK-only, ${b.stats.datagramsSent} datagrams`);
    assert.equal(b.stats.datagramsSent, 1, 'the datagram left');
    assert.ok(b.stats.ackOnly <= 1, `${b.stats.ackOnly} ACK-only packets`);
  });

  it('keeps wire bytes near the useful bytes on a clean link (headers and ACKs only)', () => {
    const l = linked({ delayMs: 10, loss: 0, rate: 5000 });
    const a = records(200, 11);
    for (const r of a) l.ends[0].write(r, r.length);
    l.run(() => l.got[1]!.length === a.length);
    const useful = a.reduce((s, r) => s + r.length, 0);
    const ratio = (l.wire[0]! + l.wire[1]!) / useful;
    assert.ok(ratio < 1.06, `wire/useful ${ratio.toFixed(3)}`);
  });

  it('keeps ACK frames short through loss: what the peer saw acknowledged is not repeated (RFC 9000 §13.2.4)', () => {
    // Loss both ways leaves gaps in what each end received; without forgetting, every ACK
    // carried the last 32 of them (up to ~100 bytes of every packet, each way).
    const l = linked({ delayMs: 25, loss: 0.05, rate: 2500, seed: 5 });
    const a = records(400, 12);
    for (const r of a) l.ends[0].write(r, r.length);
    l.run(() => l.got[1]!.length === a.length);
    for (const side of [0, 1]) {
      const ranges = l.ackRanges[side]!.slice(-200);
      const mean = ranges.reduce((s, n) => s + n, 0) / ranges.length;
      assert.ok(ranges.length > 0 && mean < 8, `side ${side}: ${mean.toFixed(1)} ranges per ACK (max ${Math.max(...ranges)})`);
    }
    const useful = a.reduce((s, r) => s + r.length, 0);
    const ratio = (l.wire[0]! + l.wire[1]!) / useful;
    assert.ok(ratio < 1.06 + 2 * 0.05, `wire/useful ${ratio.toFixed(3)} at 5 % loss`);
  });
});
