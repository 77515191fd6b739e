/**
 * The reliable record channel over packets runs the record-channel
 * compliance suite as a reliable channel (over memory packets and loopback
 * UDP), and then carries many records through a lossy memory network.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { ArqRecordChannel } from '../../../src/arq/arq-channel.js';
import { Bbr } from '../../../src/arq/bbr.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import { MemoryPacketCarrier, type MemoryPacketInit } from '../../../src/carriers/memory-packet.js';
import type { PacketCarrier } from '../../../src/carriers/types.js';
import { UdpPacketCarrier } from '../../../src/carriers/udp.js';
import { realClock } from '../../../src/core/clock.js';
import { RECORD_DATA } from '../../../src/secure/record.js';
import { waitUntil } from '../../helpers/eventually.js';
import { packetCarrierPair } from '../secure/packet-pairs.js';
import { recordChannelCompliance, type RecordChannelPair } from '../secure/record-channel-compliance.js';

async function arqPair(t: TestContext, carrier: PacketCarrier): Promise<RecordChannelPair & { a: ArqRecordChannel; b: ArqRecordChannel }> {
  // The clock's timers are unref'd (a process lives by its sockets); a memory network has none, so hold the loop open.
  const keep = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(keep));
  const p = await packetCarrierPair(t, carrier);
  const a = new ArqRecordChannel(p.a, { clock: realClock, cc: new Bbr() });
  const b = new ArqRecordChannel(p.b, { clock: realClock, cc: new Bbr() });
  t.after(() => {
    a.abort();
    b.abort();
  });
  return { ...p, a, b };
}

// Reliable, but over datagrams: garbage on the wire is dropped, as by the packet channel under it, not a reason to close.
recordChannelCompliance('arq over memory packets', { pair: (t) => arqPair(t, new MemoryPacketCarrier(new MemoryNetwork())), reliable: true, garbageCloses: false, protection: 'aead' });

recordChannelCompliance('arq over loopback udp', {
  pair: (t) => arqPair(t, new UdpPacketCarrier({ recvBufferSize: 4 << 20 })),
  reliable: true,
  garbageCloses: false,
  protection: 'aead',
});

describe('arq channel', () => {
  const lossy = (init: MemoryPacketInit): MemoryPacketCarrier => new MemoryPacketCarrier(new MemoryNetwork(), init);

  it('carries 4 MiB of records intact and in order through 5 % loss each way', async (t) => {
    const p = await arqPair(t, lossy({ lossRate: 0.05, seed: 42 }));
    const got: Buffer[] = [];
    p.b.onRecord((r) => got.push(Buffer.from(r)));
    p.a.start();
    p.b.start();
    const sent: Buffer[] = [];
    let bytes = 0;
    while (bytes < 4 << 20) {
      const r = randomBytes(1 + Math.floor(Math.random() * 30_000));
      r[0] = RECORD_DATA;
      sent.push(r);
      bytes += r.length;
      if (!p.a.write(r, r.length)) await new Promise<void>((res) => p.a.onDrain(res));
    }
    await waitUntil(() => got.length === sent.length, 'every record', 60_000);
    for (let i = 0; i < sent.length; i++) assert.ok(got[i]!.equals(sent[i]!), `record ${i}`);
    const s = p.a.transportStats();
    assert.ok(s.packetsLost > 0 && s.retransmittedBytes > 0, 'losses happened and were repaired');
    assert.ok(s.rttMs > 0 && s.cwndBytes > 0 && s.mtu > 1000);
    assert.ok(s.lossRate > 0.01 && s.lossRate < 0.2, `loss rate ${s.lossRate} at 5 % loss each way`);
    assert.ok(s.wirePerUseful > 1 && s.wirePerUseful < 1.3, `wire/useful ${s.wirePerUseful}`);
  });

  it('close() waits until the peer has everything, then ends both ends cleanly', async (t) => {
    const p = await arqPair(t, lossy({ lossRate: 0.05, seed: 7 }));
    const got: Buffer[] = [];
    p.b.onRecord((r) => got.push(Buffer.from(r)));
    const endA = new Promise<Error | undefined>((res) => p.a.onClose(res));
    const endB = new Promise<Error | undefined>((res) => p.b.onClose(res));
    p.a.start();
    p.b.start();
    const r = Buffer.alloc(20_000, 3);
    r[0] = RECORD_DATA;
    for (let i = 0; i < 20; i++) p.a.write(r, r.length);
    p.a.close();
    assert.equal(p.a.write(r, r.length), false, 'no writes after close');
    assert.equal(await endA, undefined);
    assert.equal(got.length, 20, 'every record written before close() arrived');
    assert.equal(await endB, undefined, 'the peer saw a clean end');
  });
});
