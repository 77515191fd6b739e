import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { nativeAvailable } from '../../../src/native/addon.js';
import { aeadImplementation, createRecordAead } from '../../../src/secure/aead.js';

const IMPLS: ('native' | 'node:crypto')[] = ['node:crypto', ...(nativeAvailable ? (['native'] as const) : [])];

/** The reference: node:crypto with the record layer's nonce and AAD layout, built independently. */
function reference(key: Buffer, pt: Buffer, aad16: number, counter: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(BigInt(counter), 4);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(Buffer.from([aad16 >> 8, aad16 & 0xff]), { plaintextLength: pt.length });
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

function flip(b: Buffer, i: number): true {
  b[i] = (b[i] as number) ^ 1;
  return true;
}

describe('record AEAD', () => {
  it(`uses the native addon when it is built (here: ${aeadImplementation})`, (t) => {
    if (!nativeAvailable) return t.skip('native addon not built');
    assert.equal(aeadImplementation, process.env.POLYTUN_NATIVE_AEAD === '0' ? 'node:crypto' : 'native');
  });

  for (const impl of IMPLS) {
    it(`${impl}: seal matches node:crypto and open inverts it, at any offset and counter`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 2000 }), fc.nat(0xffff), fc.nat(2 ** 40), fc.nat(7), fc.nat(7), (ptU8, aad, counter, srcOff, dstOff) => {
          const key = randomBytes(32);
          const pt = Buffer.from(ptU8);
          const src = Buffer.alloc(srcOff + pt.length);
          pt.copy(src, srcOff);
          const dst = Buffer.alloc(dstOff + pt.length + 16);
          createRecordAead(key, true, impl).seal(src, srcOff, pt.length, dst, dstOff, aad, counter);
          assert.deepEqual(dst.subarray(dstOff), reference(key, pt, aad, counter));
          assert.equal(createRecordAead(key, false, impl).open(dst, dstOff, pt.length, aad, counter), true);
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
          const sealed = reference(key, pt, 0xbeef, 77);
          if (tamper) flip(sealed, (sealed.length * 7919) % sealed.length);
          const cuts = [...new Set(cutsRaw.map((c) => c % pt.length))].sort((a, b) => a - b);
          const segs: Buffer[] = [];
          let at = 0;
          for (const c of [...cuts, pt.length]) {
            segs.push(Buffer.from(sealed.subarray(at, c)));
            at = c;
          }
          const dst = Buffer.alloc(pt.length + 3);
          const ok = createRecordAead(key, false, impl).openv(dst, 3, pt.length, 0xbeef, 77, sealed.subarray(pt.length), segs);
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
      createRecordAead(key, true, impl).seal(buf, 0, pt.length, buf, 0, 7, 3);
      assert.deepEqual(buf, reference(key, pt, 7, 3));
    });

    it(`${impl}: open refuses a flipped bit in ciphertext, tag, AAD or nonce`, () => {
      const key = randomBytes(32);
      const pt = randomBytes(300);
      const good = reference(key, pt, 0x1234, 9);
      const tries: [string, (b: Buffer) => boolean][] = [
        ['ciphertext', (b) => flip(b, 17) && createRecordAead(key, false, impl).open(b, 0, 300, 0x1234, 9)],
        ['tag', (b) => flip(b, 305) && createRecordAead(key, false, impl).open(b, 0, 300, 0x1234, 9)],
        ['aad', (b) => createRecordAead(key, false, impl).open(b, 0, 300, 0x1235, 9)],
        ['nonce', (b) => createRecordAead(key, false, impl).open(b, 0, 300, 0x1234, 10)],
        ['key', (b) => createRecordAead(randomBytes(32), false, impl).open(b, 0, 300, 0x1234, 9)],
      ];
      for (const [what, attempt] of tries) assert.equal(attempt(Buffer.from(good)), false, `${what} tampering must fail`);
      assert.equal(createRecordAead(key, false, impl).open(Buffer.from(good), 0, 300, 0x1234, 9), true);
    });
  }

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
