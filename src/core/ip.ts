/**
 * The one strict IP-literal parser. Every layer that reads addresses from
 * text (the egress policy's integers, the VPN's bytes, destinations) builds
 * on these two functions and adds only its own normalisation.
 *
 * Strict on purpose: dotted quads are decimal without leading zeros
 * (`010.0.0.1` is refused, because inet_aton would read it as octal
 * 8.0.0.1), no short forms (`10.1`, `2130706433`), no brackets and no IPv6
 * zone ids (callers strip or refuse those first), and a dotted IPv4 tail in
 * IPv6 only as the last 32 bits.
 */

const DEC_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
/** The longest IPv6 text: eight groups of four plus seven colons, or six groups and a dotted quad. */
const MAX_V6_TEXT = 45;

/** A dotted-quad IPv4 address as an unsigned 32-bit integer, or undefined. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!DEC_OCTET.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v >>> 0;
}

/** The eight 16-bit groups of an IPv6 address (no brackets, no zone id), or undefined. */
export function parseIpv6Groups(text: string): number[] | undefined {
  if (text.length < 2 || text.length > MAX_V6_TEXT) return undefined;
  const dbl = text.indexOf('::');
  if (dbl >= 0 && text.indexOf('::', dbl + 1) >= 0) return undefined;
  const head = groupsOf(dbl < 0 ? text : text.slice(0, dbl), dbl < 0);
  const tail = dbl < 0 ? [] : groupsOf(text.slice(dbl + 2), true);
  if (head === undefined || tail === undefined) return undefined;
  if (dbl < 0) return head.length === 8 ? head : undefined;
  if (head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

function groupsOf(part: string, v4TailOk: boolean): number[] | undefined {
  if (part === '') return [];
  const items = part.split(':');
  const out: number[] = [];
  for (let i = 0; i < items.length; i++) {
    const it = items[i] as string;
    if (v4TailOk && i === items.length - 1 && it.includes('.')) {
      const v4 = parseIpv4(it);
      if (v4 === undefined) return undefined;
      out.push(v4 >>> 16, v4 & 0xffff);
    } else if (HEX_GROUP.test(it)) out.push(parseInt(it, 16));
    else return undefined;
  }
  return out;
}
