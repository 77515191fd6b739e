/**
 * UdpRelay on loopback: intact forwarding with one association per client,
 * delay lower bound, seeded loss (reproducible), duplication, reordering,
 * jitter, the bounded router queue, blackhole, idle expiry and cuts.
 * Senders are paced (the relay must have read each batch before the next)
 * so the kernel never drops on loopback and every count is the relay's doing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { UdpRelay, type UdpRelayInit } from '../../tools/relay.js';
import { sendUdp, seqPacket, startUdp, waitFor, type UdpPeer } from './relay-helpers.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function peer(echo = false): Promise<UdpPeer> {
  const p = await startUdp({ echo });
  cleanups.push(() => p.close());
  return p;
}

async function relayTo(port: number, init: Partial<UdpRelayInit> = {}): Promise<UdpRelay> {
  const relay = new UdpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port }, seed: 1, ...init });
  await relay.start();
  cleanups.push(() => relay.close());
  return relay;
}

/** Sends packets 0..n-1 through the relay, waiting after each batch until the relay has read it. */
async function sendSeq(from: UdpPeer, relay: UdpRelay, n: number, opts: { batch?: number; pad?: number; first?: number } = {}): Promise<void> {
  const batch = opts.batch ?? 50;
  const first = opts.first ?? 0;
  const base = relay.stats.up.received;
  for (let i = 0; i < n; i++) {
    await sendUdp(from.socket, seqPacket(first + i, opts.pad), relay.address.port);
    if ((i + 1) % batch === 0 || i === n - 1) await waitFor(() => relay.stats.up.received === base + i + 1, 'relay read the batch');
  }
}

const seqs = (p: UdpPeer): number[] => p.packets.map((x) => x.msg.readUInt32BE(0));

/** Arrivals whose sequence number is below one that arrived earlier. */
function inversions(order: number[]): number {
  let max = -1;
  let n = 0;
  for (const s of order) {
    if (s < max) n++;
    max = Math.max(max, s);
  }
  return n;
}

describe('UdpRelay', () => {
  it('forwards datagrams intact both ways, one association per client', async () => {
    const echo = await peer(true);
    const relay = await relayTo(echo.port);
    const [a, b] = [await peer(), await peer()];
    const sent = new Map<UdpPeer, Buffer[]>([
      [a, []],
      [b, []],
    ]);
    for (let i = 0; i < 40; i++) {
      for (const c of [a, b]) {
        const msg = randomBytes(1 + ((i * 37) % 1400));
        sent.get(c)?.push(msg);
        await sendUdp(c.socket, msg, relay.address.port);
        await waitFor(() => c.packets.length === i + 1, 'echo');
      }
    }
    for (const c of [a, b]) assert.deepEqual(c.packets.map((p) => p.msg), sent.get(c));
    assert.equal(relay.stats.associations, 2);
    assert.equal(new Set(echo.packets.map((p) => p.from.port)).size, 2, 'each client has its own socket toward the target');
  });

  it('adds at least the configured one-way delays to a round trip', async () => {
    const echo = await peer(true);
    const relay = await relayTo(echo.port, { up: { delayMs: 30 }, down: { delayMs: 20 } });
    const c = await peer();
    for (let i = 1; i <= 3; i++) {
      const t0 = performance.now();
      await sendUdp(c.socket, seqPacket(i), relay.address.port);
      await waitFor(() => c.packets.length === i, 'echo');
      assert.ok(performance.now() - t0 >= 50, `round trip ${performance.now() - t0} ms < 50 ms`);
    }
  });

  it('drops ~lossRate of 2000 packets, the same ones again with the same seed', async () => {
    const run = async (seed: number): Promise<{ got: number[]; dropped: number }> => {
      const sink = await peer();
      const relay = await relayTo(sink.port, { seed, up: { lossRate: 0.1 } });
      const c = await peer();
      await sendSeq(c, relay, 2000);
      const dropped = relay.stats.up.droppedLoss;
      await waitFor(() => sink.packets.length === 2000 - dropped, 'survivors at the sink');
      return { got: seqs(sink), dropped };
    };
    const first = await run(42);
    // Expectation 200, σ ≈ 13.4: a ±80 band is six sigma.
    assert.ok(first.dropped >= 120 && first.dropped <= 280, `dropped ${first.dropped} of 2000 at 10%`);
    const again = await run(42);
    assert.deepEqual(again.got, first.got, 'same seed, same losses');
  });

  it('duplicates ~duplicateRate of packets', async () => {
    const sink = await peer();
    const relay = await relayTo(sink.port, { up: { duplicateRate: 0.2 } });
    await sendSeq(await peer(), relay, 500);
    const dup = relay.stats.up.duplicated;
    await waitFor(() => sink.packets.length === 500 + dup, 'all copies at the sink');
    const got = seqs(sink);
    assert.equal(new Set(got).size, 500, 'every packet arrived');
    assert.equal(got.length - 500, dup);
    assert.ok(dup >= 50 && dup <= 150, `${dup} duplicates of 500 at 20%`);
  });

  it('reorders: a held packet arrives after a later one, and none is lost', async () => {
    const sink = await peer();
    const relay = await relayTo(sink.port, { up: { reorderRate: 0.1 } });
    await sendSeq(await peer(), relay, 500, { batch: 10 });
    await waitFor(() => sink.packets.length === 500, 'all packets (held ones too)');
    assert.ok(relay.stats.up.reordered > 0);
    assert.ok(inversions(seqs(sink)) > 0, 'some packet arrived after a later one');
    assert.equal(new Set(seqs(sink)).size, 500);
  });

  it('jitter alone reorders packets', async () => {
    const sink = await peer();
    const relay = await relayTo(sink.port, { up: { delayMs: 5, jitterMs: 20 } });
    await sendSeq(await peer(), relay, 300);
    await waitFor(() => sink.packets.length === 300, 'all packets');
    assert.ok(inversions(seqs(sink)) > 0);
  });

  it('rate limit: the bottleneck queue never exceeds its bound and tail-drops', async () => {
    const sink = await peer();
    const limit = 20;
    const relay = await relayTo(sink.port, { up: { rateBps: 100_000 }, queueLimitPackets: limit });
    await sendSeq(await peer(), relay, 200, { pad: 996 });
    await waitFor(() => relay.stats.up.delivered + relay.stats.up.droppedQueue === 200, 'queue drained');
    const s = relay.stats.up;
    assert.ok(s.maxQueued <= limit, `queue held ${s.maxQueued} > ${limit}`);
    assert.equal(s.maxQueued, limit, 'the queue did fill up');
    assert.ok(s.droppedQueue > 0);
    await waitFor(() => sink.packets.length === s.delivered, 'sink got what was sent');
  });

  it('blackhole drops everything while on', async () => {
    const sink = await peer();
    const relay = await relayTo(sink.port);
    const c = await peer();
    relay.blackhole(true);
    await sendSeq(c, relay, 20);
    await sleep(50); // absence check
    assert.equal(sink.packets.length, 0);
    assert.equal(relay.stats.up.droppedBlackhole, 20);
    relay.blackhole(false);
    await sendSeq(c, relay, 20, { first: 20 });
    await waitFor(() => sink.packets.length === 20, 'traffic after the blackhole');
    assert.deepEqual(seqs(sink)[0], 20);
  });

  it('expires idle associations', async () => {
    const sink = await peer();
    // sendSeq notices the relay's read by polling; at 50 ms a loaded machine could
    // expire the association before the count below was taken.
    const relay = await relayTo(sink.port, { idleTimeoutMs: 1000 });
    await sendSeq(await peer(), relay, 1);
    assert.equal(relay.stats.associations, 1);
    await waitFor(() => relay.stats.associations === 0, 'idle association closed');
  });

  it('cutAll forgets associations: the next packet opens a new one', async () => {
    const sink = await peer();
    const relay = await relayTo(sink.port);
    const c = await peer();
    await sendSeq(c, relay, 1);
    await waitFor(() => sink.packets.length === 1, 'first packet');
    assert.equal(relay.cutAll(), 1);
    assert.equal(relay.stats.associations, 0);
    await sendSeq(c, relay, 1, { first: 1 });
    await waitFor(() => sink.packets.length === 2, 'packet after the cut');
    // A new socket toward the target (its port is random, so may rarely repeat; count instead).
    assert.equal(relay.stats.associationsOpened, 2);
    assert.equal(relay.stats.associations, 1);
    assert.equal(relay.stats.cuts, 1);
  });

  it('rejects bad impairments with ConfigError', () => {
    assert.throws(
      () => new UdpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port: 9 }, up: { lossRate: 1.5 } }),
      { code: 'ERR_CONFIG' },
    );
  });
});
