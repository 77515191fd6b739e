import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { nativeAvailable, nativeBinding } from '../../../src/native/addon.js';
import { RECORD_CIPHERS, aeadImplementation, createRecordAead, type RecordCipher } from '../../../src/secure/aead.js';

const IMPLS: ('native' | 'node:crypto')[] = ['node:crypto', ...(nativeAvailable ? (['native'] as const) : [])];
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

/** An AEAD seal by node:crypto with any nonce and AAD: checked against the published vectors below. */
function aeadSeal(alg: RecordCipher, key: Buffer, nonce: Buffer, aad: Buffer, pt: Buffer): Buffer {
  const c = alg === 'aes-256-gcm' ? createCipheriv(alg, key, nonce, { authTagLength: 16 }) : createCipheriv(alg, key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: pt.length });
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

/** The reference: that seal with the record layer's nonce and AAD layout, built independently. */
function reference(key: Buffer, pt: Buffer, aad16: number, counter: number, alg: RecordCipher = 'chacha20-poly1305'): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(BigInt(counter), 4);
  return aeadSeal(alg, key, nonce, Buffer.from([aad16 >> 8, aad16 & 0xff]), pt);
}

/**
 * Published vectors, each with its own nonce and AAD (the record layer's
 * 2-byte AAD and counter nonce cannot express them, so they pin the
 * reference, which then pins every implementation on random records).
 */
const VECTORS: { name: string; alg: RecordCipher; key: Buffer; nonce: Buffer; aad: Buffer; pt: Buffer; sealed: Buffer }[] = [
  {
    name: 'RFC 8439 §2.8.2',
    alg: 'chacha20-poly1305',
    key: Buffer.from(Array.from({ length: 32 }, (_, i) => 0x80 + i)),
    nonce: hex('070000004041424344454647'),
    aad: hex('50515253c0c1c2c3c4c5c6c7'),
    pt: Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."),
    sealed: hex(`d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b
      1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
      3ff4def08e4b7a9de576d26586cec64b6116 1ae10b594f09e26a7e902ecbd0600691`),
  },
  {
    name: 'GCM spec (McGrew–Viega) test case 16, AES-256',
    alg: 'aes-256-gcm',
    key: hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
    nonce: hex('cafebabefacedbaddecaf888'),
    aad: hex('feedfacedeadbeeffeedfacedeadbeefabaddad2'),
    pt: hex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39'),
    sealed: hex(`522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838
      c5f61e6393ba7a0abcc9f662 76fc6ece0f4e1768cddf8853bb2d551b`),
  },
  {
    name: 'GCM spec (McGrew–Viega) test case 14, AES-256',
    alg: 'aes-256-gcm',
    key: Buffer.alloc(32),
    nonce: Buffer.alloc(12),
    aad: Buffer.alloc(0),
    pt: Buffer.alloc(16),
    sealed: hex('cea7403d4d606b6e074ec5d3baf39d18 d0d1c8a799996bf0265b98b5d48ab919'),
  },
];

/**
 * Ciphertexts our implementations must produce themselves, with key 0 and
 * record counter 0 (nonce 0^12, which the record layout can express): the
 * encryption does not depend on the AAD, only the tag does.
 */
const KEYSTREAM: Record<RecordCipher, { source: string; pt: Buffer; ct: Buffer }> = {
  // ChaCha20 block 1 (the AEAD encrypts from block 1) of key 0, nonce 0.
  'chacha20-poly1305': {
    source: 'RFC 8439 A.1 test vector #2',
    pt: Buffer.alloc(64),
    ct: hex('9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f'),
  },
  'aes-256-gcm': { source: 'GCM test case 14', pt: Buffer.alloc(16), ct: hex('cea7403d4d606b6e074ec5d3baf39d18') },
};

function flip(b: Buffer, i: number): true {
  b[i] = (b[i] as number) ^ 1;
  return true;
}

describe('record AEAD', () => {
  it(`uses the native addon when it is built (here: ${aeadImplementation})`, (t) => {
    if (!nativeAvailable) return t.skip('native addon not built');
    assert.equal(aeadImplementation, process.env.POLYTUN_NATIVE_AEAD === '0' ? 'node:crypto' : 'native');
  });

  for (const v of VECTORS) {
    it(`the reference reproduces ${v.name} (${v.alg})`, () => {
      assert.equal(aeadSeal(v.alg, v.key, v.nonce, v.aad, v.pt).toString('hex'), v.sealed.toString('hex'));
    });
  }

  for (const impl of IMPLS) for (const alg of RECORD_CIPHERS) describe(`${impl} ${alg}`, () => {
    it(`${impl} ${alg}: produces the published ciphertext (${KEYSTREAM[alg].source}) and opens it`, () => {
      const { pt, ct } = KEYSTREAM[alg];
      const buf = Buffer.alloc(pt.length + 16);
      createRecordAead(Buffer.alloc(32), true, impl, alg).seal(pt, 0, pt.length, buf, 0, 0x0102, 0);
      assert.equal(buf.subarray(0, pt.length).toString('hex'), ct.toString('hex'));
      assert.deepEqual(buf, reference(Buffer.alloc(32), pt, 0x0102, 0, alg));
      assert.equal(createRecordAead(Buffer.alloc(32), false, impl, alg).open(buf, 0, pt.length, 0x0102, 0), true);
      assert.deepEqual(buf.subarray(0, pt.length), pt);
    });

    it(`${impl}: seal matches node:crypto and open inverts it, at any offset and counter`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 2000 }), fc.nat(0xffff), fc.nat(2 ** 40), fc.nat(7), fc.nat(7), (ptU8, aad, counter, srcOff, dstOff) => {
          const key = randomBytes(32);
          const pt = Buffer.from(ptU8);
          const src = Buffer.alloc(srcOff + pt.length);
          pt.copy(src, srcOff);
          const dst = Buffer.alloc(dstOff + pt.length + 16);
          createRecordAead(key, true, impl, alg).seal(src, srcOff, pt.length, dst, dstOff, aad, counter);
          assert.deepEqual(dst.subarray(dstOff), reference(key, pt, aad, counter, alg));
          assert.equal(createRecordAead(key, false, impl, alg).open(dst, dstOff, pt.length, aad, counter), true);
          assert.deepEqual(dst.subarray(dstOff, dstOff + pt.length), pt);
        }),
        { numRuns: 200 },
      );
    });

    it(`${impl}: openv decrypts a ciphertext split into any pieces`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.array(fc.nat(3000), { maxLength: 5 }), fc.boolean(), (ptU8, cutsRaw, tamper) => {
          const key = randomBytes(32);
          const pt = Buffer.from(ptU8);
          const sealed = reference(key, pt, 0xbeef, 77, alg);
          if (tamper) flip(sealed, (sealed.length * 7919) % sealed.length);
          const cuts = [...new Set(cutsRaw.map((c) => c % pt.length))].sort((a, b) => a - b);
          const segs: Buffer[] = [];
          let at = 0;
          for (const c of [...cuts, pt.length]) {
            segs.push(Buffer.from(sealed.subarray(at, c)));
            at = c;
          }
          const dst = Buffer.alloc(pt.length + 3);
          const ok = createRecordAead(key, false, impl, alg).openv(dst, 3, pt.length, 0xbeef, 77, sealed.subarray(pt.length), segs);
          assert.equal(ok, !tamper);
          if (ok) assert.deepEqual(dst.subarray(3), pt);
        }),
        { numRuns: 200 },
      );
    });

    it(`${impl}: seals in place when source and destination are the same bytes`, () => {
      const key = randomBytes(32);
      const pt = randomBytes(70_000);
      const buf = Buffer.concat([pt, Buffer.alloc(16)]);
      createRecordAead(key, true, impl, alg).seal(buf, 0, pt.length, buf, 0, 7, 3);
      assert.deepEqual(buf, reference(key, pt, 7, 3, alg));
    });

    it(`${impl}: open refuses a flipped bit in ciphertext, tag, AAD or nonce`, () => {
      const key = randomBytes(32);
      const pt = randomBytes(300);
      const good = reference(key, pt, 0x1234, 9, alg);
      const other: RecordCipher = alg === 'aes-256-gcm' ? 'chacha20-poly1305' : 'aes-256-gcm';
      const tries: [string, (b: Buffer) => boolean][] = [
        ['ciphertext', (b) => flip(b, 17) && createRecordAead(key, false, impl, alg).open(b, 0, 300, 0x1234, 9)],
        ['tag', (b) => flip(b, 305) && createRecordAead(key, false, impl, alg).open(b, 0, 300, 0x1234, 9)],
        ['aad', (b) => createRecordAead(key, false, impl, alg).open(b, 0, 300, 0x1235, 9)],
        ['nonce', (b) => createRecordAead(key, false, impl, alg).open(b, 0, 300, 0x1234, 10)],
        ['key', (b) => createRecordAead(randomBytes(32), false, impl, alg).open(b, 0, 300, 0x1234, 9)],
        ['cipher', (b) => createRecordAead(key, false, impl, other).open(b, 0, 300, 0x1234, 9)],
      ];
      for (const [what, attempt] of tries) assert.equal(attempt(Buffer.from(good)), false, `${what} tampering must fail`);
      assert.equal(createRecordAead(key, false, impl, alg).open(Buffer.from(good), 0, 300, 0x1234, 9), true);
    });
  });

  for (const alg of RECORD_CIPHERS) {
    it(`native and node:crypto ${alg} seal the same bytes and open each other's records`, (t) => {
      if (!nativeAvailable) return t.skip('native addon not built');
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 70_000 }), fc.nat(0xffff), fc.nat(2 ** 52), (ptU8, aad, counter) => {
          const key = randomBytes(32);
          const pt = Buffer.from(ptU8);
          const a = Buffer.alloc(pt.length + 16);
          const b = Buffer.alloc(pt.length + 16);
          createRecordAead(key, true, 'native', alg).seal(pt, 0, pt.length, a, 0, aad, counter);
          createRecordAead(key, true, 'node:crypto', alg).seal(pt, 0, pt.length, b, 0, aad, counter);
          assert.deepEqual(a, b);
          assert.equal(createRecordAead(key, false, 'node:crypto', alg).open(a, 0, pt.length, aad, counter), true);
          assert.equal(createRecordAead(key, false, 'native', alg).open(b, 0, pt.length, aad, counter), true);
          assert.deepEqual(a.subarray(0, pt.length), pt);
          assert.deepEqual(b.subarray(0, pt.length), pt);
        }),
        { numRuns: 100 },
      );
    });
  }

  it('native: refuses an unknown algorithm', (t) => {
    if (!nativeAvailable) return t.skip('native addon not built');
    assert.throws(() => nativeBinding('test').aeadCreate(Buffer.alloc(32), true, 2), /alg must be 0/);
    assert.equal(nativeBinding('test').aeadAlgorithms, 2);
  });

  it('native: refuses ranges outside the buffer instead of touching other memory', (t) => {
    if (!nativeAvailable) return t.skip('native addon not built');
    const key = randomBytes(32);
    const s = createRecordAead(key, true, 'native');
    const o = createRecordAead(key, false, 'native');
    assert.throws(() => s.seal(Buffer.alloc(10), 0, 11, Buffer.alloc(100), 0, 0, 0), /does not fit/);
    assert.throws(() => s.seal(Buffer.alloc(10), 0, 10, Buffer.alloc(25), 0, 0, 0), /does not fit/);
    assert.throws(() => o.open(Buffer.alloc(20), 5, 0, 0, 0), /does not fit/);
    assert.throws(() => o.openv(Buffer.alloc(10), 0, 10, 0, 0, Buffer.alloc(16), [Buffer.alloc(6), Buffer.alloc(6)]), /longer than len/);
    assert.throws(() => o.openv(Buffer.alloc(10), 0, 10, 0, 0, Buffer.alloc(16), [Buffer.alloc(6)]), /shorter than len/);
    assert.throws(() => o.openv(Buffer.alloc(10), 0, 10, 0, 0, Buffer.alloc(8), [Buffer.alloc(10)]), /16-byte/);
    assert.throws(() => (o as unknown as { seal: typeof s.seal }).seal(Buffer.alloc(10), 0, 1, Buffer.alloc(100), 0, 0, 0), /created for opening/);
  });
});
