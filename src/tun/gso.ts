/**
 * Offload done in userspace, for a peer or a device that cannot take an
 * offloaded packet (vnet.ts): completing a partial checksum, and cutting a
 * TCP super-packet into the segments the kernel would have sent.
 *
 * Segment i of a super-packet with header length H (IP + TCP, options
 * included) and segment size S carries payload bytes [i·S, (i+1)·S):
 * ```
 *   IPv4: total length = H + len, identification + i, header checksum redone
 *   IPv6: payload length = H − 40 + len
 *   TCP:  sequence number + i·S; FIN and PSH only on the last segment, CWR
 *         only on the first; checksum computed in full (pseudo-header + segment)
 * ```
 * This is the slow path (one allocation and one checksum pass per segment):
 * peers that negotiated offload never take it. sendPacket picks the path.
 */
import { inspectPacket, PROTO_TCP, PROTO_UDP, type PacketInfo } from './packet.js';
import { GSO_WIRE_HEADER, gsoDatagram, gsoDatagramInPlace, MAX_GSO_SEGS, MAX_SUPER_PACKET, OFF_CSUM, OFF_GSO } from './vnet.js';

/** One's-complement sum of the 16-bit words of p[start, end), added to `acc` (not folded). */
function sumWords(p: Uint8Array, start: number, end: number, acc: number): number {
  let s = acc;
  let i = start;
  for (; i + 1 < end; i += 2) s += ((p[i] as number) << 8) | (p[i + 1] as number);
  if (i < end) s += (p[i] as number) << 8;
  return s;
}

function fold(s: number): number {
  let x = s;
  while (x > 0xffff) x = (x & 0xffff) + Math.floor(x / 0x10000);
  return x;
}

/** Sum of the pseudo-header of an upper-layer segment of `l4Len` bytes. */
function pseudoSum(p: Uint8Array, info: PacketInfo, l4Len: number): number {
  if (info.version === 4) return sumWords(p, 12, 20, info.protocol + l4Len);
  return sumWords(p, 8, 40, info.protocol + (l4Len >>> 16) + (l4Len & 0xffff));
}

/** The offset of the checksum field in the upper-layer header, or -1 for protocols without one we fill. */
function checksumField(info: PacketInfo): number {
  if (info.protocol === PROTO_TCP) return 16;
  if (info.protocol === PROTO_UDP) return 6;
  return -1;
}

/**
 * Completes a partial checksum in place (the field holds the pseudo-header
 * sum, as the kernel leaves it): sums the upper-layer segment and stores the
 * complement. `info` must come from a successful inspectPacket of `p`.
 * Returns false when `p` has no TCP/UDP header to complete.
 */
export function completeChecksum(p: Buffer, info: PacketInfo): boolean {
  const field = checksumField(info);
  if (field < 0 || info.l4Offset < 0) return false;
  const at = info.l4Offset + field;
  let c = ~fold(sumWords(p, info.l4Offset, p.length, 0)) & 0xffff;
  if (c === 0 && info.protocol === PROTO_UDP) c = 0xffff; // 0 means "no checksum" in UDP
  p[at] = c >> 8;
  p[at + 1] = c & 0xff;
  return true;
}

/**
 * Cuts a TCP super-packet into segments of `gsoSize` payload bytes (see the
 * file comment), each with full checksums, appended to `out`. `info` must
 * come from a successful inspectPacket of `p`, and the packet must have
 * passed checkOffload. Returns false (and appends nothing) when it is not
 * an unfragmented TCP packet.
 */
export function segmentTcp(p: Buffer, info: PacketInfo, gsoSize: number, out: Buffer[]): boolean {
  const l4 = info.l4Offset;
  if (info.protocol !== PROTO_TCP || l4 < 0 || info.fragment || gsoSize < 1) return false;
  const hdrLen = l4 + ((p[l4 + 12] as number) >> 4) * 4;
  const total = p.length - hdrLen;
  const flags = p[l4 + 13] as number;
  const seq = p.readUInt32BE(l4 + 4);
  const id = info.version === 4 ? p.readUInt16BE(4) : 0;
  const count = Math.max(1, Math.ceil(total / gsoSize));
  for (let i = 0; i < count; i++) {
    const from = hdrLen + i * gsoSize;
    const len = Math.min(gsoSize, p.length - from);
    const s = Buffer.allocUnsafe(hdrLen + len);
    p.copy(s, 0, 0, hdrLen);
    p.copy(s, hdrLen, from, from + len);
    if (info.version === 4) {
      s.writeUInt16BE(hdrLen + len, 2);
      s.writeUInt16BE((id + i) & 0xffff, 4);
      s[10] = 0;
      s[11] = 0;
      s.writeUInt16BE(~fold(sumWords(s, 0, l4, 0)) & 0xffff, 10);
    } else s.writeUInt16BE(hdrLen - 40 + len, 4);
    s.writeUInt32BE((seq + i * gsoSize) >>> 0, l4 + 4);
    let f = flags;
    if (i < count - 1) f &= ~0x09; // FIN, PSH: last segment only
    if (i > 0) f &= ~0x80; // CWR: first segment only
    s[l4 + 13] = f;
    s[l4 + 16] = 0;
    s[l4 + 17] = 0;
    const c = ~fold(sumWords(s, l4, s.length, pseudoSum(s, info, s.length - l4))) & 0xffff;
    s.writeUInt16BE(c, l4 + 16);
    out.push(s);
  }
  return true;
}

/**
 * Turns an offloaded packet into plain ones (full checksums, each within the
 * MTU) appended to `out`: cut when it is a super-packet, checksum completed
 * in place when it is partial, as it is otherwise. Returns false (nothing
 * appended) when the metadata does not fit the packet.
 */
export function toPlainPackets(p: Buffer, meta: number, info: PacketInfo, out: Buffer[]): boolean {
  if ((meta & OFF_GSO) !== 0) return segmentTcp(p, info, meta & 0xffff, out);
  if ((meta & OFF_CSUM) !== 0 && !completeChecksum(p, info)) return false;
  out.push(p);
  return true;
}

/** The part of a Session a packet is sent on. */
export interface DatagramSink {
  sendDatagram(flow: number, payload: Buffer): boolean;
  /** The largest datagram that leaves unreliably now (a udp path); undefined when every path is a stream. */
  readonly datagramRoom?: number | undefined;
}

/**
 * Sends one packet to a peer. An offloaded one (`meta` ≠ 0) goes whole on
 * `gsoFlow` when the peer takes offload and it is within the wire bounds
 * (MAX_SUPER_PACKET, at most MAX_GSO_SEGS segments even counting its
 * headers as payload), else cut and checksummed into plain packets on
 * `flow`. Over a udp path (the sink's `datagramRoom`) one too large to
 * leave as a single unreliable datagram is cut too: whole, it would ride
 * the reliable stream — TCP inside a retransmitting carrier.
 * `inPlace`: `p` has room for the wire header in front of it (see
 * gsoDatagramInPlace). Returns true when every datagram was accepted.
 */
export function sendPacket(sink: DatagramSink, flow: number, gsoFlow: number, p: Buffer, meta: number, peerOffload: boolean, inPlace: boolean, info: PacketInfo): boolean {
  if (meta === 0) return sink.sendDatagram(flow, p);
  const room = sink.datagramRoom;
  if (peerOffload && p.length <= MAX_SUPER_PACKET && (room === undefined || p.length + GSO_WIRE_HEADER <= room) && ((meta & OFF_GSO) === 0 || Math.ceil(p.length / (meta & 0xffff)) <= MAX_GSO_SEGS)) {
    return sink.sendDatagram(gsoFlow, inPlace ? gsoDatagramInPlace(p, meta) : gsoDatagram(p, meta));
  }
  const plain: Buffer[] = [];
  if (inspectPacket(p, info) !== undefined || !toPlainPackets(p, meta, info, plain)) return false;
  let ok = true;
  for (const s of plain) ok = sink.sendDatagram(flow, s) && ok;
  return ok;
}
