import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checksumReplace16, clampMss, inspectPacket, mssFor, newPacketInfo, packetAddress, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../../../src/tun/packet.js';
import { ACK, checksum, icmpEcho, ipv4, ipv6, mssOption, SYN, tcp, tcpChecksumOk, udp } from '../../helpers/ip-packets.js';

const info = newPacketInfo();

describe('inspectPacket: well-formed packets', () => {
  it('IPv4 UDP: version, length, protocol, ports, addresses', () => {
    const p = udp('10.8.0.2', 5353, '10.20.0.1', 53, Buffer.from('query'));
    assert.equal(inspectPacket(p, info), undefined);
    assert.deepEqual({ ...info }, { version: 4, length: p.length, protocol: PROTO_UDP, l4Offset: 20, fragment: false, srcPort: 5353, dstPort: 53 });
    assert.equal(packetAddress(p, 'src'), '10.8.0.2');
    assert.equal(packetAddress(p, 'dst'), '10.20.0.1');
  });

  it('IPv6 TCP: ports read after the fixed header', () => {
    const p = tcp('fd00:8::2', 40000, '2001:db8::1', 443, SYN, mssOption(1440));
    assert.equal(inspectPacket(p, info), undefined);
    assert.deepEqual({ ...info }, { version: 6, length: p.length, protocol: PROTO_TCP, l4Offset: 40, fragment: false, srcPort: 40000, dstPort: 443 });
    assert.equal(packetAddress(p, 'src'), 'fd00:8::2');
    assert.equal(packetAddress(p, 'dst'), '2001:db8::1');
  });

  it('ICMP has no ports', () => {
    assert.equal(inspectPacket(icmpEcho('10.8.0.2', '10.8.0.1', 1, 1, Buffer.from('ping')), info), undefined);
    assert.equal(info.protocol, PROTO_ICMP);
    assert.equal(info.dstPort, -1);
  });

  it('IPv4 options (IHL 6) move the upper-layer header', () => {
    const base = udp('10.0.0.1', 1, '10.0.0.2', 2, Buffer.from('x'));
    const p = Buffer.concat([base.subarray(0, 20), Buffer.from([1, 1, 1, 0]), base.subarray(20)]);
    p[0] = 0x46;
    p.writeUInt16BE(p.length, 2);
    assert.equal(inspectPacket(p, info), undefined);
    assert.equal(info.l4Offset, 24);
    assert.equal(info.dstPort, 2);
  });

  it('an IPv4 non-first fragment has no upper-layer header', () => {
    const p = udp('10.0.0.1', 1, '10.0.0.2', 2, Buffer.from('fragment'));
    p.writeUInt16BE(0x0001, 6); // offset 8 bytes
    assert.equal(inspectPacket(p, info), undefined);
    assert.equal(info.l4Offset, -1);
    assert.equal(info.dstPort, -1);
  });

  it('IPv6 extension headers are walked (hop-by-hop, then UDP); a later fragment has no ports', () => {
    const u = udp('fd00::1', 7, 'fd00::2', 9, Buffer.from('data')).subarray(40);
    const hbh = Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]); // next = UDP, len 0 (8 bytes), PadN
    const p = ipv6('fd00::1', 'fd00::2', 0, Buffer.concat([hbh, u]));
    assert.equal(inspectPacket(p, info), undefined);
    assert.deepEqual([info.protocol, info.l4Offset, info.srcPort, info.dstPort], [PROTO_UDP, 48, 7, 9]);
    const frag = Buffer.from([17, 0, 0, 16, 0, 0, 0, 1]); // offset 2 (×8), next = UDP
    const q = ipv6('fd00::1', 'fd00::2', 44, Buffer.concat([frag, Buffer.alloc(16)]));
    assert.equal(inspectPacket(q, info), undefined);
    assert.deepEqual([info.protocol, info.l4Offset, info.dstPort], [PROTO_UDP, -1, -1]);
  });
});

describe('inspectPacket: malformed packets', () => {
  const good4 = udp('10.0.0.1', 1, '10.0.0.2', 2, Buffer.from('payload'));
  const good6 = udp('fd00::1', 1, 'fd00::2', 2, Buffer.from('payload'));
  const cases: [string, () => Buffer, string][] = [
    ['empty', () => Buffer.alloc(0), 'short'],
    ['version 5', () => Buffer.from([0x50, ...good4.subarray(1)]), 'version'],
    ['version 0 (all zeros)', () => Buffer.alloc(40), 'version'],
    ['IPv4 shorter than 20 bytes', () => good4.subarray(0, 19), 'short'],
    ['IPv4 IHL 4', () => Buffer.from([0x44, ...good4.subarray(1)]), 'header-length'],
    ['IPv4 IHL past the end', () => {
      const p = ipv4('10.0.0.1', '10.0.0.2', 253, Buffer.alloc(4));
      p[0] = 0x4f;
      return p;
    }, 'header-length'],
    ['IPv4 total length one more than the buffer', () => good4.subarray(0, good4.length - 1), 'total-length'],
    ['IPv4 trailing bytes beyond total length', () => Buffer.concat([good4, Buffer.from([0])]), 'total-length'],
    ['IPv4 UDP header cut short', () => ipv4('10.0.0.1', '10.0.0.2', 17, Buffer.alloc(7)), 'l4-truncated'],
    ['IPv4 TCP data offset past the end', () => {
      const p = tcp('10.0.0.1', 1, '10.0.0.2', 2, ACK);
      p[32] = 0xf0;
      return p;
    }, 'l4-truncated'],
    ['IPv4 TCP data offset below 5', () => {
      const p = tcp('10.0.0.1', 1, '10.0.0.2', 2, ACK);
      p[32] = 0x40;
      return p;
    }, 'l4-truncated'],
    ['IPv6 shorter than 40 bytes', () => good6.subarray(0, 39), 'short'],
    ['IPv6 payload length disagrees', () => Buffer.concat([good6, Buffer.alloc(1)]), 'total-length'],
    ['IPv6 extension header past the end', () => ipv6('fd00::1', 'fd00::2', 60, Buffer.from([17, 4, 0, 0, 0, 0, 0, 0])), 'ext-headers'],
    ['IPv6 nine extension headers', () => {
      const hdrs = Buffer.concat(Array.from({ length: 9 }, (_, i) => Buffer.from([i === 8 ? 59 : 60, 0, 1, 4, 0, 0, 0, 0])));
      return ipv6('fd00::1', 'fd00::2', 60, hdrs);
    }, 'ext-headers'],
  ];
  for (const [name, make, reason] of cases) {
    it(name, () => assert.equal(inspectPacket(make(), info), reason));
  }

  it('fuzz: arbitrary bytes never throw, and an accepted packet is self-consistent', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(0x45, 0x46, 0x60, 0x4f), (bytes, first) => {
        const p = Buffer.from(bytes);
        if (p.length > 0) p[0] = first;
        if (p.length >= 4 && first !== 0x60) p.writeUInt16BE(p.length, 2); // get past the length check often
        if (p.length >= 40 && first === 0x60) p.writeUInt16BE(p.length - 40, 4);
        const why = inspectPacket(p, info);
        if (why === undefined) {
          assert.equal(info.length, p.length);
          assert.ok(info.l4Offset < p.length);
          if (info.dstPort >= 0) assert.ok(info.l4Offset >= 20 && info.l4Offset + 4 <= p.length);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('property: any built UDP packet is accepted with its ports; any length change is refused', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ maxLength: 300 }), fc.integer({ min: -3, max: 3 }), (v6, sp, dp, data, delta) => {
        const p = v6 ? udp('fd00::2', sp, 'fd00::9', dp, Buffer.from(data)) : udp('10.1.2.3', sp, '10.3.2.1', dp, Buffer.from(data));
        assert.equal(inspectPacket(p, info), undefined);
        assert.deepEqual([info.srcPort, info.dstPort], [sp, dp]);
        if (delta !== 0) {
          if (v6) p.writeUInt16BE((p.readUInt16BE(4) + delta) & 0xffff, 4);
          else p.writeUInt16BE((p.readUInt16BE(2) + delta) & 0xffff, 2);
          assert.notEqual(inspectPacket(p, info), undefined);
        }
      }),
    );
  });
});

describe('MSS clamping', () => {
  it('lowers a SYN\'s MSS to the limit and keeps the TCP checksum valid (IPv4 and IPv6)', () => {
    for (const [src, dst] of [['10.8.0.2', '10.20.0.1'], ['fd00:8::2', 'fd00:20::1']] as const) {
      const p = tcp(src, 40000, dst, 80, SYN, mssOption(1460));
      assert.equal(inspectPacket(p, info), undefined);
      const max = mssFor(1400, info.version);
      assert.equal(clampMss(p, info, max), true);
      assert.equal(p.readUInt16BE(info.l4Offset + 22), max);
      assert.ok(tcpChecksumOk(p, src, dst), 'checksum after clamping');
    }
    assert.equal(mssFor(1400, 4), 1360);
    assert.equal(mssFor(1400, 6), 1340);
  });

  it('handles an MSS option at an odd offset (after a NOP)', () => {
    const opts = Buffer.from([1, 2, 4, 0x05, 0xb4, 1, 1, 0]); // NOP, MSS 1460, NOP, NOP, EOL
    const p = tcp('10.8.0.2', 1234, '10.20.0.1', 80, SYN | ACK, opts);
    assert.equal(inspectPacket(p, info), undefined);
    assert.equal(clampMss(p, info, 1300), true);
    assert.equal(p.readUInt16BE(20 + 20 + 3), 1300); // NOP, kind, len, then the value
    assert.ok(tcpChecksumOk(p, '10.8.0.2', '10.20.0.1'));
  });

  it('leaves non-SYNs, small MSS values, SYNs without the option and UDP alone', () => {
    const cases = [
      tcp('10.0.0.1', 1, '10.0.0.2', 2, ACK, mssOption(1460)),
      tcp('10.0.0.1', 1, '10.0.0.2', 2, SYN, mssOption(1200)),
      tcp('10.0.0.1', 1, '10.0.0.2', 2, SYN),
      udp('10.0.0.1', 1, '10.0.0.2', 2, Buffer.alloc(30, 2)),
    ];
    for (const p of cases) {
      const before = Buffer.from(p);
      assert.equal(inspectPacket(p, info), undefined);
      assert.equal(clampMss(p, info, 1360), false);
      assert.deepEqual(p, before);
    }
  });

  it('property: after clamping the MSS is min(old, limit) and the checksum verifies, at either alignment', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 536, max: 9000 }), fc.boolean(), fc.uint8Array({ maxLength: 20 }), (mss, limit, odd, data) => {
        const opts = odd ? Buffer.from([1, 2, 4, mss >> 8, mss & 0xff, 1, 1, 0]) : Buffer.concat([mssOption(mss), Buffer.from([1, 1, 1, 0])]);
        const p = tcp('10.8.0.2', 999, '192.0.2.7', 443, SYN, opts, Buffer.from(data));
        assert.equal(inspectPacket(p, info), undefined);
        clampMss(p, info, limit);
        assert.equal(p.readUInt16BE(odd ? 43 : 42), Math.min(mss, limit)); // options start at 40
        assert.ok(tcpChecksumOk(p, '10.8.0.2', '192.0.2.7'));
      }),
    );
  });

  it('checksumReplace16 agrees with recomputing the checksum (RFC 1624)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 64 }).filter((a) => a.length % 2 === 0), fc.nat(31), fc.integer({ min: 0, max: 0xffff }), (arr, at, to) => {
        const buf = Buffer.from(arr);
        const i = (at % (buf.length / 2)) * 2;
        const from = buf.readUInt16BE(i);
        const before = checksum(buf);
        buf.writeUInt16BE(to, i);
        const got = checksumReplace16(before, from, to);
        // 0x0000 and 0xffff are the same number in one's complement
        assert.ok(got === checksum(buf) || (got ^ checksum(buf)) === 0xffff, `${got} vs ${checksum(buf)}`);
      }),
    );
  });
});
