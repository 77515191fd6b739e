/**
 * IP addresses as raw bytes (4 or 16), the form they have inside packets and
 * on the VPN control stream, with strict text parsing, RFC 5952 formatting
 * and the little CIDR arithmetic the address pool needs.
 *
 * Parsing is strict on purpose (dotted quads without leading zeros, no zone
 * ids, no short forms): these strings come from config and from the wire.
 */
import { ConfigError } from '../core/errors.js';
import { formatIpv6Groups } from '../core/address.js';
import { parseIpv4, parseIpv6Groups } from '../core/ip.js';

/** The bytes of an IPv4 (4) or IPv6 (16) address, or undefined when `text` is not one. */
export function parseIpBytes(text: string): Buffer | undefined {
  if (text.includes(':')) {
    const groups = parseIpv6Groups(text);
    if (groups === undefined) return undefined;
    const out = Buffer.alloc(16);
    for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i] as number, 2 * i);
    return out;
  }
  const v4 = parseIpv4(text);
  if (v4 === undefined) return undefined;
  const out = Buffer.alloc(4);
  out.writeUInt32BE(v4, 0);
  return out;
}

/** Text of 4 or 16 address bytes; IPv6 per RFC 5952 (lower case, longest zero run as `::`). */
export function formatIpBytes(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] as number) << 8) | (b[i + 1] as number));
  return formatIpv6Groups(groups);
}

/** A parsed CIDR block. `bytes` is the network address (host bits zero). */
export interface IpCidr {
  readonly family: 4 | 6;
  readonly bytes: Buffer;
  readonly prefix: number;
}

/**
 * Parses `ADDR/PREFIX`. With `strict` (the default) host bits must be zero:
 * `10.0.0.5/24` is refused with a hint, since it usually means a typo.
 * @throws ConfigError naming `where`
 */
export function parseIpCidr(text: string, where: string, strict = true): IpCidr {
  const slash = text.indexOf('/');
  const bytes = parseIpBytes(slash < 0 ? text : text.slice(0, slash));
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  if (bytes === undefined || prefixText === undefined || !/^\d{1,3}$/.test(prefixText)) {
    throw new ConfigError(where, `expected an IPv4 or IPv6 CIDR like 10.8.0.0/24, got ${JSON.stringify(text)}`);
  }
  const family = bytes.length === 4 ? 4 : 6;
  const prefix = Number(prefixText);
  if (prefix > bytes.length * 8) throw new ConfigError(where, `prefix /${prefix} is too long for IPv${family} in ${text}`);
  const net = maskBytes(bytes, prefix);
  if (strict && !net.equals(bytes)) throw new ConfigError(where, `${text} has host bits set; did you mean ${formatIpBytes(net)}/${prefix}?`);
  return { family, bytes: net, prefix };
}

/** `bytes` with everything past `prefix` bits zeroed (a copy). */
export function maskBytes(bytes: Uint8Array, prefix: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = (out[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** True when the address at `buf[off..off+len)` lies in `cidr` (same family assumed by length). */
export function cidrContains(cidr: IpCidr, buf: Uint8Array, off = 0): boolean {
  const full = cidr.prefix >> 3;
  for (let i = 0; i < full; i++) if (buf[off + i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((buf[off + full] as number) & mask) === cidr.bytes[full];
}

/** The address `n` hosts after the network address of `cidr`. */
export function cidrHost(cidr: IpCidr, n: bigint): Buffer {
  const out = Buffer.from(cidr.bytes);
  let carry = n;
  for (let i = out.length - 1; i >= 0 && carry > 0n; i--) {
    const v = BigInt(out[i] as number) + (carry & 0xffn);
    out[i] = Number(v & 0xffn);
    carry = (carry >> 8n) + (v >> 8n);
  }
  return out;
}

/** How many addresses `cidr` spans (2^(bits - prefix)). */
export function cidrSize(cidr: IpCidr): bigint {
  return 1n << BigInt(cidr.bytes.length * 8 - cidr.prefix);
}

/** `ADDR/PREFIX` text of a CIDR. */
export function formatCidr(cidr: IpCidr): string {
  return `${formatIpBytes(cidr.bytes)}/${cidr.prefix}`;
}
