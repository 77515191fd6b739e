/**
 * Offloaded packets for the VPN offload tests (src/tun/vnet.ts), built on
 * test/helpers/ip-packets.ts and, like it, independent of the code under
 * test: a partial checksum is the folded (not inverted) pseudo-header sum,
 * as the kernel leaves it in a CHECKSUM_PARTIAL packet.
 */
import { ACK, tcp } from './ip-packets.js';

/** Offset of the L4 header of a packet built by ip-packets.ts (IPv4 IHL 5, IPv6 without extensions). */
export function l4Offset(p: Buffer): number {
  return (p[0] as number) >> 4 === 4 ? 20 : 40;
}

function sum16(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < b.length; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (b.length % 2 === 1) s += (b[b.length - 1] as number) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** Replaces the TCP/UDP checksum of `p` (in place) by the pseudo-header sum; returns `p`. */
export function makePartial(p: Buffer): Buffer {
  const v4 = (p[0] as number) >> 4 === 4;
  const l4 = l4Offset(p);
  const proto = v4 ? (p[9] as number) : (p[6] as number);
  const len = p.length - l4;
  const addrs = v4 ? p.subarray(12, 20) : p.subarray(8, 40);
  const s = sum16(addrs, proto + (len >>> 16) + (len & 0xffff));
  p.writeUInt16BE(s, l4 + (proto === 6 ? 16 : 6));
  return p;
}

/** A TCP super-packet: ACK|PSH (plus `flags`) with `data`, partial checksum; sequence number 0x01020304. */
export function tcpSuper(src: string, sport: number, dst: string, dport: number, data: Buffer, flags = 0): Buffer {
  return makePartial(tcp(src, sport, dst, dport, ACK | 0x08 | flags, Buffer.alloc(0), data));
}
