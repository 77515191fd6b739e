import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LimitError } from '../../../src/core/errors.js';
import { MemoryPacketCarrier, memoryPacketPair } from '../../../src/carriers/memory-packet.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import type { PacketConn } from '../../../src/carriers/types.js';
import type { PacketStats } from '../../../src/carriers/packet-base.js';
import { immediates } from '../../helpers/byte-streams.js';
import { packetCarrierCompliance } from './packet-compliance.js';

packetCarrierCompliance('memory', async () => {
  const net = new MemoryNetwork();
  const carrier = new MemoryPacketCarrier(net, { maxPacketSize: 1200 });
  return { server: carrier, client: carrier, listenAt: { host: 'mem', port: 0 }, maxPacketSize: 1200 };
});

/** Sends `n` numbered packets from a to b, one per batch, and returns the numbers b got. */
async function numbered(a: PacketConn, b: PacketConn, n: number): Promise<number[]> {
  const got: number[] = [];
  b.onPackets((batch) => got.push(...batch.map((p) => p.readUInt32BE(0))));
  for (let i = 0; i < n; i++) {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(i);
    a.send([p]);
  }
  await immediates();
  return got;
}

describe('memoryPacketPair', () => {
  it('delivers a batch as one batch, copying the packets', async () => {
    const [a, b] = memoryPacketPair();
    const batches: Buffer[][] = [];
    b.onPackets((batch) => batches.push(batch));
    const p = Buffer.from('abc');
    a.send([p, Buffer.from('def')]);
    p.write('XYZ');
    await immediates();
    assert.deepEqual(batches.map((bt) => bt.map(String)), [['abc', 'def']]);
  });

  it('loss is seeded: same seed, same losses; rate roughly honoured', async () => {
    const run = async (seed: number): Promise<number[]> => {
      const [a, b] = memoryPacketPair({ lossRate: 0.3, seed });
      return numbered(a, b, 1000);
    };
    const first = await run(42);
    assert.deepEqual(await run(42), first);
    assert.notDeepEqual(await run(43), first);
    assert.ok(first.length > 600 && first.length < 800, `kept ${first.length} of 1000 at 30% loss`);
    // order kept for what is not lost
    assert.deepEqual([...first].sort((x, y) => x - y), first);
  });

  it('bounded receive queue: past maxQueuedPackets, send returns false and drops are counted', async () => {
    const [a, b] = memoryPacketPair({ maxQueuedPackets: 8 });
    const got: Buffer[] = [];
    b.onPackets((batch) => got.push(...batch));
    const batch = Array.from({ length: 10 }, (_, i) => Buffer.from([i]));
    assert.equal(a.send(batch), false);
    await immediates();
    assert.equal(got.length, 8);
    assert.equal((b as PacketConn & { stats: PacketStats }).stats.droppedRecv, 2);
  });

  it('maxPacketSize option is honoured', () => {
    const [a] = memoryPacketPair({ maxPacketSize: 100 });
    assert.equal(a.maxPacketSize, 100);
    assert.throws(() => a.send([Buffer.alloc(101)]), LimitError);
  });

  it('packets to a closed peer vanish silently (as with UDP)', async () => {
    const [a, b] = memoryPacketPair();
    b.close();
    assert.equal(a.send([Buffer.from('x')]), true);
  });
});

describe('MemoryPacketCarrier', () => {
  it('a closed association is re-created by the next packet from that peer', async (t) => {
    const carrier = new MemoryPacketCarrier(new MemoryNetwork());
    const conns: PacketConn[] = [];
    const l = await carrier.listen({ host: 'mem', port: 0 }, (c) => {
      conns.push(c);
      c.onPackets(() => c.close());
    });
    t.after(() => l.close());
    const client = await carrier.dial(l.address);
    t.after(() => client.close());
    client.send([Buffer.from('1')]);
    await immediates();
    client.send([Buffer.from('2')]);
    await immediates();
    assert.equal(conns.length, 2);
    assert.equal(conns[0]?.remote, conns[1]?.remote);
  });
});
