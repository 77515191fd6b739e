/**
 * Checksum and segmentation offload on the VPN path (src/tun/vnet.ts,
 * src/tun/gso.ts) and its use by the server router and the client path:
 * the virtio_net_hdr codec, the checks on a peer's super-packets, the wire
 * header, userspace segmentation checked against an independent checksum,
 * and who gets a super-packet whole and who gets it cut.
 */
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Logger } from '../../../src/core/logger.js';
import { VpnPacketPath } from '../../../src/client/vpn-path.js';
import { VpnRouter, type RoutedClient } from '../../../src/server/vpn-router.js';
import { completeChecksum, segmentTcp, sendPacket, toPlainPackets } from '../../../src/tun/gso.js';
import { clampMss, inspectPacket, newPacketInfo } from '../../../src/tun/packet.js';
import { AddressPool } from '../../../src/tun/pool.js';
import {
  checkOffload, GSO_WIRE_HEADER, gsoDatagram, gsoDatagramInPlace, MAX_SUPER_PACKET, metaFromVnetHdr, metaOfGsoDatagram, OFF_CSUM, OFF_GSO, VNET_HDR_LEN, writeVnetHdr,
} from '../../../src/tun/vnet.js';
import { VPN_FLOW, VPN_GSO_FLOW, type VpnConfig } from '../../../src/tun/vpn-wire.js';
import { ACK, checksum, icmpEcho, mssOption, SYN, tcp, tcpChecksumOk, udp } from '../../helpers/ip-packets.js';
import { makePartial, tcpSuper } from '../../helpers/offload-packets.js';

const info = newPacketInfo();
const LE = endianness() === 'LE';
const u16 = (b: Buffer, off: number): number => (LE ? b.readUInt16LE(off) : b.readUInt16BE(off));
/** `p`, once inspectPacket accepted it (`info` then describes it). */
const inspected = (p: Buffer): Buffer => {
  assert.equal(inspectPacket(p, info), undefined);
  return p;
};
/** `info` describing `p`. */
const infoOf = (p: Buffer): typeof info => {
  inspected(p);
  return info;
};
const data = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
/** A virtio_net_hdr: flags, gso_type, gso_size (the rest is not read). */
const hdr = (flags: number, type: number, gsoSize: number): Buffer => {
  const h = Buffer.alloc(VNET_HDR_LEN);
  h[0] = flags;
  h[1] = type;
  if (LE) h.writeUInt16LE(gsoSize, 4);
  else h.writeUInt16BE(gsoSize, 4);
  return h;
};

describe('vnet header: what the kernel reads out, what we write back', () => {
  it('reads: plain, partial checksum, TCPv4/v6 super-packets; refuses offloads never asked for', () => {
    assert.equal(metaFromVnetHdr(hdr(0, 0, 0), 0), 0);
    assert.equal(metaFromVnetHdr(hdr(2, 0, 0), 0), 0, 'DATA_VALID alone: a plain packet');
    assert.equal(metaFromVnetHdr(hdr(1, 0, 0), 0), OFF_CSUM);
    assert.equal(metaFromVnetHdr(hdr(1, 1, 1348), 0), OFF_GSO | OFF_CSUM | 1348);
    assert.equal(metaFromVnetHdr(hdr(1, 4, 1328), 0), OFF_GSO | OFF_CSUM | 1328);
    for (const [flags, type, size] of [[0, 1, 1348], [1, 3, 1000], [1, 5, 1000], [1, 0x81, 1348], [1, 1, 0]] as const) {
      assert.equal(metaFromVnetHdr(hdr(flags, type, size), 0), -1, `flags ${flags} type ${type} size ${size}`);
    }
  });

  it('writes: NEEDS_CSUM with csum_start/offset, GSO type and size, hdr_len; zeros for a plain packet', () => {
    const out = Buffer.alloc(VNET_HDR_LEN * 2, 0xee);
    const p4 = inspected(tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(3000)));
    assert.equal(writeVnetHdr(out, VNET_HDR_LEN, p4, OFF_GSO | OFF_CSUM | 1360, info), true);
    const h = out.subarray(VNET_HDR_LEN);
    assert.deepEqual([h[0], h[1], u16(h, 2), u16(h, 4), u16(h, 6), u16(h, 8)], [1, 1, 40, 1360, 20, 16]);
    assert.equal(metaFromVnetHdr(out, VNET_HDR_LEN), OFF_GSO | OFF_CSUM | 1360, 'round trip');
    assert.deepEqual(out.subarray(0, VNET_HDR_LEN), Buffer.alloc(VNET_HDR_LEN, 0xee), 'nothing outside its 10 bytes');

    const p6 = inspected(tcpSuper('fd00:8::2', 1, 'fd00:20::1', 2, data(3000)));
    assert.equal(writeVnetHdr(h, 0, p6, OFF_GSO | OFF_CSUM | 1340, info), true);
    assert.deepEqual([h[0], h[1], u16(h, 2), u16(h, 4), u16(h, 6), u16(h, 8)], [1, 4, 60, 1340, 40, 16]);

    const u = inspected(makePartial(udp('10.8.0.2', 1, '10.20.0.1', 53, Buffer.from('q'))));
    assert.equal(writeVnetHdr(h, 0, u, OFF_CSUM, info), true);
    assert.deepEqual([h[0], h[1], u16(h, 4), u16(h, 6), u16(h, 8)], [1, 0, 0, 20, 6]);

    assert.equal(writeVnetHdr(h, 0, u, 0, info), true);
    assert.deepEqual(h, Buffer.alloc(VNET_HDR_LEN));
    assert.equal(writeVnetHdr(h, 0, inspected(icmpEcho('10.8.0.2', '10.20.0.1', 1, 1, Buffer.from('x'))), OFF_CSUM, info), false, 'no checksum to offload');
    assert.equal(writeVnetHdr(h, 0, u, OFF_GSO | OFF_CSUM | 100, info), false, 'GSO is TCP only');
  });
});

describe('checkOffload: what a peer may send', () => {
  const MTU = 1400;
  const check = (p: Buffer, meta: number): string | undefined => checkOffload(p, infoOf(p), meta, MTU);
  const sup = (n: number): Buffer => tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(n));

  it('plain and partial packets within the MTU pass; a super-packet with segments within the MTU passes', () => {
    assert.equal(check(udp('10.8.0.2', 1, '10.20.0.1', 53, data(100)), 0), undefined);
    assert.equal(check(makePartial(udp('10.8.0.2', 1, '10.20.0.1', 53, data(100))), OFF_CSUM), undefined);
    assert.equal(check(makePartial(tcp('fd00:8::2', 1, 'fd00:20::1', 2, ACK)), OFF_CSUM), undefined);
    assert.equal(check(sup(20_000), OFF_GSO | OFF_CSUM | 1360), undefined, '40 header bytes + 1360 = MTU');
    assert.equal(check(sup(6400), OFF_GSO | OFF_CSUM | 100), undefined, '64 segments');
  });

  it('malformed: unknown bits, a size without GSO, offload on ICMP or a fragment, GSO on UDP, GSO without a partial checksum or size', () => {
    const u = makePartial(udp('10.8.0.2', 1, '10.20.0.1', 53, data(100)));
    assert.equal(check(u, OFF_CSUM | 0x40000), 'malformed');
    assert.equal(check(u, OFF_CSUM | 100), 'malformed');
    assert.equal(check(icmpEcho('10.8.0.2', '10.20.0.1', 1, 1, data(10)), OFF_CSUM), 'malformed');
    const frag = Buffer.from(u);
    frag.writeUInt16BE(0x2000, 6); // MF: the first of several fragments
    frag.writeUInt16BE(0, 10);
    frag.writeUInt16BE(checksum(frag.subarray(0, 20)), 10);
    assert.equal(check(frag, OFF_CSUM), 'malformed');
    assert.equal(check(u, OFF_GSO | OFF_CSUM | 100), 'malformed');
    assert.equal(check(sup(5000), OFF_GSO | 1360), 'malformed');
    assert.equal(check(sup(5000), OFF_GSO | OFF_CSUM), 'malformed');
  });

  it('oversize: a plain packet over the MTU, a segment over the MTU, over 64 segments, over 64 KiB', () => {
    assert.equal(check(udp('10.8.0.2', 1, '10.20.0.1', 53, data(1400)), 0), 'oversize');
    assert.equal(check(makePartial(udp('10.8.0.2', 1, '10.20.0.1', 53, data(1400))), OFF_CSUM), 'oversize');
    assert.equal(check(sup(20_000), OFF_GSO | OFF_CSUM | 1361), 'oversize');
    assert.equal(check(sup(6401), OFF_GSO | OFF_CSUM | 100), 'oversize');
    const big = sup(MAX_SUPER_PACKET + 1 - 40);
    assert.equal(big.length, MAX_SUPER_PACKET + 1);
    assert.equal(check(big, OFF_GSO | OFF_CSUM | 1360), 'oversize');
  });
});

describe('wire header of VPN_GSO_FLOW', () => {
  it('| flags | gso_size u16 | packet |, built in place in the room in front of the packet or as a copy', () => {
    const meta = OFF_GSO | OFF_CSUM | 1360;
    const room = Buffer.alloc(VNET_HDR_LEN + 50, 0xaa);
    const p = room.subarray(VNET_HDR_LEN);
    const d = gsoDatagramInPlace(p, meta);
    assert.equal(d.buffer, room.buffer, 'no copy');
    assert.equal(d.length, p.length + GSO_WIRE_HEADER);
    assert.deepEqual(d.subarray(0, 3), Buffer.from([0x03, 1360 >> 8, 1360 & 0xff]));
    assert.equal(metaOfGsoDatagram(d), meta);
    assert.deepEqual(gsoDatagram(p, meta), d);
    assert.equal(metaOfGsoDatagram(gsoDatagram(p, OFF_CSUM)), OFF_CSUM);
    assert.equal(metaOfGsoDatagram(Buffer.from([1, 2])), -1);
    assert.throws(() => gsoDatagramInPlace(Buffer.alloc(10), meta), RangeError);
  });
});

describe('userspace offload (gso.ts)', () => {
  it('completeChecksum turns a partial TCP/UDP checksum (IPv4 and IPv6) into the full one', () => {
    for (const full of [udp('10.8.0.2', 5, '10.20.0.1', 53, data(333)), udp('fd00:8::2', 5, 'fd00:20::1', 53, data(40)), tcp('10.8.0.2', 5, '10.20.0.1', 80, ACK, Buffer.alloc(0), data(1001))]) {
      const p = makePartial(Buffer.from(full));
      assert.notDeepEqual(p, full);
      assert.equal(completeChecksum(p, infoOf(p)), true);
      assert.deepEqual(p, full);
    }
    const icmp = icmpEcho('10.8.0.2', '10.20.0.1', 1, 1, data(8));
    assert.equal(completeChecksum(icmp, infoOf(icmp)), false);
  });

  for (const [fam, src, dst, hdrLen] of [['IPv4', '10.8.0.2', '10.20.0.1', 40], ['IPv6', 'fd00:8::2', 'fd00:20::1', 60]] as const) {
    it(`segmentTcp (${fam}): lengths, sequence numbers, flags, IDs and checksums of each segment; the payload survives`, () => {
      const payload = data(5000);
      const p = tcpSuper(src, 4000, dst, 80, payload, 0x01 | 0x80); // + FIN, CWR
      const out: Buffer[] = [];
      assert.equal(segmentTcp(p, infoOf(p), 1360, out), true);
      assert.deepEqual(out.map((s) => s.length - hdrLen), [1360, 1360, 1360, 920]);
      out.forEach((s, i) => {
        assert.equal(inspectPacket(s, info), undefined, `segment ${i} well formed`);
        assert.equal(tcpChecksumOk(s, src, dst), true, `segment ${i} TCP checksum`);
        const t = hdrLen - 20;
        assert.equal(s.readUInt32BE(t + 4), 0x01020304 + i * 1360);
        const flags = s[t + 13] as number;
        assert.equal((flags & 0x80) !== 0, i === 0, `CWR on the first segment only (${i})`);
        assert.equal((flags & 0x09) !== 0, i === 3, `FIN/PSH on the last segment only (${i})`);
        assert.equal(flags & ACK, ACK);
        if (fam === 'IPv4') {
          assert.equal(checksum(s.subarray(0, 20)), 0, 'IPv4 header checksum');
          assert.equal(s.readUInt16BE(4), (p.readUInt16BE(4) + i) & 0xffff);
        }
      });
      assert.deepEqual(Buffer.concat(out.map((s) => s.subarray(hdrLen))), payload);
    });
  }

  it('segmentTcp for any payload and segment size: ceil(len/size) segments, all valid, payload intact (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9000 }), fc.integer({ min: 1, max: 1460 }), fc.boolean(), (len, size, v6) => {
        const payload = data(len);
        const p = v6 ? tcpSuper('fd00:8::2', 1, 'fd00:20::1', 2, payload) : tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, payload);
        const out: Buffer[] = [];
        assert.equal(segmentTcp(p, infoOf(p), size, out), true);
        assert.equal(out.length, Math.ceil(len / size));
        const h = v6 ? 60 : 40;
        for (const s of out) assert.ok(tcpChecksumOk(s, v6 ? 'fd00:8::2' : '10.8.0.2', v6 ? 'fd00:20::1' : '10.20.0.1'));
        assert.deepEqual(Buffer.concat(out.map((s) => s.subarray(h))), payload);
      }),
      { numRuns: 200 },
    );
  });

  it('toPlainPackets: plain as is, partial completed, super-packet cut, a mismatch refused', () => {
    const plain = udp('10.8.0.2', 1, '10.20.0.1', 53, data(10));
    const out: Buffer[] = [];
    assert.equal(toPlainPackets(plain, 0, infoOf(plain), out), true);
    assert.equal(out[0], plain);
    const part = makePartial(Buffer.from(plain));
    assert.equal(toPlainPackets(part, OFF_CSUM, infoOf(part), out), true);
    assert.deepEqual(out[1], plain);
    const sup = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(3000));
    assert.equal(toPlainPackets(sup, OFF_GSO | OFF_CSUM | 1000, infoOf(sup), out), true);
    assert.equal(out.length, 5);
    assert.equal(toPlainPackets(plain, OFF_GSO | OFF_CSUM | 1000, infoOf(plain), out), false);
    assert.equal(out.length, 5);
  });
});

/** A sink that records (flow, copy of payload). */
function recorder(accept = true): { sendDatagram: (flow: number, p: Buffer) => boolean; got: [number, Buffer][] } {
  const got: [number, Buffer][] = [];
  return { got, sendDatagram: (flow, p) => (accept ? got.push([flow, Buffer.from(p)]) > 0 : false) };
}

describe('sendPacket: whole to a peer that takes offload, cut for one that does not', () => {
  const meta = OFF_GSO | OFF_CSUM | 1360;
  it('plain packets go on VPN_FLOW as they are', () => {
    const s = recorder();
    const p = udp('10.8.0.2', 1, '10.20.0.1', 53, data(10));
    assert.equal(sendPacket(s, VPN_FLOW, VPN_GSO_FLOW, p, 0, true, false, info), true);
    assert.deepEqual(s.got, [[VPN_FLOW, p]]);
  });

  it('a super-packet goes whole on VPN_GSO_FLOW to a peer that takes it, and cut into checksummed segments otherwise', () => {
    const p = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(4000));
    const yes = recorder();
    assert.equal(sendPacket(yes, VPN_FLOW, VPN_GSO_FLOW, p, meta, true, false, info), true);
    assert.deepEqual(yes.got, [[VPN_GSO_FLOW, Buffer.concat([Buffer.from([3, 1360 >> 8, 1360 & 0xff]), p])]]);
    const no = recorder();
    assert.equal(sendPacket(no, VPN_FLOW, VPN_GSO_FLOW, p, meta, false, false, info), true);
    assert.deepEqual(no.got.map(([f, s]) => [f, s.length]), [[VPN_FLOW, 1400], [VPN_FLOW, 1400], [VPN_FLOW, 1320]]);
    for (const [, s] of no.got) assert.ok(tcpChecksumOk(s, '10.8.0.2', '10.20.0.1'));
    assert.equal(sendPacket(recorder(false), VPN_FLOW, VPN_GSO_FLOW, p, meta, false, false, info), false, 'refused by the session');
  });

  it('over a udp path (the sink has a datagram room) one too large for a single datagram is cut, a small one goes whole', () => {
    const big = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(4000));
    const udpPath = Object.assign(recorder(), { datagramRoom: 1404 });
    assert.equal(sendPacket(udpPath, VPN_FLOW, VPN_GSO_FLOW, big, meta, true, false, info), true);
    assert.deepEqual(udpPath.got.map(([f, s]) => [f, s.length]), [[VPN_FLOW, 1400], [VPN_FLOW, 1400], [VPN_FLOW, 1320]], 'cut: each segment its own datagram');
    const small = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(1000));
    const roomy = Object.assign(recorder(), { datagramRoom: 1404 });
    assert.equal(sendPacket(roomy, VPN_FLOW, VPN_GSO_FLOW, small, OFF_CSUM, true, false, info), true);
    assert.deepEqual(roomy.got.map(([f]) => f), [VPN_GSO_FLOW], 'fits one datagram: whole, checksum left to the peer');
  });

  it('past the wire bounds (over 64 segments even counting headers) it is cut for any peer', () => {
    const p = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(6400)); // 64 segments of 100, but 6440 / 100 > 64
    const s = recorder();
    assert.equal(sendPacket(s, VPN_FLOW, VPN_GSO_FLOW, p, OFF_GSO | OFF_CSUM | 100, true, false, info), true);
    assert.equal(s.got.length, 64);
    assert.ok(s.got.every(([f]) => f === VPN_FLOW));
  });

  it('a partial checksum is completed for a peer without offload', () => {
    const full = udp('10.8.0.2', 1, '10.20.0.1', 53, data(10));
    const s = recorder();
    assert.equal(sendPacket(s, VPN_FLOW, VPN_GSO_FLOW, makePartial(Buffer.from(full)), OFF_CSUM, false, false, info), true);
    assert.deepEqual(s.got, [[VPN_FLOW, full]]);
  });
});

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => quiet };
const tick = (): Promise<void> => new Promise((r) => queueMicrotask(r));

describe('VpnRouter with offload', () => {
  async function setup() {
    const pool = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00:8::/64' });
    const written: [Buffer, number][] = [];
    const tun = {
      closed: false,
      write: (ps: readonly Buffer[], meta?: readonly number[]) => (ps.forEach((p, i) => written.push([Buffer.from(p), meta?.[i] ?? 0])), { written: ps.length, dropped: 0, invalid: 0 }),
    };
    const router = new VpnRouter({ tun, pool, mtu: 1400, clientToClient: true, policy: undefined, logger: quiet });
    const mk = (user: string, offload: boolean) => {
      const sink = recorder();
      const c: RoutedClient = { user, lease: pool.acquire(user), sink, offload, logged: new Map() };
      router.add(c);
      return { c, got: sink.got };
    };
    return { router, written, mk };
  }
  const meta = OFF_GSO | OFF_CSUM | 1360;

  it('a super-packet from the lease reaches the TUN whole, with its meta', async () => {
    const { router, written, mk } = await setup();
    const { c } = mk('alice', true); // 10.8.0.2
    const p = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(8000));
    router.fromClientGso(c, gsoDatagram(p, meta));
    await tick();
    assert.deepEqual(written, [[p, meta]]);
    assert.deepEqual([router.counters.fromClients, router.counters.superPackets], [1, 1]);
  });

  it('anti-spoofing, malformed and oversize apply to super-packets too, and to their metadata', async () => {
    const { router, written, mk } = await setup();
    const { c } = mk('alice', true);
    router.fromClientGso(c, gsoDatagram(tcpSuper('10.8.0.66', 1, '10.20.0.1', 2, data(8000)), meta)); // spoofed
    router.fromClientGso(c, gsoDatagram(tcpSuper('fd00:8::66', 1, 'fd00:20::1', 2, data(8000)), OFF_GSO | OFF_CSUM | 1340)); // spoofed
    router.fromClientGso(c, Buffer.from([3, 5])); // short
    router.fromClientGso(c, gsoDatagram(makePartial(udp('10.8.0.2', 1, '10.20.0.1', 53, data(10))), OFF_GSO | OFF_CSUM | 100)); // GSO on UDP
    router.fromClientGso(c, gsoDatagram(tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(8000)), meta | 0x800000)); // unknown flag
    router.fromClientGso(c, gsoDatagram(Buffer.alloc(60, 0x45), meta)); // not a packet
    router.fromClientGso(c, gsoDatagram(tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(8000)), OFF_GSO | OFF_CSUM | 1400)); // segment > MTU
    router.fromClientGso(c, gsoDatagram(udp('10.8.0.2', 1, '10.20.0.1', 53, data(1400)), 0)); // plain > MTU
    router.fromClient(c, tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(8000))); // a super-packet on VPN_FLOW: just too big
    await tick();
    const k = router.counters;
    assert.deepEqual([k.spoofed, k.malformed, k.oversize, k.fromClients], [2, 4, 3, 0]);
    assert.deepEqual(written, []);
  });

  it('from the TUN: whole on VPN_GSO_FLOW to a client with offload, segments on VPN_FLOW to one without', async () => {
    const { router, mk } = await setup();
    const a = mk('alice', true); // 10.8.0.2
    const b = mk('bob', false); // 10.8.0.3
    // As TunDevice delivers them: the vnet header's room in front of each packet.
    const inRoom = (p: Buffer): Buffer => Buffer.concat([Buffer.alloc(VNET_HDR_LEN), p]).subarray(VNET_HDR_LEN);
    const toA = tcpSuper('10.20.0.1', 2, '10.8.0.2', 1, data(4000));
    const toB = tcpSuper('10.20.0.1', 2, '10.8.0.3', 1, data(4000));
    router.fromTun([inRoom(toA), inRoom(toB), inRoom(udp('10.20.0.1', 53, '10.8.0.3', 1, data(5)))], [meta, meta, 0]);
    assert.deepEqual(a.got, [[VPN_GSO_FLOW, gsoDatagram(toA, meta)]]);
    assert.deepEqual(b.got.map(([f, p]) => [f, p.length]), [[VPN_FLOW, 1400], [VPN_FLOW, 1400], [VPN_FLOW, 1320], [VPN_FLOW, 33]]);
    assert.deepEqual([router.counters.toClients, router.counters.superPackets], [3, 2], 'packets, not the segments they were cut into');
  });

  it('client to client: a super-packet is passed on whole, or cut for a client without offload', async () => {
    const { router, mk } = await setup();
    const a = mk('alice', true); // 10.8.0.2
    const b = mk('bob', false); // 10.8.0.3
    const c = mk('carol', true); // 10.8.0.4
    router.fromClientGso(a.c, gsoDatagram(tcpSuper('10.8.0.2', 1, '10.8.0.3', 2, data(2000)), meta));
    router.fromClientGso(a.c, gsoDatagram(tcpSuper('10.8.0.2', 1, '10.8.0.4', 2, data(2000)), meta));
    assert.deepEqual(b.got.map(([f, p]) => [f, p.length]), [[VPN_FLOW, 1400], [VPN_FLOW, 680]]);
    assert.deepEqual(c.got.map(([f, p]) => [f, p.length]), [[VPN_GSO_FLOW, 2040 + GSO_WIRE_HEADER]]);
  });
});

describe('VpnPacketPath (client) with offload', () => {
  const config = (offload: boolean): VpnConfig => ({ addr4: { ip: '10.8.0.2', prefix: 24 }, gw4: '10.8.0.1', mtu: 1400, routes: [], dns: [], ...(offload ? { offload: true } : {}) });
  function setup(offload: boolean, mssClamp = false) {
    const sink = recorder();
    const written: [Buffer, number][] = [];
    const tun = {
      mtu: 1400,
      closed: false,
      write: (ps: readonly Buffer[], meta?: readonly number[]) => (ps.forEach((p, i) => written.push([Buffer.from(p), meta?.[i] ?? 0])), { written: ps.length, dropped: 0, invalid: 0 }),
    };
    const path = new VpnPacketPath({ tun, mssClamp, session: () => sink });
    path.setLease(config(offload));
    return { path, got: sink.got, written };
  }
  const meta = OFF_GSO | OFF_CSUM | 1360;

  it('to a server that takes offload: whole; to one that does not: cut', () => {
    const p = tcpSuper('10.8.0.2', 1, '10.20.0.1', 2, data(3000));
    const yes = setup(true);
    yes.path.fromTun([Buffer.concat([Buffer.alloc(VNET_HDR_LEN), p]).subarray(VNET_HDR_LEN)], [meta]);
    assert.deepEqual(yes.got, [[VPN_GSO_FLOW, gsoDatagram(p, meta)]]);
    assert.equal(yes.path.counters.superPackets, 1);
    const no = setup(false);
    no.path.fromTun([Buffer.from(p)], [meta]);
    assert.deepEqual(no.got.map(([f, s]) => [f, s.length]), [[VPN_FLOW, 1400], [VPN_FLOW, 1400], [VPN_FLOW, 320]]);
  });

  it('from the server: a super-packet for our lease is written whole; misrouted, malformed and oversize ones are counted', async () => {
    const { path, written } = setup(true);
    const ok = tcpSuper('10.20.0.1', 2, '10.8.0.2', 1, data(3000));
    path.fromServerGso(gsoDatagram(ok, meta));
    path.fromServerGso(gsoDatagram(tcpSuper('10.20.0.1', 2, '10.8.0.9', 1, data(3000)), meta));
    path.fromServerGso(gsoDatagram(ok, OFF_GSO | 1360));
    path.fromServerGso(Buffer.from([0]));
    path.fromServerGso(gsoDatagram(ok, OFF_GSO | OFF_CSUM | 20));
    await tick();
    assert.deepEqual(written, [[ok, meta]]);
    const k = path.counters;
    assert.deepEqual([k.misrouted, k.malformed, k.oversize, k.superPackets], [1, 2, 1, 1]);
  });

  it('MSS clamping leaves a partial checksum alone (whoever completes it sums the new MSS)', () => {
    const { path, got } = setup(true, true);
    const full = tcp('10.8.0.2', 40000, '10.20.0.1', 443, SYN, mssOption(1460));
    const syn = makePartial(Buffer.from(full));
    const partialField = syn.readUInt16BE(36);
    path.fromTun([Buffer.concat([Buffer.alloc(VNET_HDR_LEN), syn]).subarray(VNET_HDR_LEN)], [OFF_CSUM]);
    const sent = (got[0] as [number, Buffer])[1].subarray(GSO_WIRE_HEADER);
    assert.equal(sent.readUInt16BE(42), 1360, 'MSS lowered');
    assert.equal(sent.readUInt16BE(36), partialField, 'checksum field untouched');
    assert.equal(completeChecksum(sent, infoOf(sent)), true);
    assert.ok(tcpChecksumOk(sent, '10.8.0.2', '10.20.0.1'), 'completes to a valid checksum');
    // A full checksum is still fixed up incrementally.
    const p = Buffer.from(full);
    assert.equal(clampMss(p, infoOf(p), 1360), true);
    assert.ok(tcpChecksumOk(p, '10.8.0.2', '10.20.0.1'));
  });
});
