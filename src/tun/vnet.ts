/**
 * Checksum and segmentation offload on the VPN data path (GSO/GRO, as
 * wireguard-go and tailscale do it).
 *
 * Without offload every 1400-byte TCP segment costs one TUN read, one
 * datagram, one TUN write and a trip through the kernel's stack on each
 * side. A TUN opened with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM |
 * TUN_F_TSO4 | TUN_F_TSO6) hands over TCP "super-packets" of up to 64 KiB
 * that the kernel never segmented, each behind a 10-byte virtio_net_hdr; we
 * carry one as one datagram, and the far side writes it with the same
 * metadata so that its kernel delivers it whole (or segments it on the way
 * out when it forwards it). Small packets still come one per read, but with
 * the L4 checksum left "partial" (only the pseudo-header sum filled in).
 *
 * struct virtio_net_hdr, host byte order (little-endian on every host Node
 * supports for TUN; see HOST_LE):
 * ```
 * +-----------+-------------+--------------+--------------+----------------+-----------------+
 * | flags u8  | gso_type u8 | hdr_len u16  | gso_size u16 | csum_start u16 | csum_offset u16 |
 * +-----------+-------------+--------------+--------------+----------------+-----------------+
 *   1 NEEDS_CSUM  0 none, 1 TCPv4, 4 TCPv6 (0x80 ECN, 3/5 UDP: never asked for here)
 * ```
 *
 * Inside polytun a packet's offload state is one number, `meta`:
 * ```
 *   bits 0-15  gso_size (segment payload bytes; 0 unless OFF_GSO)
 *   bit 16     OFF_CSUM  the L4 (TCP/UDP) checksum is partial
 *   bit 17     OFF_GSO   a TCP super-packet, to be cut into gso_size segments
 * ```
 * and on the wire (flow VPN_GSO_FLOW, only between peers that both said they
 * take it, see vpn-wire.ts) a datagram is
 * ```
 * +----------------------+---------------+-----------------------------+
 * | flags u8 (meta >>16) | gso_size u16  | IP packet (≤ MAX_SUPER_PACKET) |
 * +----------------------+---------------+-----------------------------+
 * ```
 * A receiver checks a super-packet as strictly as a plain one (inspectPacket,
 * source = lease, policy) and also its metadata (checkOffload): known flag
 * bits only, GSO only for unfragmented TCP with a partial checksum, every
 * segment within the MTU, at most MAX_GSO_SEGS segments, at most
 * MAX_SUPER_PACKET bytes. A peer or device that cannot take offloaded
 * packets gets them cut and checksummed in userspace (src/tun/gso.ts).
 */
import { endianness } from 'node:os';
import type { PacketInfo } from './packet.js';
import { PROTO_TCP, PROTO_UDP } from './packet.js';

/** sizeof(struct virtio_net_hdr): what precedes every packet on a vnet TUN. */
export const VNET_HDR_LEN = 10;

/** TUNSETOFFLOAD bits (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;

const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;

/** The L4 checksum is partial: it holds only the pseudo-header sum. */
export const OFF_CSUM = 0x10000;
/** A TCP super-packet: cut into segments of `meta & 0xffff` payload bytes. */
export const OFF_GSO = 0x20000;
const OFF_KNOWN = OFF_CSUM | OFF_GSO;

/** Bytes of the wire header in front of a VPN_GSO_FLOW packet. */
export const GSO_WIRE_HEADER = 3;
/**
 * Largest super-packet carried: a datagram payload is at most 65527 bytes
 * (record 65535 − record type 1 − DATAGRAM header 7), minus the wire header.
 */
export const MAX_SUPER_PACKET = 65535 - 1 - 7 - GSO_WIRE_HEADER;
/** Most segments in one super-packet (bounds what one datagram makes a kernel do). */
export const MAX_GSO_SEGS = 64;
/** gso_max_size set on offload TUNs: the kernel's super-packets then fit MAX_SUPER_PACKET. */
export const TUN_GSO_MAX_SIZE = 65000;

/** virtio_net_hdr fields are in host byte order (TUN has no cross-endian mode by default). */
const HOST_LE = endianness() === 'LE';

function rd16(b: Uint8Array, off: number): number {
  return HOST_LE ? (b[off] as number) | ((b[off + 1] as number) << 8) : ((b[off] as number) << 8) | (b[off + 1] as number);
}

function wr16(b: Uint8Array, off: number, v: number): void {
  if (HOST_LE) {
    b[off] = v & 0xff;
    b[off + 1] = v >> 8;
  } else {
    b[off] = v >> 8;
    b[off + 1] = v & 0xff;
  }
}

/**
 * The meta of a packet the kernel read out behind the header at `off`, or
 * -1 for an offload we never asked for (UDP segmentation, ECN): the caller
 * then cuts the packet itself.
 */
export function metaFromVnetHdr(b: Uint8Array, off: number): number {
  const flags = b[off] as number;
  const type = b[off + 1] as number;
  const csum = (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 ? OFF_CSUM : 0;
  if (type === GSO_NONE) return csum;
  if ((type === GSO_TCPV4 || type === GSO_TCPV6) && csum !== 0) {
    const size = rd16(b, off + 4);
    return size > 0 ? OFF_GSO | OFF_CSUM | size : -1;
  }
  return -1;
}

/**
 * Writes the virtio_net_hdr for packet `p` with `meta` at `out[off…off+10)`.
 * `info` must come from a successful inspectPacket of `p`, and `meta` must
 * have passed checkOffload. Returns false when `meta` does not fit the packet.
 */
export function writeVnetHdr(out: Uint8Array, off: number, p: Uint8Array, meta: number, info: PacketInfo): boolean {
  out.fill(0, off, off + VNET_HDR_LEN);
  if (meta === 0) return true;
  const l4 = info.l4Offset;
  if (l4 < 0 || (info.protocol !== PROTO_TCP && info.protocol !== PROTO_UDP)) return false;
  const csumOffset = info.protocol === PROTO_TCP ? 16 : 6;
  let hdrLen = l4 + csumOffset + 2;
  if ((meta & OFF_GSO) !== 0) {
    if (info.protocol !== PROTO_TCP) return false;
    out[off + 1] = info.version === 4 ? GSO_TCPV4 : GSO_TCPV6;
    hdrLen = l4 + ((p[l4 + 12] as number) >> 4) * 4;
    wr16(out, off + 4, meta & 0xffff);
  }
  out[off] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  wr16(out, off + 2, hdrLen);
  wr16(out, off + 6, l4);
  wr16(out, off + 8, csumOffset);
  return true;
}

/** Why checkOffload refused a packet (counted as the router's reasons of the same name). */
export type OffloadProblem = 'malformed' | 'oversize';

/**
 * Checks the offload metadata of a packet from a peer. `info` must come from
 * a successful inspectPacket of `p`; `mtu` is the TUN MTU, which a plain
 * packet and each segment of a super-packet must fit.
 */
export function checkOffload(p: Uint8Array, info: PacketInfo, meta: number, mtu: number): OffloadProblem | undefined {
  if ((meta & ~(OFF_KNOWN | 0xffff)) !== 0) return 'malformed';
  if ((meta & OFF_GSO) === 0) {
    if ((meta & 0xffff) !== 0) return 'malformed';
    if (p.length > mtu) return 'oversize';
  }
  if (meta === 0) return undefined;
  // A partial checksum needs the whole upper-layer header of TCP or UDP.
  if (info.l4Offset < 0 || info.fragment || (info.protocol !== PROTO_TCP && info.protocol !== PROTO_UDP)) return 'malformed';
  if ((meta & OFF_GSO) === 0) return undefined;
  if ((meta & OFF_CSUM) === 0 || info.protocol !== PROTO_TCP) return 'malformed';
  const gsoSize = meta & 0xffff;
  const hdrLen = info.l4Offset + ((p[info.l4Offset + 12] as number) >> 4) * 4;
  if (gsoSize === 0) return 'malformed';
  if (p.length > MAX_SUPER_PACKET || hdrLen + gsoSize > mtu) return 'oversize';
  if (Math.ceil((p.length - hdrLen) / gsoSize) > MAX_GSO_SEGS) return 'oversize';
  return undefined;
}

/**
 * A VPN_GSO_FLOW datagram carrying `p`, built in place: the 3 bytes before
 * `p` in its ArrayBuffer are overwritten with the wire header, so `p` must
 * come from TunDevice.onPackets on an offload device (whose packets keep
 * their vnet header's room in front of them) or be the packet of a received
 * VPN_GSO_FLOW datagram (whose own header sits there).
 */
export function gsoDatagramInPlace(p: Buffer, meta: number): Buffer {
  if (p.byteOffset < GSO_WIRE_HEADER) throw new RangeError('gsoDatagramInPlace: no room in front of the packet');
  const d = Buffer.from(p.buffer, p.byteOffset - GSO_WIRE_HEADER, p.length + GSO_WIRE_HEADER);
  d[0] = meta >>> 16;
  d[1] = (meta >> 8) & 0xff;
  d[2] = meta & 0xff;
  return d;
}

/** A VPN_GSO_FLOW datagram carrying a copy of `p`. */
export function gsoDatagram(p: Uint8Array, meta: number): Buffer {
  const d = Buffer.allocUnsafe(p.length + GSO_WIRE_HEADER);
  d[0] = meta >>> 16;
  d[1] = (meta >> 8) & 0xff;
  d[2] = meta & 0xff;
  d.set(p, GSO_WIRE_HEADER);
  return d;
}

/** The meta of a VPN_GSO_FLOW datagram (its packet is `d.subarray(GSO_WIRE_HEADER)`), or -1 when too short. */
export function metaOfGsoDatagram(d: Uint8Array): number {
  if (d.length < GSO_WIRE_HEADER) return -1;
  return (((d[0] as number) << 16) | ((d[1] as number) << 8) | (d[2] as number)) >>> 0;
}
