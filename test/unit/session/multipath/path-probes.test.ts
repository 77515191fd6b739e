/**
 * Bonding probes (src/session/multipath/probes.ts, path.ts): a PING written after a path's data,
 * answered on the same path, measures that path alone. The SessionPath tests
 * drive the bookkeeping with a fake channel and explicit times; the session
 * test checks that a real bonded session sends probes and gets them answered.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { ManualClock } from '../../../../src/core/clock.js';
import type { SecureChannel } from '../../../../src/secure/channel.js';
import { SessionPath } from '../../../../src/session/multipath/path.js';
import { makeBondedPair, readAll } from '../../../helpers/session-pair.js';
import type { TcpRelay } from '../../../tools/relay.js';
import { waitUntil } from '../../../helpers/eventually.js';

/** What SessionPath reads from its channel. */
interface FakeChannel {
  bytesOut: number;
  bytesIn: number;
  queuedBytes: number;
  writable: boolean;
  info: { remote: string };
}

function makePath(bytesOut = 0): { path: SessionPath; ch: FakeChannel; clock: ManualClock } {
  const ch: FakeChannel = { bytesOut, bytesIn: 0, queuedBytes: 0, writable: true, info: { remote: 'fake' } };
  const clock = new ManualClock(0);
  return { path: new SessionPath(1, ch as unknown as SecureChannel, {}, true, clock), ch, clock };
}

/** What flush() does: the pending probe PING is written (24 bytes), then the next pickPath settles it. */
function writePing(path: SessionPath, ch: FakeChannel, now: number): void {
  path.writeControl(Buffer.alloc(64));
  ch.bytesOut += 24;
  path.settleProbe(now);
}

/** Sends `bytes` of data and then a probe at `now`; returns the probe id. */
let nextId = 100;
function sendWithProbe(path: SessionPath, ch: FakeChannel, bytes: number, now: number): number {
  ch.bytesOut += bytes;
  const id = nextId++;
  path.requestProbe(id);
  writePing(path, ch, now);
  return id;
}

describe('SessionPath probes', () => {
  it('a probe counts the bytes written before its PING, and its PONG covers exactly those', () => {
    const { path, ch } = makePath(1000);
    assert.equal(path.unprobed, 0, 'bytes before the path existed are not its load');
    path.addInflight(5000);
    ch.bytesOut += 5000;
    assert.equal(path.probeDue(0), true);
    path.requestProbe(7);
    path.settleProbe(1);
    assert.equal(path.probeDue(1), false, 'one probe pending at a time');
    ch.bytesOut += 2000; // data of the same flush goes out before the PING
    writePing(path, ch, 2);
    ch.bytesOut += 12_000; // data after the PING
    assert.equal(path.unprobed, 19_024);
    assert.equal(path.onProbePong(99, 10), false, 'not a probe: left to liveness');
    assert.equal(path.onProbePong(7, 12), true);
    assert.equal(path.unprobed, 12_000);
    assert.equal(path.minRtt, 10);
    assert.equal(path.srtt, 10);
    assert.equal(path.onProbePong(7, 13), false, 'answered once');
  });

  it('a probe whose PING was replaced (by a liveness ping) is forgotten', () => {
    const { path, ch } = makePath();
    path.addInflight(1);
    ch.bytesOut = 4096;
    path.requestProbe(7);
    path.requestPing(8); // livenessTick overwrote it
    path.settleProbe(1);
    assert.equal(path.onProbePong(7, 5), false);
    assert.equal(path.unprobed, 4096);
    assert.equal(path.probeDue(1), true, 'a new probe may go out');
  });

  it('a later answer also retires older probes (their PINGs were lost)', () => {
    const { path, ch } = makePath();
    path.addInflight(1);
    const first = sendWithProbe(path, ch, 1000, 0);
    sendWithProbe(path, ch, 1000, 20);
    ch.bytesOut += 500;
    assert.equal(path.onProbePong(nextId - 1, 30), true);
    assert.equal(path.unprobed, 500);
    assert.equal(path.onProbePong(first, 31), false);
  });

  it('probes go out only for paths with sequenced data in flight, after new bytes, spaced out', () => {
    const { path, ch } = makePath();
    ch.bytesOut = 10_000;
    assert.equal(path.probeDue(0), false, 'nothing in flight (control frames only)');
    path.addInflight(10_000);
    assert.equal(path.probeDue(0), true);
    sendWithProbe(path, ch, 0, 0);
    assert.equal(path.probeDue(50), false, 'no byte sent since the last probe');
    ch.bytesOut += 100;
    assert.equal(path.probeDue(5), false, 'too soon');
    assert.equal(path.probeDue(10), true);
  });

  it('measures the delivery rate over >= 100 ms, and answers bunched by a busy peer do not inflate it', () => {
    const { path, ch } = makePath();
    path.addInflight(1);
    // 250 bytes and a 24-byte PING record every 10 ms, each answered 20 ms later.
    const sent: { id: number; at: number }[] = [];
    for (let t = 0; t <= 300; t += 10) sent.push({ id: sendWithProbe(path, ch, 250, t), at: t });
    for (const s of sent) {
      assert.equal(path.onProbePong(s.id, s.at + 20), true);
      if (s.at + 20 < 100) assert.equal(path.probeRate, 0, 'no sample shorter than 100 ms');
    }
    assert.ok(Math.abs(path.probeRate - 27.4) < 0.3, `rate ${path.probeRate}`);

    // A peer that answers 300 ms of probes at once: the send interval bounds the sample.
    const { path: p2, ch: c2 } = makePath();
    p2.addInflight(1);
    const burst: number[] = [];
    for (let t = 0; t <= 300; t += 10) burst.push(sendWithProbe(p2, c2, 250, t));
    assert.equal(p2.onProbePong(burst[0] as number, 10), true);
    for (const id of burst.slice(1)) p2.onProbePong(id, 320);
    assert.ok(p2.probeRate > 0 && p2.probeRate <= 27.5, `rate ${p2.probeRate}`);
  });

  it('once probed, the cap is two rate x (own min RTT + 50 ms) products and applies to unprobed bytes, not to acknowledgement waits', () => {
    const { path, ch, clock } = makePath();
    path.setFeedbackRtt(40);
    path.addInflight(3_001_000);
    clock.advance(100);
    path.onAcked(1000); // ack-based rate: 1000 bytes in 100 ms = 10 bytes/ms
    assert.equal(path.rate, 10);
    assert.equal(path.cap, Math.max(256 * 1024, 4 * 10 * (40 + 10)));
    assert.equal(path.load, 3_000_000, 'before probes: unacknowledged bytes');
    // 12.5 bytes/ms probed (101 bytes and a 24-byte PING every 10 ms), 40 ms RTT.
    for (let t = 0; t <= 400; t += 10) {
      const id = sendWithProbe(path, ch, 101, t);
      path.onProbePong(id, t + 40);
    }
    assert.ok(Math.abs(path.probeRate - 12.5) < 0.2, `rate ${path.probeRate}`);
    assert.equal(path.minRtt, 40);
    assert.equal(path.cap, Math.max(256 * 1024, 2 * path.probeRate * (40 + 50)));
    // Frames waiting in the peer's reorder buffer for another path keep
    // `inflight` high; the probed load is what this path has not delivered.
    ch.bytesOut += 100_000;
    assert.equal(path.load, 100_000);
    path.setFeedbackRtt(400); // a slower other path does not change this path's cap
    assert.equal(path.cap, Math.max(256 * 1024, 2 * path.probeRate * (40 + 50)));
  });

  it('expected delivery counts only the probed queue beyond one RTT of bytes in flight', () => {
    const { path, ch } = makePath();
    path.addInflight(1);
    for (let t = 0; t <= 300; t += 10) path.onProbePong(sendWithProbe(path, ch, 250, t), t + 10);
    const r = path.probeRate;
    const rtt = path.minRtt as number;
    ch.bytesOut += Math.round(r * rtt); // one RTT of bytes: no queue yet
    assert.ok(Math.abs(path.expectedDelivery(0) - rtt / 2) < 0.01);
    ch.bytesOut += Math.round(r * 40); // 40 ms of queue
    assert.ok(Math.abs(path.expectedDelivery(0) - (rtt / 2 + 40)) < 0.1, `${path.expectedDelivery(0)}`);
  });
});

describe('bonded session: probes', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('each path of the sender is probed and answered on its own: its RTT follows a delay added after attach', async () => {
    // No liveness ping after the first: RTT samples can only come from probes.
    const { p, relays, close } = await makeBondedPair({ session: { pingIntervalMs: 60_000 } });
    cleanups.push(close);
    const server = await p.serverSession;
    const received = new Promise<Buffer>((resolve) => server.onStream((s) => void readAll(s).then(resolve)));
    await waitUntil(() => p.clientSession.pathCount >= 2, 'the second path to join');
    // 10 and 50 ms round trips, 4 and 2 MB/s: both paths must carry data.
    (relays[0] as TcpRelay).set('both', { delayMs: 5, rateBps: 4e6 });
    (relays[1] as TcpRelay).set('both', { delayMs: 25, rateBps: 2e6 });
    const data = randomBytes(6 << 20);
    const s = p.clientSession.openStream();
    for (let off = 0; off < data.length; off += 256 << 10) {
      if (!s.write(data.subarray(off, off + (256 << 10)))) await once(s, 'drain');
    }
    s.end();
    const got = await received;
    assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(data).digest('hex'));
    const paths = p.clientSession.stats.paths;
    const a = paths.find((x) => x.label === 'A');
    const b = paths.find((x) => x.label !== 'A');
    assert.ok(a && b, JSON.stringify(paths));
    // The attach-time ping saw about 0 ms; only probes can have seen the relays' delays.
    assert.ok((a.rttMs ?? 0) >= 8, `path A srtt ${a.rttMs}`);
    assert.ok((b.rttMs ?? 0) >= 40, `path B srtt ${b.rttMs}`);
    assert.equal(a.pingsMissed + b.pingsMissed, 0, 'probe answers are not liveness misses');
    assert.ok(a.rateBytesPerSec > 0 && b.rateBytesPerSec > 0);
  });
});
