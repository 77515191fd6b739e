/**
 * The record AEAD, ChaCha20-Poly1305 or AES-256-GCM (the handshake picks one
 * per connection, see cipher.ts), one direction and one key per object, with
 * the operations the record layer needs:
 *
 * - `seal(src, srcOff, len, dst, dstOff, aad16, counter)`: ciphertext to
 *   `dst[dstOff, +len)`, tag after it, so a record is built in one buffer and
 *   reaches the socket as one write;
 * - `open(buf, off, len, aad16, counter)`: checks the tag at `buf[off+len]`
 *   and decrypts in place; false when authentication fails;
 * - `openv(dst, dstOff, len, aad16, counter, tag, segments)`: the same for a
 *   ciphertext split across several received chunks, decrypted straight into
 *   `dst` (no gathering copy first).
 *
 * Nonce: 4 zero bytes || u64 LE counter (Noise's ChaChaPoly), for both
 * ciphers; associated data: the record's 2-byte masked length, big-endian.
 * Both take the direction's 32-byte key as it comes from the handshake.
 *
 * The native addon does both in one call each, in place, with the OpenSSL
 * linked into Node (1.7× node:crypto's throughput on 64 KiB records and
 * ~8× on small ones, where node:crypto's per-record cipher object
 * dominates). Without the addon, or with POLYTUN_NATIVE_AEAD=0, node:crypto
 * does the same job with the same bytes on the wire.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { CipherChaCha20Poly1305, CipherGCM, DecipherChaCha20Poly1305, DecipherGCM } from 'node:crypto';
import { nativeAvailable, nativeBinding } from '../native/addon.js';

/** The record ciphers polytun speaks (names as OpenSSL and TLS 1.3 spell them). */
export const RECORD_CIPHERS = ['chacha20-poly1305', 'aes-256-gcm'] as const;
export type RecordCipher = (typeof RECORD_CIPHERS)[number];
/** The addon's number for each cipher (native/src/aead.c). */
const NATIVE_ALG: Record<RecordCipher, number> = { 'chacha20-poly1305': 0, 'aes-256-gcm': 1 };

/** See the file comment. */
export interface RecordAead {
  seal(src: Buffer, srcOff: number, len: number, dst: Buffer, dstOff: number, aad16: number, counter: number): void;
  open(buf: Buffer, off: number, len: number, aad16: number, counter: number): boolean;
  openv(dst: Buffer, dstOff: number, len: number, aad16: number, counter: number, tag: Buffer, segments: readonly Buffer[]): boolean;
}

const TAG = 16;

function nonceFor(buf: Buffer, counter: number): Buffer {
  // 4 zero bytes || u64 LE; counters stay below 2^53.
  buf.writeUInt32LE(counter >>> 0, 4);
  buf.writeUInt32LE(Math.floor(counter / 0x100000000), 8);
  return buf;
}

// One overload per mode in @types/node: a union argument picks none, hence the two branches.
function cipherFor(alg: RecordCipher, key: Buffer, nonce: Buffer): CipherGCM | CipherChaCha20Poly1305 {
  return alg === 'aes-256-gcm' ? createCipheriv(alg, key, nonce, { authTagLength: TAG }) : createCipheriv(alg, key, nonce, { authTagLength: TAG });
}

function decipherFor(alg: RecordCipher, key: Buffer, nonce: Buffer): DecipherGCM | DecipherChaCha20Poly1305 {
  return alg === 'aes-256-gcm' ? createDecipheriv(alg, key, nonce, { authTagLength: TAG }) : createDecipheriv(alg, key, nonce, { authTagLength: TAG });
}

/** node:crypto: a cipher object per record. */
class NodeAead implements RecordAead {
  private readonly nonce = Buffer.alloc(12);
  private readonly aad = Buffer.alloc(2);
  constructor(
    private readonly key: Buffer,
    private readonly alg: RecordCipher,
  ) {}

  seal(src: Buffer, srcOff: number, len: number, dst: Buffer, dstOff: number, aad16: number, counter: number): void {
    const c = cipherFor(this.alg, this.key, nonceFor(this.nonce, counter));
    this.aad.writeUInt16BE(aad16, 0);
    c.setAAD(this.aad, { plaintextLength: len });
    const ct = c.update(src.subarray(srcOff, srcOff + len));
    c.final();
    ct.copy(dst, dstOff);
    c.getAuthTag().copy(dst, dstOff + len);
  }

  open(buf: Buffer, off: number, len: number, aad16: number, counter: number): boolean {
    const d = decipherFor(this.alg, this.key, nonceFor(this.nonce, counter));
    this.aad.writeUInt16BE(aad16, 0);
    d.setAAD(this.aad, { plaintextLength: len });
    d.setAuthTag(buf.subarray(off + len, off + len + TAG));
    const pt = d.update(buf.subarray(off, off + len));
    try {
      d.final();
    } catch {
      return false;
    }
    pt.copy(buf, off);
    return true;
  }

  openv(dst: Buffer, dstOff: number, len: number, aad16: number, counter: number, tag: Buffer, segments: readonly Buffer[]): boolean {
    const d = decipherFor(this.alg, this.key, nonceFor(this.nonce, counter));
    this.aad.writeUInt16BE(aad16, 0);
    d.setAAD(this.aad, { plaintextLength: len });
    d.setAuthTag(tag.subarray(0, TAG));
    let at = dstOff;
    for (const seg of segments) at += d.update(seg).copy(dst, at);
    if (at - dstOff !== len) throw new RangeError(`openv: segments hold ${at - dstOff} bytes, not ${len}`);
    try {
      d.final();
    } catch {
      return false;
    }
    return true;
  }
}

/** The addon: one EVP context per key, one call per record. */
class NativeAead implements RecordAead {
  private readonly b = nativeBinding('native AEAD');
  private readonly handle: object;
  constructor(key: Buffer, encrypt: boolean, alg: RecordCipher) {
    this.handle = this.b.aeadCreate(key, encrypt, NATIVE_ALG[alg]);
  }

  seal(src: Buffer, srcOff: number, len: number, dst: Buffer, dstOff: number, aad16: number, counter: number): void {
    this.b.aeadSeal(this.handle, src, srcOff, len, dst, dstOff, aad16, counter >>> 0, Math.floor(counter / 0x100000000));
  }

  open(buf: Buffer, off: number, len: number, aad16: number, counter: number): boolean {
    return this.b.aeadOpen(this.handle, buf, off, len, aad16, counter >>> 0, Math.floor(counter / 0x100000000));
  }

  openv(dst: Buffer, dstOff: number, len: number, aad16: number, counter: number, tag: Buffer, segments: readonly Buffer[]): boolean {
    return this.b.aeadOpenv(this.handle, dst, dstOff, len, aad16, counter >>> 0, Math.floor(counter / 0x100000000), tag, segments);
  }
}

/**
 * Records on a TLS-bound channel (see handshake.ts): TLS, end to end between
 * the two polytun processes, already encrypts and authenticates them, so
 * they are not encrypted a second time. Same record format: the plaintext
 * is copied where the ciphertext would go, and the tag is 16 zero bytes,
 * which the opener checks, so a side that disagrees about the mode fails
 * at the first record instead of reading garbage.
 */
class TlsBoundAead implements RecordAead {
  seal(src: Buffer, srcOff: number, len: number, dst: Buffer, dstOff: number): void {
    if (src !== dst || srcOff !== dstOff) src.copy(dst, dstOff, srcOff, srcOff + len);
    dst.fill(0, dstOff + len, dstOff + len + TAG);
  }

  open(buf: Buffer, off: number, len: number): boolean {
    return zeroTag(buf, off + len);
  }

  openv(dst: Buffer, dstOff: number, len: number, _aad16: number, _counter: number, tag: Buffer, segments: readonly Buffer[]): boolean {
    let at = dstOff;
    for (const seg of segments) at += seg.copy(dst, at);
    if (at - dstOff !== len) throw new RangeError(`openv: segments hold ${at - dstOff} bytes, not ${len}`);
    return zeroTag(tag, 0);
  }
}

function zeroTag(buf: Buffer, off: number): boolean {
  let acc = 0;
  for (let i = off; i < off + TAG; i++) acc |= buf[i] as number;
  return acc === 0;
}

const TLS_BOUND = new TlsBoundAead();

/** The record protection of a TLS-bound channel (see TlsBoundAead; it keeps no state, so one serves all). */
export function createTlsBoundAead(): RecordAead {
  return TLS_BOUND;
}

/** Which implementation {@link createRecordAead} picks. */
export const aeadImplementation: 'native' | 'node:crypto' = nativeAvailable && process.env.POLYTUN_NATIVE_AEAD !== '0' ? 'native' : 'node:crypto';

/**
 * An AEAD for one direction. `impl` overrides the choice (tests compare the
 * two); 'native' throws NativeUnavailableError when the addon is missing.
 */
export function createRecordAead(
  key: Buffer,
  encrypt: boolean,
  impl: 'native' | 'node:crypto' = aeadImplementation,
  alg: RecordCipher = 'chacha20-poly1305',
): RecordAead {
  // A stale addon (built before AES-GCM) would ignore the algorithm: node:crypto then, same bytes.
  if (impl === 'native' && (nativeBinding('native AEAD').aeadAlgorithms ?? 1) > NATIVE_ALG[alg]) return new NativeAead(key, encrypt, alg);
  return new NodeAead(Buffer.from(key), alg);
}
