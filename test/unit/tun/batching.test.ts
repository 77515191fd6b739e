/**
 * The VPN relies on the session packing every datagram queued in one tick
 * into as few records as fit (one AEAD call per TUN read batch), and on the
 * datagram queue being bounded. This checks both on a real session pair.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { STREAM_RECORD_OVERHEAD, VPN_FLOW } from '../../../src/tun/vpn-wire.js';
import type { Session } from '../../../src/session/session.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';
import { udp } from '../../helpers/ip-packets.js';
import { waitUntil } from '../../helpers/eventually.js';
import { sessionsQuiet } from '../../helpers/session-quiet.js';

const RECORD = STREAM_RECORD_OVERHEAD - 7; // header 2 + tag 16 + type 1: what each extra record costs

describe('datagram lane as the VPN uses it', () => {
  let pair: Pair;
  let server: Session;
  before(async () => {
    pair = await makePair({ session: { pingIntervalMs: 60_000 } });
    server = await pair.serverSession;
    await sessionsQuiet(pair.clientSession, server); // let the handshake's pings and acks settle
  });
  after(() => pair.close());

  it('a batch of 64 packets sent in one tick leaves in one record and arrives whole, in order', async () => {
    const got: Buffer[] = [];
    server.lanes.datagrams(VPN_FLOW, VPN_FLOW, (_flow, p) => got.push(Buffer.from(p)));
    const packets = Array.from({ length: 64 }, (_, i) => udp('10.8.0.2', 1000 + i, '10.20.0.1', 53, Buffer.alloc(100, i)));
    const sentBefore = pair.clientSession.stats.paths[0]?.bytesSent ?? 0;
    for (const p of packets) assert.equal(pair.clientSession.sendDatagram(VPN_FLOW, p), true);
    const payload = packets.reduce((n, p) => n + 7 + p.length, 0);
    await waitUntil(() => got.length >= 64, '64 datagrams');
    assert.deepEqual(got, packets);
    const wire = (pair.clientSession.stats.paths[0]?.bytesSent ?? 0) - sentBefore;
    // One record: payload + one record overhead (+ maybe a few control bytes riding along).
    assert.ok(wire >= payload + RECORD && wire < payload + 2 * RECORD + 64, `${wire} bytes on the wire for ${payload} bytes of frames`);
  });

  it('the queue is bounded: past maxDatagramQueue datagrams are refused, never queued', async () => {
    const small = await makePair({ session: { maxDatagramQueue: 16 * 1024 } });
    try {
      const p = Buffer.alloc(1400);
      let accepted = 0;
      let refused = 0;
      for (let i = 0; i < 100; i++) if (small.clientSession.sendDatagram(VPN_FLOW, p)) accepted++; else refused++;
      assert.ok(accepted <= 16 * 1024 / 1400 + 1, `accepted ${accepted}`);
      assert.ok(refused > 0);
      assert.equal(small.clientSession.stats.datagramsDropped, refused);
    } finally {
      await small.close();
    }
  });
});
