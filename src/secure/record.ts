/**
 * AEAD record layer for stream carriers.
 *
 * After the handshake each direction has its own 32-byte key. A record is
 * (AEAD: ChaCha20-Poly1305 or AES-256-GCM, chosen in the handshake, cipher.ts)
 *
 * ```
 * +------------------+--------------------------------------+-----------+
 * | masked len (u16) |      AEAD(plaintext)  (len)          | tag (16)  |
 * +------------------+--------------------------------------+-----------+
 * plaintext = | type (u8) | body … |      type 0 = data, 1 = key update
 * ```
 *
 * The length is XOR-masked with ChaCha20 keystream from a separate mask key
 * (like obfs4's SipHash-OFB lengths), so the stream never shows a plaintext
 * length field; the masked length is the AEAD's associated data, so tampering
 * with it fails authentication. One AEAD call per record (src/secure/aead.ts:
 * the native addon when built, else node:crypto); the sealer builds each
 * record in one fresh buffer (one socket write), the opener decrypts in place
 * in the received bytes. The mask keystream is generated in 4 KiB blocks
 * (2048 lengths per cipher call).
 *
 * On a TLS-bound channel (handshake.ts) the same records carry plaintext
 * and a zero tag: the TLS session they ride in, proven end to end, protects
 * them (see aead.ts). Lengths stay masked.
 *
 * Nonces are Noise-style: 4 zero bytes || 64-bit little-endian counter, one
 * counter per direction. A key update record switches the sender to
 * REKEY(k) (Noise §11.3, with ChaChaPoly's REKEY whatever the record
 * cipher: it only derives the next 32-byte key) for the records that follow it; the receiver follows
 * on reading it, so keys roll forward without a round trip.
 */
import { createCipheriv, createHmac } from 'node:crypto';
import { AuthError, LimitError, ProtocolError } from '../core/errors.js';
import type { ChunkList } from '../core/chunks.js';
import { createRecordAead, createTlsBoundAead, type RecordAead, type RecordCipher } from './aead.js';

export const RECORD_HEADER = 2;
export const RECORD_TAG = 16;
/** Header and tag: what a record adds to its plaintext. */
export const RECORD_OVERHEAD = RECORD_HEADER + RECORD_TAG;
/** Largest record plaintext (type byte included). */
export const MAX_RECORD_PLAINTEXT = 65535;
export const RECORD_DATA = 0;
export const RECORD_KEY_UPDATE = 1;

const MASK_BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(MASK_BLOCK);
const ZERO32 = Buffer.alloc(32);
const MAX_NONCE = 2 ** 53; // far below 2^64; we rekey long before

function hkdf1(key: Buffer, label: string): Buffer {
  return createHmac('sha256', key).update(label).digest();
}

/** Noise REKEY: k' = first 32 bytes of ENCRYPT(k, 2^64-1, ε, zeros). */
export function rekeyKey(k: Buffer): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.fill(0xff, 4);
  const c = createCipheriv('chacha20-poly1305', k, nonce, { authTagLength: 16 });
  const out = c.update(ZERO32);
  c.final();
  return out.subarray(0, 32);
}

/** The AEAD of one direction: ours, or the pass-through of a TLS-bound channel. */
function aeadFor(key: Buffer, encrypt: boolean, tlsBound: boolean, cipher: RecordCipher): RecordAead {
  return tlsBound ? createTlsBoundAead() : createRecordAead(key, encrypt, undefined, cipher);
}

/** Length-mask keystream for one direction. */
class MaskStream {
  private cipher;
  private block = Buffer.alloc(0);
  private pos = 0;
  constructor(key: Buffer) {
    this.cipher = createCipheriv('chacha20', hkdf1(key, 'polytun mask'), Buffer.alloc(16));
  }
  next(): number {
    if (this.pos + 2 > this.block.length) {
      this.block = this.cipher.update(ZERO_BLOCK);
      this.pos = 0;
    }
    const v = this.block.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
}

/** Seals records in one direction. */
export class RecordSealer {
  private key: Buffer;
  private aead: RecordAead;
  private mask: MaskStream;
  private counter = 0;
  /** Bytes sealed under the current key (for rekey-by-volume). */
  bytesUnderKey = 0;
  keySince = Date.now();

  constructor(
    key: Buffer,
    private readonly tlsBound = false,
    private readonly cipher: RecordCipher = 'chacha20-poly1305',
  ) {
    this.key = Buffer.from(key);
    this.aead = aeadFor(this.key, true, this.tlsBound, this.cipher);
    this.mask = new MaskStream(this.key);
  }

  /**
   * Seals `plaintext[0..len)` (whose first byte is the record type) and
   * returns the whole record, header, ciphertext and tag, in one new buffer
   * (the plaintext is read, not kept).
   */
  seal(plaintext: Buffer, len = plaintext.length): Buffer {
    const rec = Buffer.allocUnsafe(RECORD_HEADER + len + RECORD_TAG);
    this.sealInto(plaintext, len, rec);
    return rec;
  }

  /**
   * Like seal(), into `out[0, len + RECORD_OVERHEAD)` (a buffer the caller
   * reuses); returns the record's size.
   */
  sealInto(plaintext: Buffer, len: number, out: Buffer): number {
    if (len < 1 || len > MAX_RECORD_PLAINTEXT) throw new LimitError('record', `record plaintext of ${len} bytes is out of range`);
    if (this.counter >= MAX_NONCE) throw new LimitError('nonce', 'nonce space exhausted without a rekey');
    const hdr = (len ^ this.mask.next()) & 0xffff;
    out[0] = hdr >>> 8;
    out[1] = hdr & 0xff;
    this.aead.seal(plaintext, 0, len, out, RECORD_HEADER, hdr, this.counter++);
    this.bytesUnderKey += len;
    return RECORD_HEADER + len + RECORD_TAG;
  }

  /** Seals a key-update record under the old key, then switches to the new key. */
  sealKeyUpdate(): Buffer {
    const out = this.seal(Buffer.from([RECORD_KEY_UPDATE]));
    this.rekey();
    return out;
  }

  private rekey(): void {
    this.key = rekeyKey(this.key);
    this.aead = aeadFor(this.key, true, this.tlsBound, this.cipher);
    this.mask = new MaskStream(this.key);
    this.counter = 0;
    this.bytesUnderKey = 0;
    this.keySince = Date.now();
  }
}

/**
 * Opens records in one direction from a ChunkList fed with carrier bytes.
 * `next()` returns the next record's plaintext (type byte first) or null when
 * more bytes are needed. Any failure throws AuthError/ProtocolError and the
 * opener is dead afterwards: a record stream with a bad record cannot resync.
 */
export class RecordOpener {
  private key: Buffer;
  private aead: RecordAead;
  private mask: MaskStream;
  private counter = 0;
  private readonly hdrBuf = Buffer.alloc(RECORD_HEADER);
  private readonly tag = Buffer.alloc(RECORD_TAG);
  private pendingLen = -1;
  private pendingHdr = 0;
  private dead = false;
  /**
   * When set, every record is decrypted into a buffer from this function
   * (at least `len` bytes) instead of in place, so no plaintext is a view of
   * the received chunks: the carrier may then reuse its read buffers as
   * soon as the chunks are consumed.
   */
  outOfPlace: ((len: number) => Buffer) | undefined;

  constructor(
    key: Buffer,
    private readonly tlsBound = false,
    private readonly cipher: RecordCipher = 'chacha20-poly1305',
  ) {
    this.key = Buffer.from(key);
    this.aead = aeadFor(this.key, false, this.tlsBound, this.cipher);
    this.mask = new MaskStream(this.key);
  }

  /**
   * The plaintext is decrypted in place: it is a view of the bytes pushed
   * into `input` when the record lay in one chunk (so those chunks must not
   * be reused by their producer; socket reads never are), else of one copy.
   */
  next(input: ChunkList): Buffer | null {
    if (this.dead) throw new ProtocolError('record stream is dead after an earlier failure');
    if (this.pendingLen < 0) {
      if (input.length < RECORD_HEADER) return null;
      input.peekInto(this.hdrBuf, RECORD_HEADER);
      input.skip(RECORD_HEADER);
      this.pendingHdr = this.hdrBuf.readUInt16BE(0);
      const len = (this.pendingHdr ^ this.mask.next()) & 0xffff;
      if (len === 0) {
        this.dead = true;
        throw new AuthError('record length is invalid (wrong key or corrupted stream)');
      }
      this.pendingLen = len;
    }
    const len = this.pendingLen;
    if (input.length < len + RECORD_TAG) return null;
    this.pendingLen = -1;
    let pt: Buffer;
    let ok: boolean;
    if (this.outOfPlace === undefined && input.contiguous(len + RECORD_TAG)) {
      // The usual case: ciphertext and tag in one received chunk, opened where they lie.
      const rec = input.read(len + RECORD_TAG);
      ok = this.aead.open(rec, 0, len, this.pendingHdr, this.counter++);
      pt = rec.subarray(0, len);
    } else {
      // Split across reads (or asked to): decrypt the pieces straight into one buffer.
      const segs = input.readSegments(len);
      input.peekInto(this.tag, RECORD_TAG);
      input.skip(RECORD_TAG);
      pt = this.outOfPlace ? this.outOfPlace(len).subarray(0, len) : Buffer.allocUnsafe(len);
      ok = this.aead.openv(pt, 0, len, this.pendingHdr, this.counter++, this.tag, segs);
    }
    if (!ok) {
      this.dead = true;
      throw new AuthError('record failed authentication');
    }
    if (pt[0] === RECORD_KEY_UPDATE) {
      if (pt.length !== 1) {
        this.dead = true;
        throw new ProtocolError('key update record has a body');
      }
      this.key = rekeyKey(this.key);
      this.aead = aeadFor(this.key, false, this.tlsBound, this.cipher);
      this.mask = new MaskStream(this.key);
      this.counter = 0;
    } else if (pt[0] !== RECORD_DATA) {
      this.dead = true;
      throw new ProtocolError(`unknown record type ${pt[0]}`);
    }
    return pt;
  }
}
