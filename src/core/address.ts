/**
 * Destination addresses: the one type every front, the session and the egress
 * dialer use for "where should this stream or datagram go", plus text and
 * binary codecs for it.
 *
 * Every `Destination` built here is canonical: IPv6 text is in RFC 5952 form,
 * domains are checked for bytes that no resolver accepts, and a domain that
 * is really an IP literal is classified as the IP (so the destination policy
 * sees `127.0.0.1`, not a "domain" that happens to spell it).
 */
import { isIP } from 'node:net';
import { ProtocolError } from './errors.js';
import { parseIpv6Groups } from './ip.js';

/** What kind of host a destination names. */
export type DestinationKind = 'ipv4' | 'ipv6' | 'domain';

/** A stream or datagram target: host text, port, and what the host text is. */
export type Destination = { host: string; port: number; kind: DestinationKind };

/** Why an address was refused; lets callers map to their own wire codes. */
export type AddressErrorReason = 'syntax' | 'port' | 'domain' | 'atyp' | 'truncated' | 'kind';

/** An address (text or binary) is malformed. */
export class AddressError extends ProtocolError {
  /** Which check failed. */
  readonly reason: AddressErrorReason;
  constructor(reason: AddressErrorReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Address type bytes of the binary layout (same values as SOCKS5 ATYP). */
export const Atyp = { ipv4: 1, domain: 3, ipv6: 4 } as const;

/** Longest domain the binary layout can carry (one length byte). */
export const MAX_DOMAIN_BYTES = 255;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Classifies host text with `net.isIP`: IPv4 literal, IPv6 literal, or a domain. */
export function classifyHost(host: string): DestinationKind {
  const v = isIP(host);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : 'domain';
}

/**
 * Builds a canonical destination from host text and port: classifies the
 * host, normalizes IPv6 text, validates domains and the port (0..65535).
 * IPv6 zone ids (`fe80::1%eth0`) are refused: a zone names an interface of
 * the machine that parsed it, which means nothing to the peer that dials.
 * @throws AddressError
 */
export function makeDestination(host: string, port: number): Destination {
  checkPort(port);
  const kind = classifyHost(host);
  if (kind === 'ipv6') {
    if (host.includes('%')) throw new AddressError('syntax', `IPv6 zone ids are not supported: ${JSON.stringify(host)}`);
    const b = Buffer.allocUnsafe(16);
    writeIpv6(host, b, 0);
    return { host: readIpv6(b, 0), port, kind };
  }
  if (kind === 'domain') checkDomain(host);
  return { host, port, kind };
}

/**
 * Parses `host:port`, `1.2.3.4:port` or `[v6]:port`. Without a port the
 * `defaultPort` is used, and it is an error when none is given. Unbracketed
 * IPv6 is refused because `::1:80` is ambiguous.
 * @throws AddressError
 */
export function parseHostPort(s: string, defaultPort?: number): Destination {
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw new AddressError('syntax', `missing ']' in ${JSON.stringify(s)}`);
    host = s.slice(1, close);
    if (isIP(host) !== 6) throw new AddressError('syntax', `brackets must hold an IPv6 literal: ${JSON.stringify(s)}`);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (rest[0] !== ':') throw new AddressError('syntax', `expected ':port' after ']' in ${JSON.stringify(s)}`);
      portText = rest.slice(1);
    }
  } else {
    const colon = s.lastIndexOf(':');
    if (colon !== s.indexOf(':')) {
      throw new AddressError('syntax', `IPv6 literals need brackets, as in [::1]:port: ${JSON.stringify(s)}`);
    }
    host = colon < 0 ? s : s.slice(0, colon);
    if (colon >= 0) portText = s.slice(colon + 1);
  }
  if (host === '') throw new AddressError('syntax', `empty host in ${JSON.stringify(s)}`);
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw new AddressError('port', `missing port in ${JSON.stringify(s)}`);
    port = defaultPort;
  } else {
    if (!/^[0-9]{1,5}$/.test(portText)) throw new AddressError('port', `bad port ${JSON.stringify(portText)}`);
    port = Number(portText);
  }
  return makeDestination(host, port);
}

/** A host as URLs, Host headers and `host:port` spell it: IPv6 in brackets (`[::1]`). */
export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Formats `host:port`, bracketing IPv6 hosts (`[::1]:80`). */
export function formatHostPort(d: { host: string; port: number }): string {
  return `${formatHost(d.host)}:${d.port}`;
}

/*
 * Binary layout (the SOCKS5 address block, reused to carry stream targets):
 *
 *   +------+----------------------------------+---------+
 *   | ATYP | ADDR                             | PORT    |
 *   +------+----------------------------------+---------+
 *   |  1   | 1: 4 bytes IPv4                  | u16 BE  |
 *   |      | 4: 16 bytes IPv6                 |         |
 *   |      | 3: LEN (1..255) + LEN bytes UTF-8|         |
 *   +------+----------------------------------+---------+
 */

/** Bytes `encodeDestination(d)` produces. @throws AddressError */
export function encodedDestinationLength(d: Destination): number {
  checkKind(d);
  if (d.kind === 'ipv4') return 1 + 4 + 2;
  if (d.kind === 'ipv6') return 1 + 16 + 2;
  return 1 + 1 + Buffer.byteLength(d.host, 'utf8') + 2;
}

/** Writes the binary form of `d` into `out` at `offset`; returns bytes written. @throws AddressError */
export function writeDestination(d: Destination, out: Buffer, offset: number): number {
  const len = encodedDestinationLength(d);
  if (offset + len > out.length) throw new RangeError('writeDestination: buffer too small');
  let o = offset;
  if (d.kind === 'ipv4') {
    out[o++] = Atyp.ipv4;
    for (const part of d.host.split('.')) out[o++] = Number(part);
  } else if (d.kind === 'ipv6') {
    out[o++] = Atyp.ipv6;
    writeIpv6(d.host, out, o);
    o += 16;
  } else {
    out[o++] = Atyp.domain;
    out[o++] = len - 4;
    o += out.write(d.host, o, 'utf8');
  }
  out.writeUInt16BE(d.port, o);
  return len;
}

/** The binary form of `d` (ATYP, address, port). @throws AddressError */
export function encodeDestination(d: Destination): Buffer {
  const out = Buffer.allocUnsafe(encodedDestinationLength(d));
  writeDestination(d, out, 0);
  return out;
}

/**
 * Decodes the binary form at `buf[offset]`. A domain that spells an IP
 * literal comes back classified as that IP; IPv6 comes back canonical.
 * @throws AddressError (`atyp` unknown type, `truncated`, `domain` invalid)
 */
export function decodeDestination(buf: Buffer, offset = 0): { dest: Destination; bytesRead: number } {
  const atyp = buf[offset];
  if (atyp === undefined) throw new AddressError('truncated', 'address: missing ATYP');
  let o = offset + 1;
  let host: string;
  if (atyp === Atyp.ipv4) {
    need(buf, o + 4 + 2);
    host = `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
    o += 4;
  } else if (atyp === Atyp.ipv6) {
    need(buf, o + 16 + 2);
    host = readIpv6(buf, o);
    o += 16;
  } else if (atyp === Atyp.domain) {
    need(buf, o + 1);
    const n = buf[o] as number;
    if (n === 0) throw new AddressError('domain', 'address: empty domain');
    need(buf, o + 1 + n + 2);
    try {
      host = utf8.decode(buf.subarray(o + 1, o + 1 + n));
    } catch (err) {
      throw new AddressError('domain', `address: domain is not UTF-8 (${(err as Error).message})`);
    }
    o += 1 + n;
  } else {
    throw new AddressError('atyp', `address: unknown address type ${atyp}`);
  }
  const port = buf.readUInt16BE(o);
  return { dest: makeDestination(host, port), bytesRead: o + 2 - offset };
}

function need(buf: Buffer, end: number): void {
  if (buf.length < end) throw new AddressError('truncated', `address: truncated (need ${end} bytes, have ${buf.length})`);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AddressError('port', `bad port ${String(port)}`);
}

function checkKind(d: Destination): void {
  checkPort(d.port);
  const kind = classifyHost(d.host);
  if (kind !== d.kind) throw new AddressError('kind', `host ${JSON.stringify(d.host)} is ${kind}, not ${d.kind}`);
  if (kind === 'domain') checkDomain(d.host);
  if (kind === 'ipv6' && d.host.includes('%')) throw new AddressError('syntax', 'IPv6 zone ids are not supported');
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** A last label resolvers read as (part of) an IPv4 address: `2130706433`, `0177`, `0x7f`. */
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/i;

/**
 * The one DNS host-name check (the egress policy, config values, links):
 * lowercases a DNS name, drops one trailing dot, and validates it. Returns
 * undefined for invalid names — including names whose last label is numeric
 * (`2130706433`, `0177.0.0.1`, `0x7f.1`): no real TLD is numeric, and the
 * resolver would read them as (octal/hex) IPv4 addresses.
 */
export function normalizeHostName(host: string): string | undefined {
  let h = host.toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.length > 253) return undefined;
  const labels = h.split('.');
  for (const l of labels) if (!LABEL.test(l)) return undefined;
  if (NUMERIC_LABEL.test(labels[labels.length - 1] ?? '')) return undefined;
  return h;
}

// Characters no hostname contains; ':' and '[]' would also break formatHostPort,
// '/?#@\\%' would let a "domain" smuggle URL structure into an HTTP request.
const DOMAIN_FORBIDDEN = new Set([...':/?#@[]\\%<>"|^`{}']);

function checkDomain(host: string): void {
  if (host === '') throw new AddressError('domain', 'empty domain');
  if (Buffer.byteLength(host, 'utf8') > MAX_DOMAIN_BYTES) throw new AddressError('domain', 'domain longer than 255 bytes');
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f)) {
      throw new AddressError('domain', `domain contains control or space character 0x${c.toString(16)}`);
    }
    if (DOMAIN_FORBIDDEN.has(host[i] as string)) throw new AddressError('domain', `domain contains ${JSON.stringify(host[i])}`);
  }
  // Resolvers read "127.1", "0x7f.0.0.1" or "2130706433" as IPv4 addresses;
  // refusing names whose last label is numeric (the WHATWG URL rule) keeps
  // an IP from passing the destination policy disguised as a domain.
  const labels = host.split('.');
  if (labels.length > 1 && labels[labels.length - 1] === '') labels.pop();
  const last = labels[labels.length - 1] ?? '';
  if (NUMERIC_LABEL.test(last)) {
    throw new AddressError('domain', `domain ${JSON.stringify(host)} looks like a non-canonical IPv4 address`);
  }
}

/** Writes IPv6 text (already validated by isIP, no zone) as 16 bytes. */
function writeIpv6(text: string, out: Buffer, offset: number): void {
  const groups = parseIpv6Groups(text);
  if (groups === undefined) throw new AddressError('syntax', `not an IPv6 address: ${JSON.stringify(text)}`);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i] as number, offset + 2 * i);
}

/** RFC 5952 text of 16 bytes: lowercase, no leading zeros, longest zero run as '::'. */
function readIpv6(buf: Buffer, offset: number): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(buf.readUInt16BE(offset + 2 * i));
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    // IPv4-mapped: the dotted tail is what Node prints for remoteAddress too.
    return `::ffff:${buf[offset + 12]}.${buf[offset + 13]}.${buf[offset + 14]}.${buf[offset + 15]}`;
  }
  return formatIpv6Groups(w);
}

/**
 * RFC 5952 text of an IPv6 address given as its eight 16-bit groups:
 * lowercase hex, no leading zeros, the longest run of two or more zero
 * groups (the first of equals) as '::'. No IPv4-mapped special case.
 */
export function formatIpv6Groups(g: readonly number[]): string {
  let bestAt = -1;
  let bestLen = 1; // a single zero group is never compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: readonly number[]): string => ws.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}
