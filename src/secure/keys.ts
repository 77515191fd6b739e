/**
 * X25519 keys for the secure channel, on node:crypto alone.
 *
 * Keys travel through the program as raw 32-byte Buffers and through config
 * files as unpadded base64url (43 characters). Node's DH wants KeyObjects, and
 * building one is the expensive part (measured on Node 20: PKCS8 DER import
 * ~360 µs, SPKI DER import ~70 µs, JWK public import ~6 µs, one X25519 DH
 * ~35 µs), so:
 * - private KeyObjects are cached per Buffer (a server reuses one static key
 *   for every handshake; an ephemeral key is born as a KeyObject and seeded
 *   into the cache, so it is never imported at all);
 * - public keys are imported as JWK `{kty:'OKP', crv:'X25519', x}`, which
 *   carries the same raw bytes as the SPKI DER form at a tenth of the cost.
 *
 * Never call `KeyObject.export({ format: 'jwk' })` here: on Node 20.20 it
 * deadlocks the process after a thousand or two calls (main thread parked in
 * a futex; gone with --no-opt). `generateKeyPairSync` with JWK encodings and
 * JWK/DER imports are unaffected, and the tests call generateKeyPair enough
 * times to notice a regression.
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { AuthError, ConfigError } from '../core/errors.js';

/** Length in bytes of an X25519 private key, public key and shared secret. */
export const KEY_LENGTH = 32;

/** A raw X25519 key pair. */
export interface KeyPair {
  /** 32-byte private scalar (clamped by X25519 itself, any bytes are valid). */
  readonly privateKey: Buffer;
  /** 32-byte Montgomery u-coordinate. */
  readonly publicKey: Buffer;
}

// PKCS8 wrapper of a raw X25519 private key (RFC 8410):
// ┌──────────────────────────────────────────────────────┬──────────────┐
// │ 30 2e 02 01 00 30 05 06 03 2b 65 6e 04 22 04 20      │ 32-byte key  │
// └──────────────────────────────────────────────────────┴──────────────┘
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const TOKEN_INFO = Buffer.from('polytun token key v1', 'utf8');
const BEARER_INFO = Buffer.from('polytun ws bearer v1', 'utf8');
const KEY_TEXT = /^[A-Za-z0-9_-]{43}$/;

interface Cached {
  readonly copy: Buffer;
  readonly key: KeyObject;
}
// Keyed by Buffer identity; the copy detects a caller that refilled the same
// Buffer with another key (or zeroed it) so a stale KeyObject is never used.
const privateCache = new WeakMap<Buffer, Cached>();
const publicCache = new WeakMap<Buffer, Cached>();

function requireKey(buf: Buffer, what: string): void {
  if (!Buffer.isBuffer(buf) || buf.length !== KEY_LENGTH) {
    throw new ConfigError(what, `expected a ${KEY_LENGTH}-byte X25519 key, got ${Buffer.isBuffer(buf) ? `${buf.length} bytes` : typeof buf}`);
  }
}

function privateKeyObject(priv: Buffer): KeyObject {
  const hit = privateCache.get(priv);
  if (hit !== undefined && hit.copy.equals(priv)) return hit.key;
  requireKey(priv, 'private key');
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, priv]), format: 'der', type: 'pkcs8' });
  privateCache.set(priv, { copy: Buffer.from(priv), key });
  return key;
}

function publicKeyObject(pub: Buffer): KeyObject {
  const hit = publicCache.get(pub);
  if (hit !== undefined && hit.copy.equals(pub)) return hit.key;
  requireKey(pub, 'public key');
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: pub.toString('base64url') }, format: 'jwk' });
  publicCache.set(pub, { copy: Buffer.from(pub), key });
  return key;
}

interface OkpJwk {
  readonly d?: string;
  readonly x?: string;
}
type JwkEncoding = { readonly format: 'jwk' };
// Node accepts the 'jwk' encoding here (documented as "see keyObject.export()"),
// @types/node has no overload for it.
const generateJwkPair = generateKeyPairSync as unknown as (
  type: 'x25519',
  options: { publicKeyEncoding: JwkEncoding; privateKeyEncoding: JwkEncoding },
) => { publicKey: OkpJwk; privateKey: OkpJwk };
const JWK: JwkEncoding = { format: 'jwk' };

/** Generates a fresh random X25519 key pair. */
export function generateKeyPair(): KeyPair {
  const { d, x } = generateJwkPair('x25519', { publicKeyEncoding: JWK, privateKeyEncoding: JWK }).privateKey;
  const privateKey = Buffer.from(d ?? '', 'base64url');
  const publicKey = Buffer.from(x ?? '', 'base64url');
  if (d === undefined || x === undefined || privateKey.length !== KEY_LENGTH || publicKey.length !== KEY_LENGTH) {
    throw new ConfigError('x25519', 'key generation returned a malformed key (is node:crypto built without X25519?)');
  }
  // An ephemeral key is used for DH right away: import it now, while its
  // public half is known and the cheap JWK path applies (~37 µs vs ~360 µs).
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x }, format: 'jwk' });
  privateCache.set(privateKey, { copy: Buffer.from(privateKey), key });
  return { privateKey, publicKey };
}

/** Computes the public key of a 32-byte private key. */
export function publicKeyOf(priv: Buffer): Buffer {
  const spki = createPublicKey(privateKeyObject(priv)).export({ format: 'der', type: 'spki' });
  return Buffer.from(spki.subarray(spki.length - KEY_LENGTH));
}

/**
 * X25519(priv, pub). Throws AuthError when the peer's key is a low-order
 * point (the shared secret would be all zeros, i.e. known to anyone).
 */
export function dh(priv: Buffer, pub: Buffer): Buffer {
  const privateKey = privateKeyObject(priv);
  const publicKey = publicKeyObject(pub);
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey, publicKey });
  } catch (err) {
    // OpenSSL refuses to derive an all-zero secret ("failed during derivation").
    throw new AuthError('X25519 failed: the peer public key is a low-order point', { cause: err });
  }
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i] ?? 0;
  if (acc === 0 || out.length !== KEY_LENGTH) throw new AuthError('X25519 produced an all-zero shared secret (low-order point)');
  return out;
}

/**
 * Derives a static key pair from a user token with HKDF-SHA256 (empty salt,
 * info "polytun token key v1"), so that a token can stand in for a key.
 * The token is the secret: it must carry enough entropy on its own (see
 * {@link generateToken}); HKDF does not stretch a weak password.
 */
export function keyPairFromToken(token: string): KeyPair {
  if (typeof token !== 'string' || token.length === 0) throw new ConfigError('token', 'the token must be a non-empty string');
  const privateKey = Buffer.from(hkdfSync('sha256', Buffer.from(token, 'utf8'), Buffer.alloc(0), TOKEN_INFO, KEY_LENGTH));
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/**
 * The value a token user's client sends in `Authorization: Bearer …` on a
 * WebSocket upgrade, so that a shared URL path can select the user before
 * any polytun byte is exchanged: HKDF-SHA256 of the token like
 * {@link keyPairFromToken} but with info "polytun ws bearer v1", as 43
 * base64url characters. Whoever terminates TLS in front of the server (a
 * reverse proxy, a CDN) sees this value, never the token: it lets a request
 * past the route, not through the handshake, which still needs the key
 * derived from the token.
 */
export function wsBearerFromToken(token: string): string {
  if (typeof token !== 'string' || token.length === 0) throw new ConfigError('token', 'the token must be a non-empty string');
  return Buffer.from(hkdfSync('sha256', Buffer.from(token, 'utf8'), Buffer.alloc(0), BEARER_INFO, KEY_LENGTH)).toString('base64url');
}

/** Encodes a 32-byte key as 43 characters of unpadded base64url. */
export function encodeKey(key: Buffer): string {
  requireKey(key, 'key');
  return key.toString('base64url');
}

/**
 * Decodes a key written by {@link encodeKey}. Strict: exactly 43 base64url
 * characters in canonical form (no padding, no whitespace, no standard-base64
 * `+/`). `where` names the config key or flag for the error message.
 */
export function decodeKey(text: string, where = 'key'): Buffer {
  if (typeof text !== 'string') throw new ConfigError(where, 'expected a base64url key string');
  if (!KEY_TEXT.test(text)) {
    throw new ConfigError(where, `expected a 32-byte key as 43 base64url characters [A-Za-z0-9_-] without padding, got ${text.length} characters`);
  }
  const key = Buffer.from(text, 'base64url');
  // 43 chars hold 258 bits: the last character's two spare bits must be zero,
  // otherwise two different strings would name the same key.
  if (key.length !== KEY_LENGTH || key.toString('base64url') !== text) {
    throw new ConfigError(where, 'key is not canonical base64url (its last character has non-zero padding bits)');
  }
  return key;
}

/** Generates a random user token: 32 random bytes as unpadded base64url. */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}
