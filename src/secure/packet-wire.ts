/**
 * Wire forms of the packet secure channel (UDP), groundwork for issue 17:
 * the handshake datagrams and the header protection of transport datagrams.
 * Nothing in either is in clear: a prober or a middlebox sees random bytes
 * of varied length.
 *
 * Handshake datagrams are obfuscated with a ChaCha20 keystream keyed by the
 * server's static public key (which the client pins, so both ends know it and
 * a prober without the link does not) and a random 16-byte seed:
 *
 * ```
 * initiation (client → server), ≥ 221 bytes:
 * ┌ seed 16 ┬ ChaCha20(obfsKey, seed) ⊕ (type 1 ┃ Noise msg1 172 ┃ padding) ┬ mac1 16 ┬ mac2 16 ┐
 * response / cookie reply (server → client):
 * ┌ seed 16 ┬ ChaCha20(obfsKey, seed) ⊕ (type 1 ┃ body ┃ padding) ┐
 *   response body: mac1 of the initiation 16 ┃ Noise msg2 132
 *   cookie reply body: nonce 12 ┃ sealed cookie 32 (cookie.ts)
 * ```
 *
 * mac1 = HMAC-SHA256(mac1Key, datagram up to mac1)[0..16): one HMAC proves
 * the sender knows the server's public key before the server spends a DH on
 * it (WireGuard's mac1). mac2 = HMAC-SHA256(cookie, datagram up to mac2)
 * proves the sender receives at its source address (cookie.ts); without a
 * cookie it is random bytes, never zeros (that would show in clear).
 *
 * Transport datagrams (packet-crypt.ts) carry a 12-byte header masked as
 * QUIC's header protection does (RFC 9001 5.4), with AES-128-ECB of a sample
 * of the ciphertext:
 *
 * ```
 * ┌ receiver index u32 ┬ counter u64 (< 2^53) ┐ ⊕ AES(hpKey, datagram[12..28))[0..12)
 * └──────────── masked header 12 ─────────────┘┌ AEAD(record ┃ kind 1 ┃ zeros) ┬ tag 16 ┐
 * ```
 */
import { createCipheriv, createHash, createHmac, randomBytes, timingSafeEqual, type Cipher } from 'node:crypto';

/** Datagram size the channel uses unless told otherwise: fits the IPv6 minimum MTU (1280) with room for the IP and UDP headers. */
export const DEFAULT_DATAGRAM_SIZE = 1200;
export const SEED = 16;
export const MAC = 16;
export const HEADER = 12;
export const TAG = 16;
/** Transport bytes around a record: header, kind byte, tag. */
export const TRANSPORT_OVERHEAD = HEADER + 1 + TAG;

/** Handshake datagram types (inside the obfuscation). */
export const HS_INITIATION = 1;
export const HS_RESPONSE = 2;
export const HS_COOKIE = 3;

/** Bytes of the transport parameters the client sends in message 1 (opaque here; arq/cc-choice.ts reads them). */
export const TRANSPORT_PARAMS = 8;
/** Noise message 1: e 32, encrypted s 48, encrypted payload (client hello 64 + sender index 4 + transport parameters 8) + tag 16. */
export const INIT_MSG = 32 + 48 + 64 + 4 + TRANSPORT_PARAMS + 16;
/** Noise message 2: e 32, encrypted payload (server hello 64 + sender index 4 + header key 16) + tag 16. */
export const RESP_MSG = 32 + 64 + 4 + 16 + 16;
/** Cookie reply body: nonce 12, sealed cookie 16 + tag 16. */
export const COOKIE_BODY = 12 + 16 + 16;
/** Smallest initiation datagram; every answer the server sends an unauthenticated source is no bigger (see packet-responder.ts). */
export const MIN_INITIATION = SEED + 1 + INIT_MSG + 2 * MAC;
/** A response body starts with the mac1 of the initiation it answers, so a forged one is told apart before Noise reads it. */
export const MIN_RESPONSE = SEED + 1 + MAC + RESP_MSG;
export const MIN_COOKIE_REPLY = SEED + 1 + COOKIE_BODY;

/** Keys every holder of the server's public key can derive (client and server alike). */
export interface ServerPublicKeys {
  obfs: Buffer;
  mac1: Buffer;
  cookie: Buffer;
}

const label = (what: string, serverPublicKey: Buffer): Buffer => createHash('sha256').update(`polytun udp ${what} v1`).update(serverPublicKey).digest();

/** Derives the handshake obfuscation, mac1 and cookie-reply keys from the server's static public key. */
export function serverPublicKeys(serverPublicKey: Buffer): ServerPublicKeys {
  return { obfs: label('obfs', serverPublicKey), mac1: label('mac1', serverPublicKey), cookie: label('cookie', serverPublicKey) };
}

function xorKeystream(key: Buffer, seed: Buffer, data: Buffer): void {
  createCipheriv('chacha20', key, seed).update(data).copy(data);
}

/** HMAC-SHA256 truncated to 16 bytes. */
export function mac16(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest().subarray(0, MAC);
}

/** Constant-time equality of two 16-byte MACs. */
export function macEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Builds a handshake datagram of `size` bytes (body, then zero padding, all
 * obfuscated). An initiation gets mac1 and mac2 (HMAC with `cookie`, or
 * random without one): see {@link setMac2} to redo mac2 on a retransmission.
 */
export function encodeHandshake(keys: ServerPublicKeys, type: number, body: Buffer, size: number, cookie?: Buffer): Buffer {
  const macs = type === HS_INITIATION ? 2 * MAC : 0;
  if (size < SEED + 1 + body.length + macs) throw new RangeError(`handshake datagram of ${size} bytes cannot hold a ${body.length}-byte body`);
  const out = Buffer.alloc(size);
  randomBytes(SEED).copy(out, 0);
  const inner = out.subarray(SEED, size - macs);
  inner[0] = type;
  body.copy(inner, 1);
  xorKeystream(keys.obfs, out.subarray(0, SEED), inner);
  if (macs > 0) {
    mac16(keys.mac1, out.subarray(0, size - 2 * MAC)).copy(out, size - 2 * MAC);
    setMac2(out, cookie);
  }
  return out;
}

/** Rewrites an initiation's mac2 for `cookie` (random bytes without one). */
export function setMac2(initiation: Buffer, cookie: Buffer | undefined): void {
  const at = initiation.length - MAC;
  (cookie === undefined ? randomBytes(MAC) : mac16(cookie, initiation.subarray(0, at))).copy(initiation, at);
}

/** The mac1 field of an initiation (what a cookie reply is bound to). */
export function mac1Of(initiation: Buffer): Buffer {
  return initiation.subarray(initiation.length - 2 * MAC, initiation.length - MAC);
}

/** True when an initiation-sized datagram carries a valid mac1 (one HMAC, no DH). */
export function checkMac1(keys: ServerPublicKeys, datagram: Buffer): boolean {
  if (datagram.length < MIN_INITIATION) return false;
  return macEqual(mac16(keys.mac1, datagram.subarray(0, datagram.length - 2 * MAC)), mac1Of(datagram));
}

/**
 * Removes the obfuscation: the type and the bytes after it (body and padding,
 * a fresh copy), or undefined when the datagram is too short to be one.
 * Whether the body is genuine is for the Noise or cookie layer to say.
 */
export function decodeHandshake(keys: ServerPublicKeys, datagram: Buffer, initiation: boolean): { type: number; body: Buffer } | undefined {
  const macs = initiation ? 2 * MAC : 0;
  if (datagram.length < SEED + 2 + macs) return undefined;
  const inner = Buffer.from(datagram.subarray(SEED, datagram.length - macs));
  xorKeystream(keys.obfs, datagram.subarray(0, SEED), inner);
  return { type: inner[0] as number, body: inner.subarray(1) };
}

/**
 * QUIC-style header protection: XORs the 12-byte header with AES-128-ECB
 * of the 16 ciphertext bytes after it. One long-lived ECB cipher object
 * (ECB keeps no state between blocks), so a datagram costs one block.
 */
export class HeaderMask {
  readonly #ecb: Cipher;

  constructor(key: Buffer) {
    if (key.length !== 16) throw new RangeError('header protection key must be 16 bytes');
    this.#ecb = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
  }

  /** Masks (or unmasks: XOR) `datagram`'s header in place; the datagram must be at least HEADER + 16 long. */
  apply(datagram: Buffer): void {
    const mask = this.#ecb.update(datagram.subarray(HEADER, HEADER + 16));
    for (let i = 0; i < HEADER; i++) datagram[i] = (datagram[i] as number) ^ (mask[i] as number);
  }

  /** The unmasked header of `datagram` read into `into` (12 bytes), leaving the datagram as it was. */
  peek(datagram: Buffer, into: Buffer): void {
    const mask = this.#ecb.update(datagram.subarray(HEADER, HEADER + 16));
    for (let i = 0; i < HEADER; i++) into[i] = (datagram[i] as number) ^ (mask[i] as number);
  }
}

/** A transport header once unmasked. */
export interface TransportHeader {
  index: number;
  counter: number;
}

/** Reads an unmasked header; undefined when the counter is past 2^53 (never sent by us). */
export function readHeader(h: Buffer): TransportHeader | undefined {
  const hi = h.readUInt32BE(4);
  if (hi >= 0x200000) return undefined;
  return { index: h.readUInt32BE(0), counter: hi * 0x100000000 + h.readUInt32BE(8) };
}

export function writeHeader(h: Buffer, index: number, counter: number): void {
  h.writeUInt32BE(index >>> 0, 0);
  h.writeUInt32BE(Math.floor(counter / 0x100000000), 4);
  h.writeUInt32BE(counter >>> 0, 8);
}
