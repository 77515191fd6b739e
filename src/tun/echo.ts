/**
 * Answers ICMP echo requests (ping, IPv4 and IPv6) addressed to the VPN
 * server's own tunnel address, in the router, without the kernel: the
 * first thing a user tries on a new VPN is `ping 10.8.0.1`, and the
 * destination policy (which refuses private addresses and the server's
 * own) would otherwise drop it silently. Only echo is answered; every other
 * packet to that address still goes through the policy, so no service on
 * the server becomes reachable by this.
 *
 * The reply is the request with addresses swapped, type 0 (v4) / 129 (v6),
 * a fresh TTL, and the checksums recomputed. Fragments and packets with
 * IPv4 options or IPv6 extension headers are not answered.
 */
import { PROTO_ICMP, PROTO_ICMPV6, type PacketInfo } from './packet.js';

/** One's-complement sum of 16-bit words from `off` to `end`, added to `sum`, not folded. */
function sum16(p: Uint8Array, off: number, end: number, sum = 0): number {
  let i = off;
  for (; i + 1 < end; i += 2) sum += ((p[i] as number) << 8) | (p[i + 1] as number);
  if (i < end) sum += (p[i] as number) << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The echo reply to `p` when it is a well-formed, unfragmented echo request
 * (`info` from inspectPacket); else undefined. Returns a new buffer.
 */
export function echoReply(p: Uint8Array, info: PacketInfo): Buffer | undefined {
  if (info.fragment) return undefined;
  if (info.version === 4) {
    if (info.protocol !== PROTO_ICMP || p[0] !== 0x45 || p.length < 28 || p[20] !== 8 || p[21] !== 0) return undefined;
    if (fold(sum16(p, 20, p.length)) !== 0) return undefined; // a corrupted request gets no answer
    const r = Buffer.from(p);
    r.set(p.subarray(16, 20), 12);
    r.set(p.subarray(12, 16), 16);
    r[8] = 64; // TTL
    r.writeUInt16BE(0, 10);
    r.writeUInt16BE(fold(sum16(r, 0, 20)), 10);
    r[20] = 0; // echo reply
    r.writeUInt16BE(0, 22);
    r.writeUInt16BE(fold(sum16(r, 20, r.length)), 22);
    return r;
  }
  if (info.protocol !== PROTO_ICMPV6 || p[6] !== PROTO_ICMPV6 || p.length < 48 || p[40] !== 128 || p[41] !== 0) return undefined;
  const pseudo = (b: Uint8Array): number => sum16(b, 8, 40, (b.length - 40) + PROTO_ICMPV6);
  if (fold(sum16(p, 40, p.length, pseudo(p))) !== 0) return undefined;
  const r = Buffer.from(p);
  r.set(p.subarray(24, 40), 8);
  r.set(p.subarray(8, 24), 24);
  r[7] = 64; // hop limit
  r[40] = 129; // echo reply
  r.writeUInt16BE(0, 42);
  r.writeUInt16BE(fold(sum16(r, 40, r.length, pseudo(r))), 42);
  return r;
}
