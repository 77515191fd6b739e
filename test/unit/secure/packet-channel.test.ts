/**
 * The packet secure channel runs the record-channel compliance suite over
 * a memory packet pair and over real loopback UDP (the one case that needs a
 * stream — closing on garbage — is skipped by the suite with its reason, and
 * its datagram counterpart runs instead); then what is particular to it:
 * rekeying, the counter limit, padding, sizes and early records.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryPacketCarrier } from '../../../src/carriers/memory-packet.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import { UdpPacketCarrier } from '../../../src/carriers/udp.js';
import { realClock } from '../../../src/core/clock.js';
import { LimitError } from '../../../src/core/errors.js';
import type { PacketRecordChannel } from '../../../src/secure/packet-channel.js';
import { packetClientHandshake, rebindClient } from '../../../src/secure/packet-handshake.js';
import { PacketResponder } from '../../../src/secure/packet-responder.js';
import { RECORD_DATA } from '../../../src/secure/record.js';
import { waitUntil } from '../../helpers/eventually.js';
import { admitAll, clientKeys, handPair, packetCarrierPair, pump, serverKeys, windows } from './packet-pairs.js';
import { recordChannelCompliance } from './record-channel-compliance.js';

recordChannelCompliance('packet channel over memory packets', {
  pair: (t) => packetCarrierPair(t, new MemoryPacketCarrier(new MemoryNetwork())),
  reliable: false,
  protection: 'aead',
});

recordChannelCompliance('packet channel over loopback udp', {
  // Both ends live in this process: a roomy receive buffer keeps a burst of 64 datagrams from overflowing it.
  pair: (t) => packetCarrierPair(t, new UdpPacketCarrier({ recvBufferSize: 4 << 20 })),
  reliable: false,
  protection: 'aead',
});

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const rec = (n: number, fill = 1): Buffer => {
  const b = Buffer.alloc(n, fill);
  b[0] = RECORD_DATA;
  return b;
};

describe('packet channel', () => {
  it('rekeys as it goes: with epochs of 8 datagrams on both ends, 100 records each way all arrive', async () => {
    const p = await handPair({ epochPackets: 8 });
    const got: number[] = [];
    const back: number[] = [];
    p.server.onRecord((pt) => got.push(pt[1] as number));
    p.client.onRecord((pt) => back.push(pt[1] as number));
    p.server.start();
    p.client.start();
    for (let i = 0; i < 100; i++) {
      p.client.write(rec(40, i), 40);
      p.server.write(rec(40, i), 40);
      await turn();
      pump(p.cp, p.sp);
      pump(p.sp, p.cp);
    }
    assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual(back, got);
  });

  it('the key really changes: a receiver that does not rekey stops opening after the first epoch', async () => {
    const p = await handPair({ epochPackets: 8 }, {});
    let got = 0;
    p.server.onRecord(() => got++);
    p.server.start();
    for (let i = 0; i < 20; i++) p.client.write(rec(40), 40);
    await turn();
    pump(p.cp, p.sp);
    assert.equal(got, 8);
    assert.equal(p.server.stats.forged, 12);
  });

  it('aborts with LimitError once the counter space is spent, never sealing past it', async () => {
    const p = await handPair({ counterLimit: 4 });
    let err: Error | undefined;
    p.client.onClose((e) => (err = e));
    p.client.start();
    for (let i = 0; i < 10 && p.client.writable; i++) p.client.write(rec(10), 10);
    assert.ok(err instanceof LimitError, String(err));
    await turn();
    assert.ok(p.cp.take().length <= 5, 'counters 0..4 at most');
  });

  it('padding: equal records leave in datagrams of varied sizes, with no header byte constant', async () => {
    const p = await handPair({ maxPadding: 64 });
    for (let i = 0; i < 64; i++) p.client.write(rec(100), 100);
    await turn();
    const ds = p.cp.take();
    assert.equal(ds.length, 64);
    assert.ok(new Set(ds.map((d) => d.length)).size > 10, 'sizes vary');
    for (let at = 0; at < 12; at++) assert.ok(new Set(ds.map((d) => d[at])).size > 8, `header byte ${at} varies`);
    assert.ok(ds.every((d) => d.length <= 1200));
  });

  it('everything fits the datagram size: handshake messages whatever their padding, and records of maxRecord', async () => {
    const p = await handPair({ handshakePadding: 5000, maxPadding: 5000 });
    assert.ok(p.initiation.length <= 1200, `initiation of ${p.initiation.length}`);
    assert.ok(p.response.length <= p.initiation.length);
    assert.equal(p.client.maxRecord, 1200 - 29);
    p.client.write(rec(p.client.maxRecord), p.client.maxRecord);
    await turn();
    assert.equal((p.cp.take()[0] as Buffer).length, 1200);
    const small = await handPair({ maxDatagramSize: 1100 });
    assert.equal(small.client.maxRecord, 1100 - 29);
  });

  it('holds records that arrive before start() up to a bound; the rest are dropped and counted', async () => {
    const p = await handPair({ maxEarlyRecords: 3 });
    for (let i = 0; i < 5; i++) p.client.write(rec(10, i), 10);
    await turn();
    pump(p.cp, p.sp);
    const got: number[] = [];
    p.server.onRecord((pt) => got.push(pt[1] as number));
    p.server.start();
    assert.deepEqual(got, [0, 1, 2]);
    assert.equal(p.server.stats.ignored, 2);
  });
});

describe('packet channel over loopback udp: roaming', () => {
  it('the client moves to a new socket (a new source port) mid-session; the server follows and answers there', async (t) => {
    const carrier = new UdpPacketCarrier();
    const responder = new PacketResponder({ clock: realClock, staticKeyPair: serverKeys, admit: admitAll });
    const sessions: PacketRecordChannel[] = [];
    responder.onSession((s) => sessions.push(s.channel));
    const listener = await carrier.listen({ host: '127.0.0.1', port: 0 }, (conn) => responder.accept(conn));
    t.after(async () => {
      responder.close();
      await listener.close();
    });
    const first = await carrier.dial(listener.address);
    const { channel: client } = await packetClientHandshake(first, { clock: realClock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows });
    t.after(() => client.abort());
    await waitUntil(() => sessions.length === 1, 'the session');
    const server = sessions[0] as PacketRecordChannel;
    const got: number[] = [];
    const back: number[] = [];
    server.onRecord((pt) => got.push(pt[1] as number));
    client.onRecord((pt) => back.push(pt[1] as number));
    server.start();
    client.start();
    client.write(rec(20, 1), 20);
    await waitUntil(() => got.length === 1, 'a record from the first socket');
    const oldRemote = server.info.remote;
    const second = await carrier.dial(listener.address);
    rebindClient(client, second);
    client.write(rec(20, 2), 20);
    await waitUntil(() => got.length === 2, 'a record from the second socket');
    assert.notEqual(server.info.remote, oldRemote);
    assert.equal(server.info.remote, second.local);
    assert.equal(responder.stats.roamed, 1);
    server.write(rec(20, 3), 20);
    await waitUntil(() => back.length === 1, 'the answer at the new socket');
    assert.deepEqual([got, back], [[1, 2], [3]]);
  });
});
