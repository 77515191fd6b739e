/**
 * Liveness and failover under a manual clock, without sockets: a bonded
 * session over two in-memory paths; one path goes silent. Its data moves to
 * the other path at the first missed pong, and it is dropped after
 * maxMissedPongs × pingTimeoutMs, to the millisecond.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../../src/core/clock.js';
import { Session } from '../../../../src/session/session.js';
import type { PolyStream } from '../../../../src/session/stream.js';
import { fakeChannelPair, type LoggedRecord } from '../../../helpers/fake-channel.js';

/** Lets microtasks, nextTicks and stream events run (no clock time passes). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

const opts = { pingIntervalMs: 1000, pingTimeoutMs: 500, maxMissedPongs: 3 };

async function bonded(clock: ManualClock) {
  const id = Buffer.alloc(16, 1);
  const client = new Session({ role: 'client', id, clock, ...opts });
  const server = new Session({ role: 'server', id, clock, ...opts });
  const log: LoggedRecord[] = [];
  const one = fakeChannelPair(log);
  const two = fakeChannelPair(log);
  const received: Buffer[] = [];
  const streamErrors: Error[] = [];
  server.onStream((s: PolyStream) => s.on('data', (d: Buffer) => received.push(d)).on('error', (e) => streamErrors.push(e)));
  server.attach(one.b.asChannel(), 0);
  client.attach(one.a.asChannel(), 0);
  await settle();
  server.attach(two.b.asChannel(), client.receivedSeq, { join: true, label: 'two' });
  client.attach(two.a.asChannel(), server.receivedSeq, { join: true, label: 'two' });
  await settle();
  return { client, server, one, two, received, streamErrors };
}

describe('liveness with a manual clock', () => {
  it('a path that stops answering is suspended at the first missed pong (its frames go on the other) and dropped after maxMissed', async () => {
    const clock = new ManualClock(0);
    const { client, server, one, received, streamErrors } = await bonded(clock);
    assert.equal(client.pathCount, 2);
    const closed: string[] = [];
    client.on('pathClosed', (st: { label: string }) => closed.push(`${st.label}@${clock.now()}`));
    // Path one goes silent both ways; the next record goes on it (equal paths: the first).
    one.a.blackhole = true;
    one.b.blackhole = true;
    const s = client.openStream(Buffer.from('x'));
    s.write(Buffer.from('hello'));
    await settle();
    assert.ok(one.a.bytesOut > 0);
    assert.equal(received.length, 0, 'lost with path one for now');
    // Ping every 1000 ms, 500 ms to answer: the first miss is at 1500.
    for (let t = 0; t < 1500; t += 100) {
      clock.advance(100);
      await settle();
    }
    assert.equal(Buffer.concat(received).toString(), 'hello', 'resent on path two at the first miss');
    assert.deepEqual(client.stats.paths.map((p) => p.state), ['joining', 'up'], 'path one is suspended');
    s.write(Buffer.from(' world'));
    await settle();
    assert.equal(Buffer.concat(received).toString(), 'hello world', 'new data goes on path two');
    // Missed pongs 2 and 3 at 2000 and 2500: dropped then, not before.
    for (let t = 1500; t < 2400; t += 100) {
      clock.advance(100);
      await settle();
    }
    clock.advance(99);
    await settle();
    assert.deepEqual(closed, []);
    clock.advance(1);
    await settle();
    assert.deepEqual(closed, [`${one.a.info.remote}@2500`]);
    assert.equal(client.pathCount, 1);
    assert.equal(client.state, 'open');
    client.close();
    await settle();
    assert.equal(server.state, 'closed');
    assert.deepEqual(streamErrors.map((e) => e.message), ['session closed by remote (code 0)'], 'the open stream ends with the session');
  });

  it('a path that answers stays up however long the clock runs, and the RTT is what the clock says', async () => {
    const clock = new ManualClock(0);
    const { client, server } = await bonded(clock);
    for (let i = 0; i < 50; i++) {
      clock.advance(200);
      await settle();
    }
    assert.equal(client.pathCount, 2);
    assert.deepEqual(client.stats.paths.map((p) => p.pingsMissed), [0, 0]);
    assert.equal(client.rttMs, 0, 'answers arrive without the clock moving');
    client.close();
    server.close();
  });

  it('a detached session waits graceMs for a new path, then ends', async () => {
    const clock = new ManualClock(0);
    const s = new Session({ role: 'client', id: Buffer.alloc(16), clock, graceMs: 60_000 });
    const { a } = fakeChannelPair();
    s.attach(a.asChannel(), 0);
    a.abort(new Error('link down'));
    assert.equal(s.state, 'detached');
    clock.advance(59_999);
    assert.equal(s.state, 'detached');
    clock.advance(1);
    assert.equal(s.state, 'closed');
    assert.match(String(s.error?.message), /grace/);
  });
});
