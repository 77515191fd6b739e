/**
 * The VPN protocol spoken over a session: one control stream and one
 * datagram flow.
 *
 * Control stream. The client opens a session stream whose OPEN payload is
 *
 * ```
 * +------------+-------------+-----------+------------------------+
 * | kind 0x10  | version u8  | flags u8  | items (optional) …     |     version 1
 * +------------+-------------+-----------+------------------------+
 *   flags: 0x01 OPEN_OFFLOAD  the client takes VPN_GSO_FLOW datagrams;
 *          other bits reserved (0), ignored by servers
 *   items: ROUTE4 / ROUTE6 as in CONFIG below: the client's own routes
 *          (`--route`), so that the server can refuse, with a reason, a
 *          route its destination policy would drop packet by packet.
 *          Unknown items are skipped. (Servers before this read only the
 *          3-byte form: a client sends items only when it has routes.)
 * ```
 *
 * (kind bytes 0x01-0x03 belong to the proxy protocol, src/proxy/wire.ts).
 * The server answers with messages on that stream, each
 *
 * ```
 * +----------+--------------+---------------------+
 * | type u8  | length u16   | body (length bytes) |      body ≤ 4096 bytes
 * +----------+--------------+---------------------+
 * CONFIG  0x01  body = items | tag u8 | len u8 | value … |, in any order:
 *               0x01 ADDR4  | IPv4 (4) | prefix u8 |     the client's lease
 *               0x02 ADDR6  | IPv6 (16) | prefix u8 |
 *               0x03 GW4    | IPv4 (4) |                the server's TUN address
 *               0x04 GW6    | IPv6 (16) |
 *               0x05 MTU    | u16 |
 *               0x06 ROUTE4 | IPv4 (4) | prefix u8 |    routes pushed by the server
 *               0x07 ROUTE6 | IPv6 (16) | prefix u8 |
 *               0x08 DNS4   | IPv4 (4) |                DNS servers pushed
 *               0x09 DNS6   | IPv6 (16) |
 *               0x0A OFFLOAD | flags u8 |          0x01: the server takes VPN_GSO_FLOW
 *               unknown tags are skipped (a newer server may add items)
 * REFUSE  0x02  body = | code u8 | reason utf-8 … |
 * ```
 *
 * The stream lives as long as the client's VPN: the client ending it (or the
 * session closing) releases the lease on the server. The client sends
 * nothing on it; a server may send a new CONFIG at any time.
 *
 * Datagram flow VPN_FLOW (0xFFFF0000) carries IP packets, one per datagram,
 * both ways, never on a reliable stream. Flow VPN_GSO_FLOW (0xFFFF0001)
 * carries offloaded packets (TCP super-packets of up to 64 KiB, partial
 * checksums) behind a 3-byte header (src/tun/vnet.ts); a side sends on it
 * only when the other said it takes it (OPEN_OFFLOAD / the OFFLOAD item),
 * so peers without it, older ones included, only ever see VPN_FLOW. The session packs every datagram
 * queued in one tick into one record (one AEAD call for a whole TUN read
 * batch) and drops, never queues without bound, when the carrier is slow.
 *
 * MTU. Each record on a stream carrier costs record header 2 + AEAD tag 16 +
 * record type 1, and each packet in it a DATAGRAM frame header 7 (type u8,
 * flow u32, len u16): 26 bytes for a lone packet. On TCP carriers the kernel
 * segments the byte stream, so the TUN MTU is not bounded by the path; 1400
 * is the default because the packets leave the server as they are, and 1400
 * passes any ordinary 1500-byte Internet path (and PPPoE's 1492) with room
 * to spare, and also fits one packet-carrier datagram (1500 − IPv6 40 − UDP
 * 8 − 26 − packet-carrier header) should a UDP carrier be used later.
 */
import { ChunkList } from '../core/chunks.js';
import { LimitError, ProtocolError } from '../core/errors.js';
import { formatIpBytes, parseIpBytes } from './ipaddr.js';

/** OPEN payload kind of the VPN control stream. */
export const OPEN_VPN = 0x10;
/** Protocol version this code speaks. */
export const VPN_VERSION = 1;
/** The datagram flow id reserved for IP packets. */
export const VPN_FLOW = 0xffff0000;
/** The datagram flow of offloaded IP packets (see the file comment). */
export const VPN_GSO_FLOW = 0xffff0001;
/** OPEN flag: the client takes VPN_GSO_FLOW datagrams. */
export const OPEN_OFFLOAD = 0x01;
/** Default TUN MTU on stream carriers (see the file comment). */
export const DEFAULT_VPN_MTU = 1400;
/** Bytes a lone packet costs on a stream carrier: record header 2 + tag 16 + record type 1 + frame header 7. */
export const STREAM_RECORD_OVERHEAD = 2 + 16 + 1 + 7;

/**
 * The TUN MTU for a carrier kind. Stream carriers (TCP, TLS, WebSocket):
 * DEFAULT_VPN_MTU, since the byte stream is segmented by the kernel. Packet
 * carriers (UDP): one IP packet plus its framing must fit one datagram on a
 * path of `pathMtu`, i.e. pathMtu − IPv6 40 − UDP 8 − STREAM_RECORD_OVERHEAD
 * − `carrierHeader` (the packet carrier's own header), and never more than
 * the stream default.
 */
export function vpnMtuFor(kind: 'stream' | 'packet', pathMtu = 1500, carrierHeader = 0): number {
  if (kind === 'stream') return DEFAULT_VPN_MTU;
  return Math.min(DEFAULT_VPN_MTU, pathMtu - 40 - 8 - STREAM_RECORD_OVERHEAD - carrierHeader);
}

export const MSG_CONFIG = 0x01;
export const MSG_REFUSE = 0x02;
const MAX_BODY = 4096;

const TAG_ADDR4 = 0x01;
const TAG_ADDR6 = 0x02;
const TAG_GW4 = 0x03;
const TAG_GW6 = 0x04;
const TAG_MTU = 0x05;
const TAG_ROUTE4 = 0x06;
const TAG_ROUTE6 = 0x07;
const TAG_DNS4 = 0x08;
const TAG_DNS6 = 0x09;
const TAG_OFFLOAD = 0x0a;

/** Why a server refused a VPN request. */
export const VpnRefuseCode = {
  /** The server runs no VPN. */
  disabled: 1,
  /** The address pool has no free address. */
  poolExhausted: 2,
  /** This session already has a VPN stream. */
  duplicate: 3,
  /** The client speaks a version the server does not. */
  unsupportedVersion: 4,
  /** Anything else on the server side. */
  internal: 5,
  /** A client route leads where the server's destination policy refuses (the reason names it and the flag). */
  routeRefused: 6,
} as const;

/** An address with its prefix length, e.g. `{ ip: '10.8.0.2', prefix: 24 }`. */
export interface IpPrefix {
  ip: string;
  prefix: number;
}

/** What the server tells a client. */
export interface VpnConfig {
  addr4: IpPrefix;
  addr6?: IpPrefix;
  gw4: string;
  gw6?: string;
  mtu: number;
  /** CIDRs the server asks the client to route into the tunnel. */
  routes: string[];
  /** DNS servers the server suggests. */
  dns: string[];
  /** The server takes VPN_GSO_FLOW datagrams. @default false */
  offload?: boolean;
}

/** A decoded server message. */
export type VpnMessage = { type: 'config'; config: VpnConfig } | { type: 'refuse'; code: number; reason: string };

/** The control stream's OPEN payload; `flags`: OPEN_OFFLOAD or 0; `routes`: the client's own CIDRs. */
export function encodeVpnOpen(version = VPN_VERSION, flags = 0, routes: readonly string[] = []): Buffer {
  const items: number[] = [];
  for (const r of routes) cidrItem(items, r, TAG_ROUTE4, TAG_ROUTE6);
  return Buffer.from([OPEN_VPN, version, flags, ...items]);
}

/** True when an OPEN payload asks for the VPN (first byte 0x10). */
export function isVpnOpen(payload: Buffer): boolean {
  return payload.length > 0 && payload[0] === OPEN_VPN;
}

/** Decodes a VPN OPEN payload. @throws ProtocolError when malformed */
export function decodeVpnOpen(payload: Buffer): { version: number; flags: number; routes: string[] } {
  if (payload.length < 3 || payload[0] !== OPEN_VPN) throw new ProtocolError('malformed VPN open payload');
  const routes: string[] = [];
  for (let off = 3; off < payload.length;) {
    const tag = payload[off] as number;
    const len = payload[off + 1];
    if (len === undefined || off + 2 + len > payload.length) throw new ProtocolError('truncated VPN open item');
    const v = payload.subarray(off + 2, off + 2 + len);
    off += 2 + len;
    if (tag !== TAG_ROUTE4 && tag !== TAG_ROUTE6) continue; // unknown item: skipped
    const n = tag === TAG_ROUTE4 ? 4 : 16;
    const prefix = v[n];
    if (len !== n + 1 || prefix === undefined || prefix > n * 8) throw new ProtocolError(`malformed route in the VPN open payload`);
    routes.push(`${formatIpBytes(v.subarray(0, n))}/${prefix}`);
  }
  return { version: payload[1] as number, flags: payload[2] as number, routes };
}

function ipItem(out: number[], tag: number, ip: string, prefix: number | undefined, family: 4 | 6): void {
  const b = parseIpBytes(ip);
  if (b === undefined || b.length !== (family === 4 ? 4 : 16)) throw new ProtocolError(`not an IPv${family} address: ${ip}`);
  out.push(tag, b.length + (prefix === undefined ? 0 : 1), ...b);
  if (prefix !== undefined) out.push(prefix);
}

function cidrItem(out: number[], cidr: string, v4Tag: number, v6Tag: number): void {
  const [ip = '', prefixText = ''] = cidr.split('/');
  const fam = ip.includes(':') ? 6 : 4;
  ipItem(out, fam === 4 ? v4Tag : v6Tag, ip, Number(prefixText), fam);
}

/** A CONFIG message, ready to write on the stream. @throws ProtocolError / LimitError on bad input */
export function encodeConfig(c: VpnConfig): Buffer {
  const items: number[] = [];
  ipItem(items, TAG_ADDR4, c.addr4.ip, c.addr4.prefix, 4);
  if (c.addr6) ipItem(items, TAG_ADDR6, c.addr6.ip, c.addr6.prefix, 6);
  ipItem(items, TAG_GW4, c.gw4, undefined, 4);
  if (c.gw6 !== undefined) ipItem(items, TAG_GW6, c.gw6, undefined, 6);
  items.push(TAG_MTU, 2, c.mtu >> 8, c.mtu & 0xff);
  for (const r of c.routes) cidrItem(items, r, TAG_ROUTE4, TAG_ROUTE6);
  for (const d of c.dns) ipItem(items, d.includes(':') ? TAG_DNS6 : TAG_DNS4, d, undefined, d.includes(':') ? 6 : 4);
  if (c.offload) items.push(TAG_OFFLOAD, 1, 0x01);
  return message(MSG_CONFIG, Buffer.from(items));
}

/** A REFUSE message. */
export function encodeRefuse(code: number, reason: string): Buffer {
  const text = Buffer.from(reason.slice(0, 200));
  return message(MSG_REFUSE, Buffer.concat([Buffer.from([code]), text]));
}

function message(type: number, body: Buffer): Buffer {
  if (body.length > MAX_BODY) throw new LimitError('vpn.message', `VPN message body of ${body.length} bytes exceeds ${MAX_BODY}`);
  const out = Buffer.allocUnsafe(3 + body.length);
  out[0] = type;
  out.writeUInt16BE(body.length, 1);
  body.copy(out, 3);
  return out;
}

function decodeConfig(body: Buffer): VpnConfig {
  const c: Partial<VpnConfig> & { routes: string[]; dns: string[] } = { routes: [], dns: [] };
  let off = 0;
  while (off < body.length) {
    if (off + 2 > body.length) throw new ProtocolError('truncated VPN config item');
    const tag = body[off] as number;
    const len = body[off + 1] as number;
    const v = body.subarray(off + 2, off + 2 + len);
    if (v.length !== len) throw new ProtocolError('truncated VPN config item');
    off += 2 + len;
    const want = (n: number): void => {
      if (len !== n) throw new ProtocolError(`VPN config item 0x${tag.toString(16)} has length ${len}, expected ${n}`);
    };
    const prefixed = (n: number): IpPrefix => {
      want(n + 1);
      const prefix = v[n] as number;
      if (prefix > n * 8) throw new ProtocolError(`VPN config prefix /${prefix} too long`);
      return { ip: formatIpBytes(v.subarray(0, n)), prefix };
    };
    switch (tag) {
      case TAG_ADDR4: c.addr4 = prefixed(4); break;
      case TAG_ADDR6: c.addr6 = prefixed(16); break;
      case TAG_GW4: want(4); c.gw4 = formatIpBytes(v); break;
      case TAG_GW6: want(16); c.gw6 = formatIpBytes(v); break;
      case TAG_MTU: want(2); c.mtu = v.readUInt16BE(0); break;
      case TAG_ROUTE4:
      case TAG_ROUTE6: {
        const p = prefixed(tag === TAG_ROUTE4 ? 4 : 16);
        c.routes.push(`${p.ip}/${p.prefix}`);
        break;
      }
      case TAG_DNS4: want(4); c.dns.push(formatIpBytes(v)); break;
      case TAG_DNS6: want(16); c.dns.push(formatIpBytes(v)); break;
      case TAG_OFFLOAD: want(1); c.offload = ((v[0] as number) & 0x01) !== 0; break;
      default: break; // unknown item: skipped for forward compatibility
    }
  }
  if (c.addr4 === undefined || c.gw4 === undefined || c.mtu === undefined) throw new ProtocolError('VPN config lacks the address, gateway or MTU');
  if (c.mtu < 576 || c.mtu > 65535) throw new ProtocolError(`VPN config MTU ${c.mtu} out of range`);
  const out: VpnConfig = { addr4: c.addr4, gw4: c.gw4, mtu: c.mtu, routes: c.routes, dns: c.dns };
  if (c.addr6) out.addr6 = c.addr6;
  if (c.gw6 !== undefined) out.gw6 = c.gw6;
  if (c.offload) out.offload = true;
  return out;
}

/**
 * Incremental decoder of server messages: feed it what the control stream
 * delivers, in any chunking; it returns the whole messages seen so far.
 */
export class VpnMessageDecoder {
  private readonly input = new ChunkList();

  /** @throws ProtocolError on an unknown type, an oversize or malformed body */
  push(chunk: Buffer): VpnMessage[] {
    this.input.push(chunk);
    const out: VpnMessage[] = [];
    while (this.input.length >= 3) {
      const type = this.input.byteAt(0);
      const len = (this.input.byteAt(1) << 8) | this.input.byteAt(2);
      if (type !== MSG_CONFIG && type !== MSG_REFUSE) throw new ProtocolError(`unknown VPN message type 0x${type.toString(16)}`);
      if (len > MAX_BODY) throw new ProtocolError(`VPN message body of ${len} bytes exceeds ${MAX_BODY}`);
      if (this.input.length < 3 + len) break;
      this.input.skip(3);
      const body = this.input.read(len);
      if (type === MSG_CONFIG) out.push({ type: 'config', config: decodeConfig(body) });
      else {
        if (len < 1) throw new ProtocolError('empty VPN refuse message');
        out.push({ type: 'refuse', code: body[0] as number, reason: body.toString('utf8', 1) });
      }
    }
    return out;
  }

  /** Bytes of an incomplete message still held. */
  get buffered(): number {
    return this.input.length;
  }
}
