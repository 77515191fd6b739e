/**
 * IPv4 / IPv6 header inspection for the VPN data path, and MSS clamping.
 *
 * The VPN server must know, for every packet a client sends, that it is a
 * well-formed IP packet, who it claims to be from (anti-spoofing), where it
 * goes (routing, policy) and, for TCP/UDP, the destination port (policy).
 * `inspectPacket` answers all of that in one pass, writing into a caller-owned
 * {@link PacketInfo} so the hot path allocates nothing.
 *
 * ```
 * IPv4 (RFC 791)                                     IPv6 (RFC 8200)
 *  0       4       8      16                 31       0    4        12     16            31
 * +-------+-------+------+-------------------+       +----+--------+-------------------+
 * |ver=4  | IHL   | TOS  |   total length    |       |ver | class  |    flow label     |
 * |   identification     |flg| frag offset   |       | payload length | next hdr | hops|
 * |  TTL  | protocol     |  header checksum  |       |   source address (16 bytes)    |
 * |          source address (12..16)         |       |   destination address (16)     |
 * |       destination address (16..20)       |       +--------------------------------+
 * |     options (IHL > 5) …                  |       then extension headers, then L4
 * +------------------------------------------+
 * ```
 *
 * What counts as malformed (the reason is returned): shorter than a header,
 * a version other than 4/6, IHL < 5 or past the end, a length field that
 * disagrees with the buffer (a TUN hands over exactly one packet, so any
 * slack would be smuggled bytes), an extension header chain that runs past
 * the end (or is longer than 8 headers), and a first fragment whose TCP or
 * UDP header is cut short (the "tiny fragment" trick that hides ports from
 * filters). Header checksums are left to the kernel, which drops bad ones on
 * write.
 */
import { formatIpBytes } from './ipaddr.js';

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
const PROTO_SCTP = 132;
const PROTO_UDPLITE = 136;

/** IPv6 extension headers walked to reach the upper-layer header. */
const EXT_HOP_BY_HOP = 0;
const EXT_ROUTING = 43;
const EXT_FRAGMENT = 44;
const EXT_AH = 51;
const EXT_DEST_OPTS = 60;
const MAX_EXT_HEADERS = 8;

/** Where the addresses sit in each header. */
export const V4_SRC = 12;
export const V4_DST = 16;
export const V6_SRC = 8;
export const V6_DST = 24;

/** What inspectPacket found. One object is reused across calls. */
export interface PacketInfo {
  version: 4 | 6;
  /** Total length in bytes (equal to the buffer's). */
  length: number;
  /** Upper-layer protocol (after IPv6 extension headers). */
  protocol: number;
  /** Offset of the upper-layer header; -1 for a non-first fragment. */
  l4Offset: number;
  /** Any fragment (IPv4 MF or offset, IPv6 fragment header), first ones included. */
  fragment: boolean;
  /** Source / destination port for TCP, UDP, SCTP, UDP-Lite first fragments; -1 otherwise. */
  srcPort: number;
  dstPort: number;
}

/** A fresh PacketInfo to pass to inspectPacket. */
export function newPacketInfo(): PacketInfo {
  return { version: 4, length: 0, protocol: 0, l4Offset: -1, fragment: false, srcPort: -1, dstPort: -1 };
}

/** Why a packet was judged malformed. */
export type MalformedReason = 'short' | 'version' | 'header-length' | 'total-length' | 'ext-headers' | 'l4-truncated';

/**
 * Checks one packet and fills `info`. Returns undefined when the packet is
 * well formed, else the reason (and `info` is then partly filled).
 */
export function inspectPacket(p: Uint8Array, info: PacketInfo): MalformedReason | undefined {
  if (p.length < 1) return 'short';
  const version = (p[0] as number) >> 4;
  info.srcPort = -1;
  info.dstPort = -1;
  info.l4Offset = -1;
  info.fragment = false;
  if (version === 4) return inspectV4(p, info);
  if (version === 6) return inspectV6(p, info);
  return 'version';
}

function u16(p: Uint8Array, off: number): number {
  return ((p[off] as number) << 8) | (p[off + 1] as number);
}

function inspectV4(p: Uint8Array, info: PacketInfo): MalformedReason | undefined {
  info.version = 4;
  if (p.length < 20) return 'short';
  const ihl = ((p[0] as number) & 0x0f) * 4;
  const total = u16(p, 2);
  info.length = total;
  if (ihl < 20) return 'header-length';
  if (total !== p.length) return 'total-length';
  if (ihl > total) return 'header-length';
  info.protocol = p[9] as number;
  const frag = u16(p, 6);
  info.fragment = (frag & 0x3fff) !== 0; // MF or an offset
  if ((frag & 0x1fff) !== 0) return undefined; // no upper-layer header in this piece
  return upperLayer(p, ihl, info);
}

function inspectV6(p: Uint8Array, info: PacketInfo): MalformedReason | undefined {
  info.version = 6;
  if (p.length < 40) return 'short';
  const total = 40 + u16(p, 4);
  info.length = total;
  // A payload length of 0 with more bytes would be a jumbogram (RFC 2675): not on a TUN.
  if (total !== p.length) return 'total-length';
  let next = p[6] as number;
  let off = 40;
  for (let n = 0; ; n++) {
    if (next !== EXT_HOP_BY_HOP && next !== EXT_ROUTING && next !== EXT_DEST_OPTS && next !== EXT_FRAGMENT && next !== EXT_AH) break;
    if (n === MAX_EXT_HEADERS || off + 8 > total) return 'ext-headers';
    const hdrNext = p[off] as number;
    let len: number;
    if (next === EXT_FRAGMENT) {
      len = 8;
      info.fragment = true;
      if (u16(p, off + 2) >> 3 !== 0) {
        info.protocol = hdrNext;
        return undefined; // non-first fragment: no upper-layer header
      }
    } else if (next === EXT_AH) len = ((p[off + 1] as number) + 2) * 4;
    else len = ((p[off + 1] as number) + 1) * 8;
    if (off + len > total) return 'ext-headers';
    next = hdrNext;
    off += len;
  }
  info.protocol = next;
  return upperLayer(p, off, info);
}

/** Reads ports of the upper-layer header at `off` (first fragment or whole packet). */
function upperLayer(p: Uint8Array, off: number, info: PacketInfo): MalformedReason | undefined {
  info.l4Offset = off;
  const proto = info.protocol;
  const room = info.length - off;
  if (proto === PROTO_TCP) {
    if (room < 20) return 'l4-truncated';
    const doff = ((p[off + 12] as number) >> 4) * 4;
    if (doff < 20 || doff > room) return 'l4-truncated';
  } else if (proto === PROTO_UDP || proto === PROTO_UDPLITE) {
    if (room < 8) return 'l4-truncated';
  } else if (proto === PROTO_SCTP) {
    if (room < 12) return 'l4-truncated';
  } else return undefined;
  info.srcPort = u16(p, off);
  info.dstPort = u16(p, off + 2);
  return undefined;
}

/** The textual source or destination address of a packet inspectPacket accepted (for logs and tests). */
export function packetAddress(p: Uint8Array, which: 'src' | 'dst'): string {
  const version = (p[0] as number) >> 4;
  if (version === 4) {
    const o = which === 'src' ? V4_SRC : V4_DST;
    return `${p[o]}.${p[o + 1]}.${p[o + 2]}.${p[o + 3]}`;
  }
  const o = which === 'src' ? V6_SRC : V6_DST;
  return formatIpBytes(p.subarray(o, o + 16));
}

/** The largest MSS that fits a device MTU: MTU minus the IP and TCP headers. */
export function mssFor(mtu: number, version: 4 | 6): number {
  return mtu - (version === 4 ? 40 : 60);
}

/**
 * RFC 1624 incremental checksum update: the one's-complement checksum `sum`
 * after one 16-bit word changed from `from` to `to`.
 */
export function checksumReplace16(sum: number, from: number, to: number): number {
  let s = (~sum & 0xffff) + (~from & 0xffff) + (to & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/**
 * Lowers the MSS option of a TCP SYN (or SYN-ACK) to `maxMss` (per-family:
 * see {@link mssFor}), fixing the TCP checksum incrementally. `info` must
 * come from a successful inspectPacket of `p`. With `partialChecksum` (an
 * offloaded packet, see vnet.ts: the checksum field holds only the
 * pseudo-header sum, and whoever completes it sums the options as they are
 * then) the checksum is left alone. Returns true when the packet was changed. A SYN without an MSS option is left alone: the peer then
 * assumes 536 (IPv4) / 1220 (IPv6), which always fits.
 *
 * Why: hosts behind a VPN router keep their 1500-byte MTU and announce an MSS
 * of 1460, which would make the far end send segments the tunnel cannot carry.
 */
export function clampMss(p: Buffer, info: PacketInfo, maxMss: number, partialChecksum = false): boolean {
  if (info.protocol !== PROTO_TCP || info.l4Offset < 0) return false;
  const t = info.l4Offset;
  if (((p[t + 13] as number) & 0x02) === 0) return false; // not a SYN
  const end = t + ((p[t + 12] as number) >> 4) * 4;
  let o = t + 20;
  while (o < end) {
    const kind = p[o] as number;
    if (kind === 0) break; // end of options
    if (kind === 1) {
      o++; // NOP
      continue;
    }
    if (o + 1 >= end) break;
    const len = p[o + 1] as number;
    if (len < 2 || o + len > end) break; // malformed options: leave the packet as it is
    if (kind === 2 && len === 4) {
      const mss = p.readUInt16BE(o + 2);
      if (mss <= maxMss) return false;
      p.writeUInt16BE(maxMss, o + 2);
      if (partialChecksum) return true;
      // The option word sits at an even offset from the TCP header start only
      // when `o - t` is even; the checksum works on 16-bit words of the segment.
      if ((o - t) % 2 === 0) p.writeUInt16BE(checksumReplace16(p.readUInt16BE(t + 16), mss, maxMss), t + 16);
      else {
        // Odd alignment: the MSS bytes straddle two words; update both words.
        const w1Old = ((p[o + 1] as number) << 8) | (mss >> 8);
        const w2Old = ((mss & 0xff) << 8) | (p[o + 4] as number);
        const w1New = ((p[o + 1] as number) << 8) | (maxMss >> 8);
        const w2New = ((maxMss & 0xff) << 8) | (p[o + 4] as number);
        let sum = checksumReplace16(p.readUInt16BE(t + 16), w1Old, w1New);
        sum = checksumReplace16(sum, w2Old, w2New);
        p.writeUInt16BE(sum, t + 16);
      }
      return true;
    }
    o += len;
  }
  return false;
}
