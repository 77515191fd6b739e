/**
 * IP addresses and CIDR blocks, parsed once into integers so that matching is a
 * handful of integer compares (the egress policy runs on every dial).
 *
 * - IPv4 is one unsigned 32-bit number.
 * - IPv6 is four unsigned 32-bit words, most significant first. Four u32
 *   compares beat BigInt arithmetic by a wide margin in V8 and allocate nothing.
 *
 * Normalisation (why: SSRF filters are classically bypassed by writing an IPv4
 * address in an IPv6 form that the kernel still routes to the IPv4 host):
 * - IPv4-mapped `::ffff:a.b.c.d` becomes the IPv4 address a.b.c.d.
 * - IPv4-compatible `::a.b.c.d` (deprecated, RFC 4291 §2.5.5.1) becomes a.b.c.d,
 *   except `::` and `::1`, which keep their IPv6 meaning.
 *
 * Parsing is strict: dotted quads are decimal without leading zeros (`010.0.0.1`
 * is refused, because inet_aton would read it as octal 8.0.0.1), and no short
 * forms (`10.1`, `2130706433`) are accepted.
 */
import { ConfigError } from '../core/errors.js';
import { formatIpv6Groups } from '../core/address.js';
import { parseIpv4, parseIpv6Groups } from '../core/ip.js';

/** An IPv4 address as an unsigned 32-bit integer. */
export interface Ipv4 {
  readonly family: 4;
  readonly v4: number;
}

/** An IPv6 address as four unsigned 32-bit words, most significant first. */
export interface Ipv6 {
  readonly family: 6;
  readonly words: readonly [number, number, number, number];
}

/** A parsed, normalised IP address. */
export type Ip = Ipv4 | Ipv6;

type Words = [number, number, number, number];

function parseV6Raw(input: string): Words | undefined {
  let s = input;
  const pct = s.indexOf('%');
  if (pct >= 0) {
    // Zone id (fe80::1%eth0): the scope does not change which range the address is in.
    if (pct === s.length - 1) return undefined;
    s = s.slice(0, pct);
  }
  const groups = parseIpv6Groups(s);
  if (groups === undefined) return undefined;
  const g = (i: number): number => groups[i] ?? 0;
  return [
    ((g(0) << 16) | g(1)) >>> 0,
    ((g(2) << 16) | g(3)) >>> 0,
    ((g(4) << 16) | g(5)) >>> 0,
    ((g(6) << 16) | g(7)) >>> 0,
  ];
}

/** True when the words are an IPv4-mapped or IPv4-compatible address that we fold to IPv4. */
function foldsToV4(w: Words): boolean {
  if (w[0] !== 0 || w[1] !== 0) return false;
  if (w[2] === 0xffff) return true; // ::ffff:a.b.c.d
  return w[2] === 0 && w[3] > 1; // ::a.b.c.d, but not :: or ::1
}

/**
 * Parses an IPv4 or IPv6 literal (optionally in `[brackets]`, optionally with
 * an IPv6 zone id) and normalises mapped/compatible IPv6 forms to IPv4.
 * Returns undefined for anything that is not a strict IP literal.
 */
export function parseIp(text: string): Ip | undefined {
  let s = text;
  if (s.length > 2 && s.charCodeAt(0) === 0x5b /* [ */ && s.charCodeAt(s.length - 1) === 0x5d /* ] */) {
    s = s.slice(1, -1);
  }
  if (s.includes(':')) {
    const w = parseV6Raw(s);
    if (w === undefined) return undefined;
    if (foldsToV4(w)) return { family: 4, v4: w[3] };
    return { family: 6, words: w };
  }
  const v4 = parseIpv4(s);
  return v4 === undefined ? undefined : { family: 4, v4 };
}

/** True if `text` is a strict IPv4 or IPv6 literal (see {@link parseIp}). */
export function isIpLiteral(text: string): boolean {
  return parseIp(text) !== undefined;
}

/** Builds an IPv4 value from its u32 form. */
export function ipv4(v4: number): Ipv4 {
  return { family: 4, v4: v4 >>> 0 };
}

/** Formats a u32 as a dotted quad. */
export function formatV4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Formats an address canonically (RFC 5952 for IPv6: lowercase, longest zero run as `::`). */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) return formatV4(ip.v4);
  const g: number[] = [];
  for (const w of ip.words) g.push(w >>> 16, w & 0xffff);
  return formatIpv6Groups(g);
}

/**
 * If `ip` is an IPv6 address that embeds an IPv4 destination which a
 * translator or relay will deliver to, returns that IPv4 address:
 * - NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): last 32 bits;
 * - IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765 SIIT): last 32 bits;
 * - 6to4 `2002:V4ADDR::/48` (RFC 3056): bits 16..47.
 */
export function embeddedIpv4(ip: Ip): Ipv4 | undefined {
  if (ip.family !== 6) return undefined;
  const [w0, w1, w2, w3] = ip.words;
  if (w0 === 0x0064ff9b && w1 === 0 && w2 === 0) return ipv4(w3);
  if (w0 === 0 && w1 === 0 && w2 === 0xffff0000) return ipv4(w3);
  if (w0 >>> 16 === 0x2002) return ipv4(((w0 & 0xffff) << 16) | (w1 >>> 16));
  return undefined;
}

function maskV4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function maskWord(prefix: number, wordIndex: number): number {
  const bits = Math.max(0, Math.min(32, prefix - wordIndex * 32));
  return maskV4(bits);
}

/** One CIDR block (IPv4 or IPv6), immutable. Construct with {@link parseCidr}. */
export class Cidr {
  /** Address family of the block. */
  readonly family: 4 | 6;
  /** Prefix length (0–32 for IPv4, 0–128 for IPv6). */
  readonly prefix: number;
  readonly #net: Words;
  readonly #mask: Words;

  /** @internal Use {@link parseCidr}. `net` must have no host bits set. */
  constructor(family: 4 | 6, net: Words, prefix: number) {
    this.family = family;
    this.prefix = prefix;
    this.#net = net;
    this.#mask = family === 4 ? [maskV4(prefix), 0, 0, 0] : [0, 1, 2, 3].map((i) => maskWord(prefix, i)) as Words;
  }

  /** The IPv4 network as u32 (IPv4 blocks only; 0 otherwise). */
  get v4Network(): number {
    return this.family === 4 ? this.#net[0] : 0;
  }

  /** The IPv4 netmask as u32 (IPv4 blocks only; 0 otherwise). */
  get v4Mask(): number {
    return this.family === 4 ? this.#mask[0] : 0;
  }

  /** True if `ip` (already normalised) is inside this block. Families never cross. */
  contains(ip: Ip): boolean {
    if (ip.family === 4) {
      return this.family === 4 && (ip.v4 & this.#mask[0]) >>> 0 === this.#net[0];
    }
    if (this.family !== 6) return false;
    const w = ip.words;
    const m = this.#mask;
    const n = this.#net;
    return (
      (w[0] & m[0]) >>> 0 === n[0] &&
      (w[1] & m[1]) >>> 0 === n[1] &&
      (w[2] & m[2]) >>> 0 === n[2] &&
      (w[3] & m[3]) >>> 0 === n[3]
    );
  }

  /** Canonical text, e.g. `10.0.0.0/8`, `fc00::/7`. */
  toString(): string {
    const ip: Ip = this.family === 4 ? ipv4(this.#net[0]) : { family: 6, words: this.#net };
    return `${formatIp(ip)}/${this.prefix}`;
  }
}

/**
 * Parses `a.b.c.d/n`, `x:y::z/n`, or a bare address (a /32 or /128). Throws
 * ConfigError (naming `where` and the text) on bad syntax or when host bits are
 * set (`10.0.0.1/8` is refused: it is almost always a typo for `10.0.0.0/8`).
 *
 * An IPv4-mapped block with prefix ≥ 96 (`::ffff:10.0.0.0/104`) becomes the
 * IPv4 block `10.0.0.0/8`, so it matches the normalised addresses. IPv6 blocks
 * never match IPv4 addresses: `::/0` is "all IPv6", not "everything".
 */
export function parseCidr(text: string, where = 'cidr'): Cidr {
  const c = tryParseCidr(text);
  if (c instanceof Cidr) return c;
  throw new ConfigError(where, `${c} in '${text}'`);
}

/** Like {@link parseCidr} but returns the error message string instead of throwing. */
export function tryParseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  let prefix: number | undefined;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(p)) return 'bad prefix length';
    prefix = Number(p);
  }
  if (addr.includes(':')) {
    const w = parseV6Raw(addr);
    if (w === undefined) return 'bad IPv6 address';
    const pfx = prefix ?? 128;
    if (pfx > 128) return 'prefix length over 128';
    if (foldsToV4(w) && pfx >= 96) return v4Block(w[3], pfx - 96);
    const net = w.map((x, i) => (x & maskWord(pfx, i)) >>> 0) as Words;
    if (net.some((x, i) => x !== w[i])) return 'host bits set';
    return new Cidr(6, net, pfx);
  }
  const v4 = parseIpv4(addr);
  if (v4 === undefined) return 'bad IPv4 address';
  const pfx = prefix ?? 32;
  if (pfx > 32) return 'prefix length over 32';
  return v4Block(v4, pfx);
}

function v4Block(v4: number, prefix: number): Cidr | string {
  const net = (v4 & maskV4(prefix)) >>> 0;
  if (net !== v4) return 'host bits set';
  return new Cidr(4, [net, 0, 0, 0], prefix);
}

interface V4Bucket<T> {
  prefix: number;
  mask: number;
  byNet: Map<number, { cidr: Cidr; value: T }>;
}

/**
 * A set of CIDR blocks, each carrying a value (a reason, a rule), answering
 * "which block holds this address" with the longest (most specific) match.
 *
 * IPv4 blocks are bucketed by prefix length with a Map keyed by network, so a
 * lookup costs one Map probe per distinct prefix length (≤ 33) whatever the
 * number of blocks. IPv6 blocks are scanned most-specific first; lists of IPv6
 * blocks in a policy are short, and a scan allocates nothing.
 */
export class CidrSet<T = true> {
  #v4: V4Bucket<T>[] = [];
  #v6: { cidr: Cidr; value: T }[] = [];
  #size = 0;

  /** Number of blocks added (a duplicate block replaces the earlier value). */
  get size(): number {
    return this.#size;
  }

  /** Adds a block (a Cidr or text accepted by {@link parseCidr}) with its value. */
  add(cidr: Cidr | string, value: T): this {
    const c = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
    if (c.family === 4) {
      let b = this.#v4.find((x) => x.prefix === c.prefix);
      if (!b) {
        b = { prefix: c.prefix, mask: c.v4Mask, byNet: new Map() };
        this.#v4.push(b);
        this.#v4.sort((a, z) => z.prefix - a.prefix);
      }
      if (!b.byNet.has(c.v4Network)) this.#size++;
      b.byNet.set(c.v4Network, { cidr: c, value });
    } else {
      const key = c.toString();
      const i = this.#v6.findIndex((e) => e.cidr.toString() === key);
      if (i >= 0) this.#v6[i] = { cidr: c, value };
      else {
        this.#v6.push({ cidr: c, value });
        this.#v6.sort((a, z) => z.cidr.prefix - a.cidr.prefix);
        this.#size++;
      }
    }
    return this;
  }

  /** The most specific block containing `ip`, with its value; undefined if none. */
  lookup(ip: Ip | string): { cidr: Cidr; value: T } | undefined {
    const a = typeof ip === 'string' ? parseIp(ip) : ip;
    if (a === undefined) return undefined;
    if (a.family === 4) {
      for (const b of this.#v4) {
        const hit = b.byNet.get((a.v4 & b.mask) >>> 0);
        if (hit) return hit;
      }
      return undefined;
    }
    for (const e of this.#v6) if (e.cidr.contains(a)) return e;
    return undefined;
  }

  /** The value of the most specific block containing `ip`. */
  match(ip: Ip | string): T | undefined {
    return this.lookup(ip)?.value;
  }

  /** True if some block contains `ip`. Strings that are not IP literals are never contained. */
  contains(ip: Ip | string): boolean {
    return this.lookup(ip) !== undefined;
  }
}
