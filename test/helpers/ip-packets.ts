/**
 * Builders of well-formed IPv4 / IPv6 packets (UDP, TCP, ICMP) with correct
 * checksums, for the VPN tests and benchmarks. Written independently of
 * src/tun/packet.ts so that the tests check it against a second opinion.
 */
import { parseIpBytes } from '../../src/tun/ipaddr.js';

/** One's-complement sum of 16-bit words (RFC 1071), folded and inverted. */
export function checksum(buf: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += ((buf[i] ?? 0) << 8) | (buf[i + 1] ?? 0);
  if (buf.length % 2 === 1) sum += (buf[buf.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function addr(ip: string): Buffer {
  const b = parseIpBytes(ip);
  if (!b) throw new Error(`bad address ${ip}`);
  return b;
}

/** IPv4 header + payload (DF set, TTL 64). */
export function ipv4(src: string, dst: string, protocol: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(0x4000, 6);
  h[8] = 64;
  h[9] = protocol;
  addr(src).copy(h, 12);
  addr(dst).copy(h, 16);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, payload]);
}

/** IPv6 header + payload (hop limit 64). */
export function ipv6(src: string, dst: string, nextHeader: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = nextHeader;
  h[7] = 64;
  addr(src).copy(h, 8);
  addr(dst).copy(h, 24);
  return Buffer.concat([h, payload]);
}

function pseudo(src: string, dst: string, proto: number, len: number): Buffer {
  const s = addr(src);
  const d = addr(dst);
  if (s.length === 4) return Buffer.concat([s, d, Buffer.from([0, proto, len >> 8, len & 0xff])]);
  const tail = Buffer.alloc(8);
  tail.writeUInt32BE(len, 0);
  tail[7] = proto;
  return Buffer.concat([s, d, tail]);
}

/** A UDP datagram inside IPv4 or IPv6 (by the address family). */
export function udp(src: string, sport: number, dst: string, dport: number, data: Buffer): Buffer {
  const u = Buffer.alloc(8 + data.length);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(u.length, 4);
  data.copy(u, 8);
  u.writeUInt16BE(checksum(Buffer.concat([pseudo(src, dst, 17, u.length), u])) || 0xffff, 6);
  return src.includes(':') ? ipv6(src, dst, 17, u) : ipv4(src, dst, 17, u);
}

/** TCP flags. */
export const SYN = 0x02;
export const ACK = 0x10;

/** A TCP segment inside IPv4 or IPv6; `options` must be a multiple of 4 bytes. */
export function tcp(src: string, sport: number, dst: string, dport: number, flags: number, options: Buffer = Buffer.alloc(0), data: Buffer = Buffer.alloc(0)): Buffer {
  const hl = 20 + options.length;
  const t = Buffer.alloc(hl + data.length);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(0x01020304, 4);
  t[12] = (hl / 4) << 4;
  t[13] = flags;
  t.writeUInt16BE(65535, 14);
  options.copy(t, 20);
  data.copy(t, hl);
  t.writeUInt16BE(checksum(Buffer.concat([pseudo(src, dst, 6, t.length), t])), 16);
  return src.includes(':') ? ipv6(src, dst, 6, t) : ipv4(src, dst, 6, t);
}

/** The MSS option (kind 2, length 4). */
export function mssOption(mss: number): Buffer {
  return Buffer.from([2, 4, mss >> 8, mss & 0xff]);
}

/** True when the TCP checksum of a packet built by `tcp()` (IPv4, IHL 5, or IPv6 without extensions) verifies. */
export function tcpChecksumOk(p: Buffer, src: string, dst: string): boolean {
  const off = p[0] === 0x45 ? 20 : 40;
  const seg = p.subarray(off);
  return checksum(Buffer.concat([pseudo(src, dst, 6, seg.length), seg])) === 0;
}

/** An ICMP echo request (IPv4). */
export function icmpEcho(src: string, dst: string, id: number, seq: number, data: Buffer): Buffer {
  const icmp = Buffer.concat([Buffer.from([8, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff]), data]);
  icmp.writeUInt16BE(checksum(icmp), 2);
  return ipv4(src, dst, 1, icmp);
}
