import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import fc from 'fast-check';
import { AuthError, ConfigError } from '../../../src/core/errors.js';
import {
  decodeKey,
  dh,
  encodeKey,
  generateKeyPair,
  generateToken,
  keyPairFromToken,
  publicKeyOf,
} from '../../../src/secure/keys.js';

// RFC 8410 DER wrappers, used here as an independent path through node:crypto.
const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const viaDer = (priv: Buffer, pub: Buffer): Buffer =>
  diffieHellman({
    privateKey: createPrivateKey({ key: Buffer.concat([PKCS8, priv]), format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: Buffer.concat([SPKI, pub]), format: 'der', type: 'spki' }),
  });

describe('X25519 keys', () => {
  it('generates 32-byte pairs whose public key matches publicKeyOf', () => {
    const kp = generateKeyPair();
    assert.equal(kp.privateKey.length, 32);
    assert.equal(kp.publicKey.length, 32);
    assert.deepEqual(publicKeyOf(Buffer.from(kp.privateKey)), kp.publicKey);
    assert.notDeepEqual(generateKeyPair().privateKey, kp.privateKey);
  });

  it('survives thousands of key generations (Node 20 KeyObject JWK-export deadlock guard)', () => {
    // KeyObject.export({format:'jwk'}) hangs Node 20.20 after ~1-2k calls;
    // keys.ts must not go through it. A regression shows as a test timeout.
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) seen.add(generateKeyPair().publicKey.toString('hex'));
    assert.equal(seen.size, 5000);
    const kp = generateKeyPair();
    for (let i = 0; i < 3000; i++) assert.equal(publicKeyOf(kp.privateKey).length, 32);
  });

  it('dh is symmetric and agrees with the DER-built KeyObjects', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const ab = dh(a.privateKey, b.publicKey);
    assert.equal(ab.length, 32);
    assert.deepEqual(ab, dh(b.privateKey, a.publicKey));
    assert.deepEqual(ab, viaDer(a.privateKey, b.publicKey));
  });

  it('any 32 bytes are a private key (fresh Buffers, no cache hits)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (x, y) => {
        const a = Buffer.from(x);
        const b = Buffer.from(y);
        assert.deepEqual(dh(a, publicKeyOf(b)), dh(b, publicKeyOf(a)));
      }),
      { numRuns: 30 },
    );
  });

  it('does not reuse a cached key after the Buffer was overwritten', () => {
    const priv = Buffer.from(generateKeyPair().privateKey);
    const peer = generateKeyPair();
    const first = dh(priv, peer.publicKey);
    priv.fill(0x42);
    assert.notDeepEqual(dh(priv, peer.publicKey), first);
    assert.deepEqual(dh(priv, peer.publicKey), viaDer(priv, peer.publicKey));
  });

  it('rejects low-order public keys with AuthError', () => {
    const { privateKey } = generateKeyPair();
    const zero = Buffer.alloc(32);
    const one = Buffer.alloc(32);
    one[0] = 1;
    assert.throws(() => dh(privateKey, zero), AuthError);
    assert.throws(() => dh(privateKey, one), AuthError);
  });

  it('rejects keys of the wrong length with ConfigError', () => {
    const { privateKey, publicKey } = generateKeyPair();
    assert.throws(() => dh(privateKey.subarray(0, 31), publicKey), ConfigError);
    assert.throws(() => dh(privateKey, Buffer.concat([publicKey, Buffer.alloc(1)])), ConfigError);
    assert.throws(() => publicKeyOf(Buffer.alloc(16)), ConfigError);
  });
});

describe('key text encoding', () => {
  it('round-trips any 32 bytes through 43 base64url characters', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const key = Buffer.from(bytes);
        const text = encodeKey(key);
        assert.match(text, /^[A-Za-z0-9_-]{43}$/);
        assert.deepEqual(decodeKey(text), key);
      }),
    );
  });

  it('rejects wrong lengths, padding, other alphabets and non-canonical text', () => {
    const good = encodeKey(generateKeyPair().publicKey);
    const bad = [
      '',
      good.slice(0, 42),
      `${good}A`,
      `${good}=`,
      ` ${good.slice(1)}`,
      `${good.slice(0, 10)}+${good.slice(11)}`,
      `${good.slice(0, 10)}/${good.slice(11)}`,
      `${good.slice(0, 42)}B`, // last char carries non-zero spare bits
    ];
    for (const text of bad) {
      assert.throws(() => decodeKey(text, 'server.publicKey'), (e: unknown) => e instanceof ConfigError && e.where === 'server.publicKey', text);
    }
    assert.throws(() => encodeKey(Buffer.alloc(31)), ConfigError);
  });

  it('decodeKey accepts exactly the canonical encodings', () => {
    const b64url = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/='.split(''));
    const candidates = fc.oneof(fc.string({ maxLength: 50 }), fc.string({ unit: b64url, minLength: 42, maxLength: 44 }));
    fc.assert(
      fc.property(candidates, (text) => {
        let key: Buffer | undefined;
        try {
          key = decodeKey(text);
        } catch (err) {
          assert.ok(err instanceof ConfigError);
          return;
        }
        assert.equal(encodeKey(key), text);
      }),
      { numRuns: 500 },
    );
  });
});

describe('tokens', () => {
  it('generateToken gives 43 random base64url characters', () => {
    const t = generateToken();
    assert.match(t, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(generateToken(), t);
  });

  it('keyPairFromToken is deterministic, distinct per token, and a valid pair', () => {
    const t = generateToken();
    const a = keyPairFromToken(t);
    const b = keyPairFromToken(t);
    assert.deepEqual(a, b);
    assert.deepEqual(a.publicKey, publicKeyOf(a.privateKey));
    assert.notDeepEqual(keyPairFromToken(`${t}x`).privateKey, a.privateKey);
    assert.notDeepEqual(keyPairFromToken(generateToken()).publicKey, a.publicKey);
    const peer = generateKeyPair();
    assert.deepEqual(dh(a.privateKey, peer.publicKey), dh(peer.privateKey, a.publicKey));
  });

  it('pins the derivation (HKDF-SHA256, empty salt, info "polytun token key v1")', () => {
    // Changing the derivation would silently change every token-derived key.
    assert.equal(keyPairFromToken('polytun').privateKey.toString('hex'), PINNED);
  });

  it('rejects an empty token', () => {
    assert.throws(() => keyPairFromToken(''), ConfigError);
  });
});

const PINNED = '29073ea4bfa81cbcb00efc09e56b6567032f20a7d4b3b3264e915a3d178b1cb0';
