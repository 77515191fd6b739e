import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { AuthError, ClosedError, ConfigError, LimitError, ProtocolError } from '../../../src/core/errors.js';
import { generateKeyPair, publicKeyOf } from '../../../src/secure/keys.js';
import { CipherState, HandshakeState, SymmetricState, parseProtocolName } from '../../../src/secure/noise.js';
import type { HandshakeInit } from '../../../src/secure/noise.js';

interface Vector {
  from: string;
  protocol_name: string;
  init_prologue: string;
  init_psks?: string[];
  init_static?: string;
  init_ephemeral: string;
  init_remote_static?: string;
  resp_prologue: string;
  resp_psks?: string[];
  resp_static?: string;
  resp_ephemeral?: string;
  resp_remote_static?: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}
const fixture = JSON.parse(readFileSync(new URL('../../fixtures/noise-vectors.json', import.meta.url), 'utf8')) as {
  source: unknown;
  vectors: Vector[];
};

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const pair = (priv: string | undefined) => (priv === undefined ? undefined : { privateKey: hex(priv), publicKey: publicKeyOf(hex(priv)) });

function side(v: Vector, initiator: boolean): HandshakeState {
  const p = initiator ? 'init' : 'resp';
  const rs = v[`${p}_remote_static`];
  return new HandshakeState({
    protocolName: v.protocol_name,
    initiator,
    prologue: hex(v[`${p}_prologue`]),
    staticKeyPair: pair(v[`${p}_static`]),
    ephemeralKeyPair: pair(v[`${p}_ephemeral`]),
    remoteStaticKey: rs === undefined ? undefined : hex(rs),
    psks: (v[`${p}_psks`] ?? []).map(hex),
  });
}

describe('noise test vectors (cacophony + snow)', () => {
  it('fixture holds vectors and names its source', () => {
    assert.ok(fixture.vectors.length >= 50);
    assert.match(JSON.stringify(fixture.source), /mcginty\/snow/);
    for (const name of ['NN', 'NK', 'XX', 'IK', 'IKpsk2', 'NNpsk0', 'XXpsk3']) {
      assert.ok(fixture.vectors.some((v) => v.protocol_name === `Noise_${name}_25519_ChaChaPoly_SHA256`), name);
    }
  });

  for (const [i, v] of fixture.vectors.entries()) {
    it(`#${i} ${v.from} ${v.protocol_name}`, () => {
      const init = side(v, true);
      const resp = side(v, false);
      const handshakeLength = parseProtocolName(v.protocol_name).messages.length;
      const oneWay = handshakeLength === 1;
      let m = 0;
      for (; m < handshakeLength; m++) {
        const msg = v.messages[m]!;
        const [writer, reader] = m % 2 === 0 ? [init, resp] : [resp, init];
        assert.equal(writer.next, 'write');
        assert.equal(reader.next, 'read');
        const ct = writer.writeMessage(hex(msg.payload));
        assert.equal(ct.toString('hex'), msg.ciphertext, `handshake message ${m}`);
        assert.equal(reader.readMessage(ct).toString('hex'), msg.payload);
      }
      assert.equal(init.next, 'done');
      assert.equal(resp.next, 'done');
      assert.deepEqual(init.handshakeHash, resp.handshakeHash);
      if (v.handshake_hash !== undefined) assert.equal(init.handshakeHash.toString('hex'), v.handshake_hash);
      if (v.init_static !== undefined && v.resp_remote_static === undefined && !oneWay) {
        assert.deepEqual(resp.remoteStaticKey, publicKeyOf(hex(v.init_static)));
      }
      const it = init.transport();
      const rt = resp.transport();
      let checked = 0;
      for (; m < v.messages.length; m++) {
        const msg = v.messages[m]!;
        const fromInit = oneWay || m % 2 === 0;
        const [send, recv] = fromInit ? [it.send, rt.recv] : [rt.send, it.recv];
        const ct = send.encryptWithAd(Buffer.alloc(0), hex(msg.payload));
        assert.equal(ct.toString('hex'), msg.ciphertext, `transport message ${m}`);
        assert.equal(recv.decryptWithAd(Buffer.alloc(0), ct).toString('hex'), msg.payload);
        checked++;
      }
      assert.ok(checked > 0, 'vector has transport messages');
    });
  }
});

function nonceBytes(n: bigint): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64LE(n, 4);
  return b;
}
function reference(k: Buffer, n: bigint, ad: Buffer, pt: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', k, nonceBytes(n), { authTagLength: 16 });
  c.setAAD(ad, { plaintextLength: pt.length });
  const body = c.update(pt);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

describe('CipherState', () => {
  const key = Buffer.alloc(32, 7);
  const ad = Buffer.from('ad');
  const pt = Buffer.from('hello');

  it('passes data through while it has no key', () => {
    const c = new CipherState();
    assert.equal(c.hasKey(), false);
    assert.equal(c.encryptWithAd(ad, pt), pt);
    assert.equal(c.decryptWithAd(ad, pt), pt);
  });

  it('encodes the counter as 64-bit little endian across the 32-bit boundary', () => {
    for (const n of [0, 1, 0xffffffff, 0x100000000, 0x123456789ab, Number.MAX_SAFE_INTEGER]) {
      const c = new CipherState();
      c.initializeKey(key);
      c.setNonce(n);
      assert.deepEqual(c.encryptWithAd(ad, pt), reference(key, BigInt(n), ad, pt), `nonce ${n}`);
    }
  });

  it('a failed decryption throws AuthError and does not advance the nonce', () => {
    const a = new CipherState();
    const b = new CipherState();
    a.initializeKey(key);
    b.initializeKey(key);
    const ct = a.encryptWithAd(ad, pt);
    const bad = Buffer.from(ct);
    bad[0]! ^= 1;
    assert.throws(() => b.decryptWithAd(ad, bad), AuthError);
    assert.throws(() => b.decryptWithAd(Buffer.from('other'), ct), AuthError);
    assert.equal(b.nonce, 0);
    assert.deepEqual(b.decryptWithAd(ad, ct), pt);
    assert.equal(b.nonce, 1);
  });

  it('rejects a ciphertext shorter than the tag with ProtocolError', () => {
    const c = new CipherState();
    c.initializeKey(key);
    assert.throws(() => c.decryptWithAd(ad, Buffer.alloc(15)), ProtocolError);
  });

  it('signals nonce exhaustion instead of wrapping', () => {
    const c = new CipherState();
    c.initializeKey(key);
    c.setNonce(Number.MAX_SAFE_INTEGER);
    c.encryptWithAd(ad, pt);
    assert.throws(() => c.encryptWithAd(ad, pt), LimitError);
    assert.throws(() => c.setNonce(2 ** 53), LimitError);
  });

  it('exportKey hands out a copy of the key, and refuses without one', () => {
    const c = new CipherState();
    assert.throws(() => c.exportKey(), ProtocolError);
    c.initializeKey(key);
    const k = c.exportKey();
    assert.deepEqual(k, key);
    k.fill(0);
    assert.deepEqual(c.encryptWithAd(ad, pt), reference(key, 0n, ad, pt));
  });

  it('rekey uses ENCRYPT(k, 2^64-1, "", zeros) and keeps the nonce', () => {
    const c = new CipherState();
    c.initializeKey(key);
    c.encryptWithAd(ad, pt);
    c.rekey();
    const k2 = reference(key, 2n ** 64n - 1n, Buffer.alloc(0), Buffer.alloc(32)).subarray(0, 32);
    assert.equal(c.nonce, 1);
    assert.deepEqual(c.encryptWithAd(ad, pt), reference(k2, 1n, ad, pt));
  });
});

describe('SymmetricState', () => {
  it('pads short protocol names and hashes long ones', () => {
    const short = new SymmetricState('Noise_NN_25519_ChaChaPoly_SHA256');
    assert.deepEqual(short.getHandshakeHash(), Buffer.concat([Buffer.from('Noise_NN_25519_ChaChaPoly_SHA256')], 32));
    const long = new SymmetricState('Noise_XXpsk0+psk3_25519_ChaChaPoly_SHA256');
    assert.equal(long.getHandshakeHash().length, 32);
    assert.notDeepEqual(long.getHandshakeHash().subarray(0, 5), Buffer.from('Noise'));
  });
});

const IK = 'Noise_IK_25519_ChaChaPoly_SHA256';

const si = generateKeyPair();
const sr = generateKeyPair();

function pairFor(protocolName: string, extra: Partial<HandshakeInit> = {}): [HandshakeState, HandshakeState] {
  const psk = Buffer.alloc(32, 9);
  const psks = Array.from({ length: parseProtocolName(protocolName).pskCount }, () => psk);
  const init = new HandshakeState({ protocolName, initiator: true, staticKeyPair: si, remoteStaticKey: sr.publicKey, psks, ...extra });
  const resp = new HandshakeState({ protocolName, initiator: false, staticKeyPair: sr, remoteStaticKey: si.publicKey, psks });
  return [init, resp];
}

describe('HandshakeState', () => {
  it('IK with fresh keys: payloads, pinned key, matching transports', () => {
    const prologue = Buffer.from('polytun');
    const init = new HandshakeState({ protocolName: IK, initiator: true, staticKeyPair: si, remoteStaticKey: sr.publicKey, prologue });
    const resp = new HandshakeState({ protocolName: IK, initiator: false, staticKeyPair: sr, prologue });
    const resp2 = new HandshakeState({ protocolName: IK, initiator: false, staticKeyPair: generateKeyPair(), prologue: Buffer.from('polytun') });
    const m1 = init.writeMessage(Buffer.from('hi'));
    assert.deepEqual(resp.readMessage(m1), Buffer.from('hi'));
    assert.throws(() => resp2.readMessage(m1), AuthError); // not the pinned server
    assert.deepEqual(init.readMessage(resp.writeMessage(Buffer.from('yo'))), Buffer.from('yo'));
    assert.deepEqual(resp.remoteStaticKey, si.publicKey);
    const a = init.transport();
    const b = resp.transport();
    assert.deepEqual(b.recv.decryptWithAd(Buffer.alloc(0), a.send.encryptWithAd(Buffer.alloc(0), Buffer.from('x'))), Buffer.from('x'));
    assert.deepEqual(a.recv.decryptWithAd(Buffer.alloc(0), b.send.encryptWithAd(Buffer.alloc(0), Buffer.from('y'))), Buffer.from('y'));
  });

  it('a prologue mismatch fails authentication', () => {
    const [init, resp] = pairFor('Noise_NN_25519_ChaChaPoly_SHA256', { prologue: Buffer.from('v1') });
    resp.readMessage(init.writeMessage());
    assert.throws(() => init.readMessage(resp.writeMessage()), AuthError);
  });

  it('refuses out-of-turn calls, split before done, and every call after a failure', () => {
    const [init, resp] = pairFor(IK);
    assert.throws(() => init.readMessage(Buffer.alloc(100)), ProtocolError);
    assert.throws(() => resp.writeMessage(), ProtocolError);
    assert.throws(() => init.split(), ProtocolError);
    assert.equal(init.next, 'write'); // misuse does not kill the state
    assert.throws(() => resp.readMessage(Buffer.alloc(10)), ProtocolError);
    assert.equal(resp.next, 'failed');
    assert.throws(() => resp.readMessage(init.writeMessage()), (e: unknown) => e instanceof ClosedError && e.cause instanceof ProtocolError);
  });

  it('rejects bad configuration with ConfigError', () => {
    assert.throws(() => new HandshakeState({ protocolName: 'Noise_ZZ_25519_ChaChaPoly_SHA256', initiator: true }), ConfigError);
    assert.throws(() => new HandshakeState({ protocolName: 'Noise_NN_448_AESGCM_SHA512', initiator: true }), ConfigError);
    assert.throws(() => new HandshakeState({ protocolName: 'Noise_NNpsk3_25519_ChaChaPoly_SHA256', initiator: true, psks: [Buffer.alloc(32)] }), ConfigError);
    assert.throws(() => new HandshakeState({ protocolName: IK, initiator: true, staticKeyPair: generateKeyPair() }), ConfigError);
    assert.throws(() => new HandshakeState({ protocolName: IK, initiator: false }), ConfigError);
    assert.throws(() => new HandshakeState({ protocolName: 'Noise_NNpsk0_25519_ChaChaPoly_SHA256', initiator: true }), ConfigError);
    assert.throws(() => new HandshakeState({ protocolName: 'Noise_NN_25519_ChaChaPoly_SHA256', initiator: true, remoteStaticKey: Buffer.alloc(31) }), ConfigError);
  });

  it('enforces the 65535-byte message limit', () => {
    const [init, resp] = pairFor('Noise_NN_25519_ChaChaPoly_SHA256');
    assert.throws(() => init.writeMessage(Buffer.alloc(65536)), LimitError);
    assert.throws(() => resp.readMessage(Buffer.alloc(65536)), ProtocolError);
  });

  it('a low-order ephemeral key from the peer is an AuthError', () => {
    const [init, resp] = pairFor('Noise_NN_25519_ChaChaPoly_SHA256');
    resp.readMessage(Buffer.alloc(32)); // e = 0: a low-order point
    assert.throws(() => resp.writeMessage(), AuthError);
    assert.equal(init.next, 'write');
  });
});

const FUZZED = ['Noise_NN', 'Noise_NK', 'Noise_XX', 'Noise_IK', 'Noise_IKpsk2', 'Noise_NNpsk0', 'Noise_XXpsk3'].map((n) => `${n}_25519_ChaChaPoly_SHA256`);

describe('tampering with any handshake message is always detected', () => {
  it('single-byte mutation or truncation: only AuthError/ProtocolError, never success', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...FUZZED),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 40 }),
        (name, pick, pos, flip, truncate, payload) => {
          const [init, resp] = pairFor(name);
          const count = parseProtocolName(name).messages.length;
          const target = pick % count;
          let detectedAt = -1;
          let keptLength = 0;
          for (let m = 0; m < count; m++) {
            const [writer, reader] = m % 2 === 0 ? [init, resp] : [resp, init];
            const msg = Buffer.from(writer.writeMessage(Buffer.from(payload)));
            if (m === target) {
              const tampered = truncate ? msg.subarray(0, pos % msg.length) : msg;
              if (!truncate) tampered[pos % msg.length]! ^= flip;
              keptLength = tampered.length;
              try {
                reader.readMessage(tampered);
              } catch (err) {
                assert.ok(err instanceof AuthError || err instanceof ProtocolError, `unexpected ${String(err)}`);
                assert.equal(reader.next, 'failed');
                detectedAt = m;
                break;
              }
              continue;
            }
            try {
              reader.readMessage(msg);
            } catch (err) {
              assert.ok(err instanceof AuthError || err instanceof ProtocolError, `unexpected ${String(err)}`);
              detectedAt = m;
              break;
            }
          }
          assert.notEqual(detectedAt, -1, 'tampering went unnoticed');
          // Only a first message with no key yet (NN's and XX's lone `e`) is
          // caught one message late, by the initiator reading the reply,
          // unless it was cut shorter than its ephemeral key.
          const late = target === 0 && /Noise_(NN|XX)_/.test(name) && keptLength >= 32;
          assert.equal(detectedAt, late ? 1 : target);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('random bytes as a first message: only AuthError/ProtocolError', () => {
    fc.assert(
      fc.property(fc.constantFrom(...FUZZED.filter((n) => !/Noise_(NN|XX)_/.test(n))), fc.uint8Array({ maxLength: 200 }), (name, bytes) => {
        const [, resp] = pairFor(name);
        assert.throws(() => resp.readMessage(Buffer.from(bytes)), (e: unknown) => e instanceof AuthError || e instanceof ProtocolError);
      }),
      { numRuns: 200 },
    );
  });
});
