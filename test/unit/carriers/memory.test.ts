import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { isBenignClose } from '../../../src/core/errors.js';
import { ConnectionResetError } from '../../../src/carriers/errors.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import { MemoryStreamCarrier, memoryStreamPair } from '../../../src/carriers/memory.js';
import { ListenError } from '../../../src/carriers/errors.js';
import { MemoryPacketCarrier } from '../../../src/carriers/memory-packet.js';
import type { PacketConn } from '../../../src/carriers/types.js';
import { closed, immediates, readAll } from '../../helpers/byte-streams.js';
import { streamCarrierCompliance } from './stream-compliance.js';

streamCarrierCompliance('memory', async () => {
  const net = new MemoryNetwork();
  const carrier = new MemoryStreamCarrier(net, { highWaterMark: 32 * 1024 });
  return {
    server: carrier,
    client: carrier,
    listenAt: { host: 'mem', port: 0 },
    deadEndpoint: async () => ({ host: 'mem', port: net.allocatePort() }),
    outOfProcessBufferBytes: 0,
    stalledEndpoint: async () => {
      const at = { host: 'mem', port: net.allocatePort() };
      const lift = net.blackhole(at);
      return { at, close: async () => void lift() };
    },
  };
});

describe('memoryStreamPair', () => {
  it('write() turns false once both bounded buffers are full, and drains when the peer reads', async () => {
    const [a, b] = memoryStreamPair({ highWaterMark: 1024 });
    let accepted = 0;
    let ok = true;
    while (ok) {
      ok = a.write(Buffer.alloc(256));
      accepted += 256;
      assert.ok(accepted <= 2048, `accepted ${accepted} bytes with nobody reading`);
    }
    assert.equal(b.readableLength, 1024); // the reader's buffer is full…
    assert.ok(a.writableLength >= 1024); // …and so is the writer's
    const drained = once(a, 'drain');
    b.resume();
    await drained;
    a.destroy();
  });

  it('a single big write is fed to the reader in bounded pieces', async () => {
    const [a, b] = memoryStreamPair({ highWaterMark: 1024 });
    const big = Buffer.alloc(100_000, 7);
    assert.equal(a.write(big), false);
    assert.ok(b.readableLength <= 1024, `reader buffer holds ${b.readableLength} bytes`);
    const got = readAll(b);
    a.end();
    assert.deepEqual(await got, big);
  });

  it('copies written chunks (a reused buffer does not change what the peer reads)', async () => {
    const [a, b] = memoryStreamPair();
    const buf = Buffer.from('first');
    a.write(buf, () => buf.write('XXXXX'));
    a.end();
    assert.equal((await readAll(b)).toString(), 'first');
  });

  it('destroy with unread data resets the peer with ConnectionResetError (errno ECONNRESET)', async () => {
    const [a, b] = memoryStreamPair();
    b.write('unread');
    const err = once(b, 'error');
    const close = new Promise((resolve) => b.once('close', resolve));
    await once(a, 'readable');
    a.destroy();
    const [e] = (await err) as [ConnectionResetError];
    assert.ok(e instanceof ConnectionResetError);
    assert.equal(e.errno, 'ECONNRESET');
    assert.ok(isBenignClose(e), 'a reset is an ordinary end of a connection');
    await close;
  });

  it('resetAndDestroy resets the peer even with nothing unread', async () => {
    const [a, b] = memoryStreamPair();
    const err = once(b, 'error');
    (a as typeof a & { resetAndDestroy(): void }).resetAndDestroy();
    const [e] = (await err) as [ConnectionResetError];
    assert.equal(e.errno, 'ECONNRESET');
  });

  it('destroy with nothing unread is a FIN: the peer gets end, then its writes fail', async () => {
    const [a, b] = memoryStreamPair();
    a.destroy();
    assert.equal((await readAll(b)).length, 0);
    const err = once(b, 'error');
    b.write('too late');
    const [e] = (await err) as [ConnectionResetError];
    assert.equal(e.errno, 'ECONNRESET');
  });

  it('both sides ending closes both, with no error', async () => {
    const [a, b] = memoryStreamPair();
    a.end('x');
    b.end('y');
    const [ra, rb] = await Promise.all([readAll(a), readAll(b)]);
    assert.equal(ra.toString() + rb.toString(), 'yx');
    await Promise.all([closed(a), closed(b)]);
    assert.equal(a.errored, null);
    assert.equal(b.errored, null);
  });
});

describe('MemoryNetwork', () => {
  it('blackhole: packets vanish while it lasts, and flow again once lifted', async (t) => {
    const net = new MemoryNetwork();
    const carrier = new MemoryPacketCarrier(net);
    const got: string[] = [];
    const served: PacketConn[] = [];
    const l = await carrier.listen({ host: 'h', port: 0 }, (c) => {
      served.push(c);
      c.onPackets((b) => got.push(...b.map(String)));
    });
    t.after(() => {
      for (const c of served) c.close();
      return l.close();
    });
    const conn = await carrier.dial(l.address);
    t.after(() => conn.close());
    const lift = net.blackhole(l.address);
    conn.send([Buffer.from('lost')]);
    lift();
    conn.send([Buffer.from('kept')]);
    await immediates();
    assert.deepEqual(got, ['kept']);
  });

  it('a second listener on the same endpoint fails with EADDRINUSE; networks are isolated', async () => {
    const netA = new MemoryNetwork();
    const netB = new MemoryNetwork();
    const a = new MemoryStreamCarrier(netA);
    const l = await a.listen({ host: 'h', port: 7 }, () => undefined);
    await assert.rejects(a.listen({ host: 'h', port: 7 }, () => undefined), (e: unknown) => e instanceof ListenError && e.errno === 'EADDRINUSE');
    await assert.rejects(new MemoryStreamCarrier(netB).dial({ host: 'h', port: 7 }), /ECONNREFUSED/);
    await l.close();
  });
});
