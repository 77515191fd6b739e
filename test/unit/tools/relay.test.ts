/**
 * TcpRelay on loopback: integrity, order under jitter, delay and rate lower
 * bounds, cuts (RST, FIN, after N bytes), blackhole, refuse, bounded queues.
 * Timing checks are lower bounds only: the relay guarantees them, the
 * machine's speed cannot break them.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TcpRelay, type TcpRelayInit } from '../../tools/relay.js';
import { deadTcpEndpoint } from '../../helpers/net-fixtures.js';
import { connectClient, receivedBytes, startEcho, startSink, waitFor, writeAll, type Client } from './relay-helpers.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function relayTo(port: number, init: Partial<TcpRelayInit> = {}): Promise<TcpRelay> {
  const relay = new TcpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port }, seed: 7, ...init });
  await relay.start();
  cleanups.push(() => relay.close());
  return relay;
}

async function echoRelay(init: Partial<TcpRelayInit> = {}): Promise<{ relay: TcpRelay; echo: Awaited<ReturnType<typeof startEcho>> }> {
  const echo = await startEcho();
  cleanups.push(() => echo.close());
  return { relay: await relayTo(echo.port, init), echo };
}

async function client(relay: TcpRelay): Promise<Client> {
  const c = await connectClient(relay.address.port);
  cleanups.push(async () => {
    c.socket.destroy();
  });
  return c;
}

const sha = (b: Buffer | Buffer[]): string => createHash('sha256').update(Buffer.concat([b].flat())).digest('hex');

/** Keeps writing until the socket dies (for mid-transfer cuts). */
function writeForever(c: Client): void {
  const chunk = randomBytes(65536);
  const pump = (): void => {
    while (!c.socket.destroyed && c.socket.writable && c.socket.write(chunk));
  };
  c.socket.on('drain', pump);
  pump();
}

describe('TcpRelay', () => {
  it('forwards 4 MiB intact both ways and passes the FIN on', async () => {
    const { relay } = await echoRelay();
    const c = await client(relay);
    const data = randomBytes(4 * 1024 * 1024);
    await writeAll(c.socket, data);
    c.socket.end();
    await waitFor(() => c.ended, 'echo FIN');
    assert.equal(sha(c.received), sha(data));
    assert.equal(relay.stats.bytesUp, data.length);
    assert.equal(relay.stats.bytesDown, data.length);
    await waitFor(() => relay.stats.live === 0, 'link gone');
  });

  it('keeps byte order under heavy jitter', async () => {
    const { relay } = await echoRelay({ up: { delayMs: 5, jitterMs: 40 }, down: { jitterMs: 40 } });
    const c = await client(relay);
    const parts: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const part = randomBytes(2048);
      parts.push(part);
      c.socket.write(part);
      // Separate ticks so the relay sees many chunks, each with its own jitter draw.
      await new Promise((r) => setImmediate(r));
    }
    c.socket.end();
    await waitFor(() => c.ended, 'echo FIN');
    assert.equal(sha(c.received), sha(parts));
  });

  it('adds at least the configured one-way delays to a round trip', async () => {
    const { relay } = await echoRelay({ up: { delayMs: 60 }, down: { delayMs: 40 } });
    const c = await client(relay);
    for (let i = 1; i <= 3; i++) {
      const t0 = performance.now();
      c.socket.write('ping');
      await waitFor(() => receivedBytes(c) === 4 * i, 'echo');
      assert.ok(performance.now() - t0 >= 100, `round trip ${performance.now() - t0} ms < 100 ms`);
    }
    relay.set('both', { delayMs: 0 });
    assert.deepEqual(relay.impairment('up'), { delayMs: 0, jitterMs: 0, rateBps: 0 });
  });

  it('takes at least ~N/R to move N bytes at rate R', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const rate = 1_000_000;
    const relay = await relayTo(sink.port, { up: { rateBps: rate } });
    const c = await client(relay);
    const n = 512 * 1024;
    const t0 = performance.now();
    await writeAll(c.socket, randomBytes(n));
    await waitFor(() => sink.conns[0]?.bytes === n, 'all bytes at the sink');
    const elapsed = performance.now() - t0;
    // Slack for the 10 ms burst and one quantum; the bound is still ~85% of N/R.
    assert.ok(elapsed >= (0.8 * n * 1000) / rate, `${n} B at ${rate} B/s took only ${elapsed} ms`);
  });

  it('cutAll reset kills both sides mid-transfer with an RST', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const relay = await relayTo(sink.port);
    const c = await client(relay);
    writeForever(c);
    await waitFor(() => (sink.conns[0]?.bytes ?? 0) > 256 * 1024, 'transfer under way');
    assert.equal(relay.cutAll({ mode: 'reset' }), 1);
    await waitFor(() => c.closed && sink.conns[0]?.closed === true, 'both sides closed');
    assert.ok(c.errorCode === 'ECONNRESET' || c.errorCode === 'EPIPE', `client saw ${c.errorCode}`);
    // Linux may report an RST to a pure reader with queued data as EOF, so
    // the target side is only required to be gone; the writer above tells RST from FIN.
    const t = sink.conns[0];
    assert.ok(t?.errorCode === 'ECONNRESET' || t?.ended === true, `target saw ${t?.errorCode}`);
    assert.equal(relay.stats.cuts, 1);
    await waitFor(() => relay.stats.live === 0, 'link gone');
  });

  it('cutAll close sends a FIN to both sides mid-transfer', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const relay = await relayTo(sink.port);
    const c = await client(relay);
    writeForever(c);
    await waitFor(() => (sink.conns[0]?.bytes ?? 0) > 256 * 1024, 'transfer under way');
    assert.equal(relay.cutAll({ mode: 'close' }), 1);
    await waitFor(() => c.closed && sink.conns[0]?.closed === true, 'both sides closed');
    assert.equal(c.ended, true, 'client saw the FIN');
    assert.equal(c.errorCode, undefined, 'a FIN cut is not a reset');
    assert.equal(sink.conns[0]?.ended, true, 'target saw the FIN');
    await waitFor(() => relay.stats.live === 0, 'link gone');
  });

  it('cutAfterBytes (close) delivers exactly N bytes then cuts', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const relay = await relayTo(sink.port);
    relay.cutAfterBytes(100_000, { mode: 'close' });
    const c = await client(relay);
    const data = randomBytes(1024 * 1024);
    await writeAll(c.socket, data);
    await waitFor(() => c.closed && sink.conns[0]?.closed === true, 'both sides closed');
    assert.equal(sink.conns[0]?.bytes, 100_000);
    assert.equal(sink.conns[0]?.hash.digest('hex'), sha(data.subarray(0, 100_000)));
    assert.equal(relay.stats.bytesUp, 100_000);
    assert.equal(relay.stats.cuts, 1);
  });

  it('cutAfterBytes (reset) resets the client after at most N bytes', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const relay = await relayTo(sink.port);
    relay.cutAfterBytes(50_000);
    const c = await client(relay);
    writeForever(c);
    await waitFor(() => c.closed && sink.conns[0]?.closed === true, 'both sides closed');
    assert.ok(c.errorCode === 'ECONNRESET' || c.errorCode === 'EPIPE', `client saw ${c.errorCode}`);
    assert.ok((sink.conns[0]?.bytes ?? Infinity) <= 50_000);
    assert.equal(relay.stats.bytesUp, 50_000);
  });

  it('blackhole holds traffic and new dials, and lets them through when lifted', async () => {
    const { relay, echo } = await echoRelay();
    const c1 = await client(relay);
    c1.socket.write('one');
    await waitFor(() => receivedBytes(c1) === 3, 'first echo');
    relay.blackhole(true);
    c1.socket.write('two');
    const c2 = await client(relay); // accepted, like a SYN into a dead link that a middlebox answered
    c2.socket.write('three');
    await sleep(200); // absence check: nothing may move while blackholed
    assert.equal(receivedBytes(c1), 3);
    assert.equal(relay.stats.bytesUp, 3);
    assert.equal(echo.accepted, 1, 'the target saw no new connection');
    relay.blackhole(false);
    await waitFor(() => receivedBytes(c1) === 6 && receivedBytes(c2) === 5, 'held bytes delivered');
    assert.equal(Buffer.concat(c1.received).toString(), 'onetwo');
    assert.equal(Buffer.concat(c2.received).toString(), 'three');
    assert.equal(echo.accepted, 2);
  });

  it('refuse resets new connections at once and never dials the target', async () => {
    const { relay, echo } = await echoRelay();
    relay.refuse(true);
    // Raw socket: the RST may race the 'connect' event, so do not wait for it.
    const s = connect({ host: '127.0.0.1', port: relay.address.port });
    let code: string | undefined;
    let closed = false;
    s.on('error', (err: NodeJS.ErrnoException) => (code = err.code));
    s.on('close', () => (closed = true));
    s.resume();
    await waitFor(() => closed, 'refused client closed');
    assert.equal(code, 'ECONNRESET');
    assert.equal(echo.accepted, 0);
    assert.equal(relay.stats.refused, 1);
    relay.refuse(false);
    const ok = await client(relay);
    ok.socket.write('hi');
    await waitFor(() => receivedBytes(ok) === 2, 'echo after refuse off');
  });

  it('bounds each direction queue when the target does not read', async () => {
    const sink = await startSink({ paused: true });
    cleanups.push(() => sink.close());
    const bound = 256 * 1024;
    const relay = await relayTo(sink.port, { maxQueueBytes: bound });
    const c = await client(relay);
    // Far more than loopback kernel buffers can absorb, so an unbounded relay would queue tens of MiB.
    void writeAll(c.socket, Buffer.alloc(48 * 1024 * 1024, 1));
    let last = -1;
    let still = 0;
    await waitFor(() => {
      const s = relay.stats;
      const moved = s.bytesUp + s.queuedUp;
      still = moved === last ? still + 1 : 0;
      last = moved;
      return still >= 20 && s.queuedUp > 0;
    }, 'relay stalled on backpressure');
    const s = relay.stats;
    assert.ok(s.maxQueuedUp >= bound, `queue never reached its bound (${s.maxQueuedUp})`);
    assert.ok(s.maxQueuedUp <= bound + 65536, `queue grew to ${s.maxQueuedUp} > ${bound} + one read`);
    assert.ok(c.socket.writableLength > 0, 'the client is the one holding the rest');
  });

  it('resets the client when the target refuses the dial', async () => {
    // A port that refuses for the whole test: a freed port could be re-bound by
    // another process before the relay dials it (the dial then succeeds and the
    // client sees a FIN, not a reset).
    const { port } = await deadTcpEndpoint();
    const relay = await relayTo(port);
    const c = await client(relay);
    c.socket.write('lost');
    await waitFor(() => c.closed, 'client closed');
    assert.equal(c.errorCode, 'ECONNRESET');
    await waitFor(() => relay.stats.live === 0, 'link gone');
  });

  it('close() ends live connections and resolves once sockets are closed', async () => {
    const { relay } = await echoRelay();
    const c = await client(relay);
    c.socket.write('x');
    await waitFor(() => receivedBytes(c) === 1, 'echo');
    await relay.close();
    await waitFor(() => c.closed, 'client closed');
    assert.equal(relay.stats.live, 0);
    await relay.close(); // idempotent
  });

  it('rejects bad impairments with ConfigError and changes nothing', () => {
    const relay = new TcpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port: 9 } });
    assert.throws(() => relay.set('up', { delayMs: -1 }), { code: 'ERR_CONFIG' });
    assert.throws(() => relay.set('up', { lossRate: 0.1 } as never), { code: 'ERR_CONFIG' });
    assert.deepEqual(relay.impairment('up'), { delayMs: 0, jitterMs: 0, rateBps: 0 });
  });
});
