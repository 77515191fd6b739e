import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { enableSlabReads, PARKED_READ, SLAB_READ_SIZE, sweepSlabReaders } from '../../../src/core/slab-reads.js';

async function socketPair(): Promise<{ accepted: net.Socket; dialed: net.Socket; close: () => void }> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const dialed = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(srv, 'connection')) as [net.Socket];
  await once(dialed, 'connect');
  return { accepted, dialed, close: () => srv.close() };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('slab reads', () => {
  for (const side of ['accepted', 'dialed'] as const) {
    it(`delivers every byte in order as 'data', each chunk at most one record, on a ${side} socket`, async () => {
      const p = await socketPair();
      const reader = side === 'accepted' ? p.accepted : p.dialed;
      const writer = side === 'accepted' ? p.dialed : p.accepted;
      assert.ok(enableSlabReads(reader));
      const data = randomBytes(8 << 20);
      const got: Buffer[] = [];
      let biggest = 0;
      let paused = 0;
      reader.on('data', (c: Buffer) => {
        got.push(c);
        biggest = Math.max(biggest, c.length);
        // A slow consumer: pause now and then, as a relay does under backpressure.
        if (got.length % 16 === 0) {
          paused++;
          reader.pause();
          setTimeout(() => reader.resume(), 2);
        }
      });
      writer.end(data);
      await once(reader, 'end');
      const all = Buffer.concat(got);
      assert.equal(all.length, data.length);
      assert.equal(sha(all), sha(data));
      assert.ok(biggest <= SLAB_READ_SIZE, `chunk of ${biggest} bytes`);
      assert.ok(paused > 0);
      reader.destroy();
      writer.destroy();
      p.close();
    });
  }

  it('keeps earlier chunks intact while later reads arrive (slices are never reused)', async () => {
    const p = await socketPair();
    assert.ok(enableSlabReads(p.accepted));
    const data = randomBytes(2 << 20);
    const got: Buffer[] = [];
    p.accepted.on('data', (c: Buffer) => got.push(c)); // kept, not copied
    p.dialed.end(data);
    await once(p.accepted, 'end');
    assert.equal(sha(Buffer.concat(got)), sha(data));
    p.accepted.destroy();
    p.close();
  });

  it('with recycle, reuses a slab once all its chunks are released, and the bytes stay intact', async () => {
    const p = await socketPair();
    const reader = enableSlabReads(p.accepted, { recycle: true });
    assert.ok(reader);
    const data = randomBytes(8 << 20);
    const copies: Buffer[] = [];
    const arrays = new Set<ArrayBufferLike>();
    p.accepted.on('data', (c: Buffer) => {
      arrays.add(c.buffer);
      copies.push(Buffer.from(c)); // what a session does: copy, then release
      reader.release();
    });
    p.dialed.end(data);
    await once(p.accepted, 'end');
    assert.equal(sha(Buffer.concat(copies)), sha(data));
    // 8 MiB is 32 slabs of 256 KiB without reuse; with it, a few cycle.
    assert.ok(arrays.size <= 4, `${arrays.size} slabs for 8 MiB`);
    p.accepted.destroy();
    p.close();
  });

  it('with recycle, never reuses a slab that still has an unreleased chunk', async () => {
    const p = await socketPair();
    const reader = enableSlabReads(p.accepted, { recycle: true });
    assert.ok(reader);
    const data = randomBytes(4 << 20);
    const kept: Buffer[] = [];
    p.accepted.on('data', (c: Buffer) => {
      kept.push(c); // referenced, not copied
      // Releases are in order: the first 20 chunks come back, the rest stay held.
      if (kept.length <= 20) reader.release();
    });
    p.dialed.end(data);
    await once(p.accepted, 'end');
    assert.ok(kept.length > 40, `${kept.length} chunks`);
    // Released chunks may have been overwritten by later reads; held ones never.
    let off = 0;
    for (let i = 0; i < kept.length; i++) {
      const c = kept[i] as Buffer;
      if (i >= 20) assert.ok(c.equals(data.subarray(off, off + c.length)), `held chunk ${i} changed`);
      off += c.length;
    }
    p.accepted.destroy();
    p.close();
  });

  for (const recycle of [false, true]) {
    it(`an idle socket gives its slabs up, and takes new ones when bulk resumes (recycle: ${recycle})`, async () => {
      const p = await socketPair();
      const reader = enableSlabReads(p.accepted, { recycle });
      assert.ok(reader);
      const got: Buffer[] = [];
      p.accepted.on('data', (c: Buffer) => {
        got.push(recycle ? Buffer.from(c) : c);
        reader.release();
      });
      const sent: Buffer[] = [];
      const send = async (b: Buffer): Promise<void> => {
        sent.push(b);
        const want = sent.reduce((n, x) => n + x.length, 0);
        p.dialed.write(b);
        while (got.reduce((n, x) => n + x.length, 0) < want) await new Promise((r) => setTimeout(r, 2));
      };
      await send(randomBytes(1 << 20));
      assert.ok(reader.heldBytes() >= SLAB_READ_SIZE, `bulk: ${reader.heldBytes()} bytes held`);
      sweepSlabReaders(); // read something since the last sweep: stays
      assert.ok(reader.heldBytes() >= SLAB_READ_SIZE);
      sweepSlabReaders();
      sweepSlabReaders(); // two sweeps without a read: parked
      assert.equal(reader.heldBytes(), PARKED_READ);
      for (let i = 0; i < 5; i++) await send(randomBytes(100 + i)); // short reads, copied out of the parked buffer
      assert.equal(reader.heldBytes(), PARKED_READ);
      await send(randomBytes(4 << 20)); // fills the parked buffer: slabs again
      assert.ok(reader.heldBytes() > PARKED_READ, `bulk again: ${reader.heldBytes()} bytes held`);
      p.dialed.end();
      await once(p.accepted, 'end');
      assert.equal(sha(Buffer.concat(got)), sha(Buffer.concat(sent)));
      p.accepted.destroy();
      p.close();
    });
  }

  it('refuses a socket that is not connected, and changes nothing', () => {
    const s = new net.Socket();
    assert.equal(enableSlabReads(s), null);
    s.destroy();
  });
});
