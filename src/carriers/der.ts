/**
 * A minimal DER (ASN.1 distinguished encoding) writer: just the types an
 * X.509 certificate needs. Every helper returns the complete TLV:
 *
 *   +------+----------------------+-------------------+
 *   | tag  | length (short/long)  | contents          |
 *   | 1 B  | 1 B, or 0x8N + N B   | `length` bytes    |
 *   +------+----------------------+-------------------+
 *
 * Short form when length < 128, otherwise 0x80|N followed by N big-endian
 * length bytes (no leading zero), as DER requires.
 */

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return Buffer.from([0x80 | out.length, ...out]);
}

/** Any TLV with the given tag byte. */
export function tlv(tag: number, contents: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), lengthBytes(contents.length), contents]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
export const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const boolean = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
/** BIT STRING with zero unused bits (whole bytes). */
export const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
/** `[n] EXPLICIT` constructed context tag. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
/** `[n] IMPLICIT` primitive context tag (e.g. GeneralName dNSName = [2]). */
export const implicitPrimitive = (n: number, contents: Buffer): Buffer => tlv(0x80 | n, contents);

/** INTEGER from unsigned big-endian bytes (a 0x00 is prepended when the top bit is set). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  const needsPad = ((trimmed[0] ?? 0) & 0x80) !== 0;
  return tlv(0x02, needsPad ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export const smallInteger = (n: number): Buffer => unsignedInteger(Buffer.from([n & 0xff]));

/** OBJECT IDENTIFIER from dotted text, e.g. `2.5.4.3`. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const [a = 0, b = 0, ...rest] = arcs;
  const out: number[] = [a * 40 + b];
  for (const arc of rest) {
    // base-128, most significant group first, high bit = "more follows"
    const groups: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) groups.unshift((v & 0x7f) | 0x80);
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}

/**
 * X.509 Time: UTCTime (YYMMDDHHMMSSZ) up to 2049, GeneralizedTime
 * (YYYYMMDDHHMMSSZ) from 2050 on (RFC 5280 §4.1.2.5).
 */
export function time(d: Date): Buffer {
  const p = (n: number): string => String(n).padStart(2, '0');
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  if (y < 2050) return tlv(0x17, Buffer.from(`${p(y % 100)}${rest}`, 'ascii'));
  return tlv(0x18, Buffer.from(`${y}${rest}`, 'ascii'));
}
