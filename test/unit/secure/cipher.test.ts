import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { memoryStreamPair } from '../../../src/carriers/memory.js';
import { ChunkList } from '../../../src/core/chunks.js';
import { RejectCode, RejectedError } from '../../../src/core/errors.js';
import type { SecureChannel } from '../../../src/secure/channel.js';
import {
  aesAcceleration, aesFast, aesFromCpuinfo, clientCipherCaps, measureAes, pickCipher, type CipherChoice, type RecordCipher,
} from '../../../src/secure/cipher.js';
import { MSG1_SIZE, MSG2_SIZE, ReplayGuard, clientHandshake, serverHandshake, type Admission } from '../../../src/secure/handshake.js';
import { CAP_AES_GCM, decodeClientHello, decodeServerHello, encodeClientHello, encodeServerHello } from '../../../src/secure/hello.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { HandshakeState } from '../../../src/secure/noise.js';
import { RECORD_DATA, RecordOpener, RecordSealer } from '../../../src/secure/record.js';

const serverKeys = generateKeyPair();
const clientKeys = generateKeyPair();
const win = { streamWindow: 1 << 20, sessionWindow: 1 << 24 };
const accept = (): Admission => ({ accept: true, sessionId: randomBytes(16), recvSeq: 0, resumed: false, ...win });
const NOISE = { protocolName: 'Noise_IK_25519_ChaChaPoly_SHA256', prologue: Buffer.from('polytun') };

interface Side {
  cipher?: CipherChoice;
  aesAccelerated?: boolean;
}

/** Reads exactly n bytes from a stream (test side of a hand-made peer). */
function reader(stream: Duplex): (n: number) => Promise<Buffer> {
  const input = new ChunkList();
  let wake: (() => void) | undefined;
  stream.on('data', (c: Buffer) => {
    input.push(c);
    wake?.();
  });
  return async (n) => {
    while (input.length < n) await new Promise<void>((r) => (wake = r));
    return input.read(n);
  };
}

/** One record each way; both ends must read what the other sealed. */
async function exchange(c: SecureChannel, s: SecureChannel): Promise<void> {
  const toServer = new Promise<Buffer>((r) => s.onRecord((pt) => r(Buffer.from(pt))));
  const toClient = new Promise<Buffer>((r) => c.onRecord((pt) => r(Buffer.from(pt))));
  s.start();
  c.start();
  const up = Buffer.concat([Buffer.from([RECORD_DATA]), randomBytes(70_000 - 1)]).subarray(0, 65535);
  const down = Buffer.concat([Buffer.from([RECORD_DATA]), randomBytes(300)]);
  c.write(up, up.length);
  s.write(down, down.length);
  assert.deepEqual(await toServer, up);
  assert.deepEqual(await toClient, down);
}

/** Both real handshakes with these policies; the records' cipher on each side (after one record each way). */
async function negotiate(client: Side, server: Side): Promise<[string | undefined, string | undefined]> {
  const [a, b] = memoryStreamPair();
  const [c, s] = await Promise.all([
    clientHandshake({ stream: a, remote: 's', local: 'c', carrier: 'mem' }, { serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...win, ...client }),
    serverHandshake({ stream: b, remote: 'c', local: 's', carrier: 'mem' }, { staticKeyPair: serverKeys, admit: accept, replay: new ReplayGuard(), ...server }),
  ]);
  try {
    await exchange(c.channel, s.channel);
    return [c.channel.info.cipher, s.channel.info.cipher];
  } finally {
    c.channel.abort();
    s.channel.abort();
  }
}

/** The outcome of a handshake that must fail: both sides' errors. */
async function mismatch(client: Side, server: Side): Promise<[unknown, unknown]> {
  const [a, b] = memoryStreamPair();
  const r = await Promise.allSettled([
    clientHandshake({ stream: a, remote: 's', local: 'c', carrier: 'mem' }, { serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...win, ...client }),
    serverHandshake({ stream: b, remote: 'c', local: 's', carrier: 'mem' }, { staticKeyPair: serverKeys, admit: accept, replay: new ReplayGuard(), ...server }),
  ]);
  for (const x of r) if (x.status === 'fulfilled') x.value.channel.abort();
  return [r[0].status === 'rejected' ? r[0].reason : 'accepted', r[1].status === 'rejected' ? r[1].reason : 'accepted'];
}

const AES: RecordCipher = 'aes-256-gcm';
const CHACHA: RecordCipher = 'chacha20-poly1305';

describe('record cipher: AES acceleration', () => {
  it('reads the x86-64 and arm64 flags, and says nothing without them', () => {
    assert.deepEqual(aesFromCpuinfo('processor\t: 0\nflags\t\t: fpu sse2 aes avx2 pclmulqdq\n'), { accelerated: true, how: 'cpuinfo', flags: ['aes', 'pclmulqdq'] });
    assert.equal(aesFromCpuinfo('flags\t\t: fpu sse2 avx2 pclmulqdq\n')?.accelerated, false);
    assert.equal(aesFromCpuinfo('flags\t\t: fpu sse2 aes\n')?.accelerated, false, 'AES-NI without carry-less multiply: GHASH in software');
    assert.equal(aesFromCpuinfo('processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n')?.accelerated, true);
    assert.equal(aesFromCpuinfo('Features\t: fp asimd evtstrm crc32\n')?.accelerated, false);
    assert.equal(aesFromCpuinfo('cpu family: 6\n'), undefined);
  });

  // The verdict is tested on given timings; the real measurement only for its shape. Whether
  // it agrees with this machine's flags depends on the machine being idle: a timing, which
  // belongs in `npm run bench` (its machine line prints each AEAD's speed), not in an assertion.
  it('the measurement calls AES accelerated unless it is clearly slower than ChaCha20', () => {
    assert.equal(aesFast(100, 150), true); // AES-NI: faster
    assert.equal(aesFast(120, 100), true); // a near tie stays on AES's side
    assert.equal(aesFast(130, 100), false);
    assert.equal(aesFast(400, 100), false); // software AES-GCM: several times slower
    const m = measureAes();
    assert.equal(m.how, 'measured');
    assert.equal(typeof m.accelerated, 'boolean');
  });
});

describe('record cipher: the server pick', () => {
  const caps = (choice: CipherChoice, aesAccelerated: boolean): number => clientCipherCaps({ choice, aesAccelerated });
  const pick = (server: CipherChoice, serverAes: boolean, clientCaps: number): string => {
    const p = pickCipher({ choice: server, aesAccelerated: serverAes }, clientCaps);
    return 'cipher' in p ? p.cipher : `reject: ${p.detail}`;
  };
  it('auto: AES-GCM only when both ends are accelerated', () => {
    assert.equal(pick('auto', true, caps('auto', true)), AES);
    assert.equal(pick('auto', false, caps('auto', true)), CHACHA);
    assert.equal(pick('auto', true, caps('auto', false)), CHACHA);
    assert.equal(pick('auto', true, 0), CHACHA, 'an old client (no cipher bits)');
  });
  it('a forced side gets its cipher when the other can use it, else a reject naming both', () => {
    assert.equal(pick('auto', true, caps(CHACHA, true)), CHACHA);
    assert.equal(pick('auto', false, caps(AES, false)), AES);
    assert.equal(pick(CHACHA, true, caps('auto', true)), CHACHA);
    assert.equal(pick(AES, false, caps('auto', false)), AES);
    assert.equal(pick(AES, true, caps(CHACHA, true)), 'reject: the server requires aes-256-gcm, the client requires chacha20-poly1305');
    assert.equal(pick(CHACHA, true, caps(AES, true)), 'reject: the server requires chacha20-poly1305, the client requires aes-256-gcm');
    assert.match(pick(AES, true, 0), /^reject: the server requires aes-256-gcm, the client \(an older polytun/);
  });
});

describe('record cipher: negotiated in the handshake', () => {
  it(`auto on both ends of this machine (AES acceleration: ${aesAcceleration().accelerated}) → ${aesAcceleration().accelerated ? AES : CHACHA}`, async () => {
    const want = aesAcceleration().accelerated ? AES : CHACHA;
    assert.deepEqual(await negotiate({}, {}), [want, want]);
  });

  it('auto: AES-GCM when both ends are accelerated, ChaCha20-Poly1305 when either is not', async () => {
    assert.deepEqual(await negotiate({ aesAccelerated: true }, { aesAccelerated: true }), [AES, AES]);
    assert.deepEqual(await negotiate({ aesAccelerated: false }, { aesAccelerated: true }), [CHACHA, CHACHA]);
    assert.deepEqual(await negotiate({ aesAccelerated: true }, { aesAccelerated: false }), [CHACHA, CHACHA]);
  });

  it('each override wins over the hardware on either side', async () => {
    assert.deepEqual(await negotiate({ cipher: CHACHA, aesAccelerated: true }, { aesAccelerated: true }), [CHACHA, CHACHA]);
    assert.deepEqual(await negotiate({ aesAccelerated: true }, { cipher: CHACHA, aesAccelerated: true }), [CHACHA, CHACHA]);
    assert.deepEqual(await negotiate({ cipher: AES, aesAccelerated: false }, { aesAccelerated: false }), [AES, AES]);
    assert.deepEqual(await negotiate({ aesAccelerated: false }, { cipher: AES, aesAccelerated: false }), [AES, AES]);
    assert.deepEqual(await negotiate({ cipher: AES }, { cipher: AES }), [AES, AES]);
    assert.deepEqual(await negotiate({ cipher: CHACHA }, { cipher: CHACHA }), [CHACHA, CHACHA]);
  });

  it('a cipher forced on one side that the other refuses: a typed reject on both sides, naming the ciphers', async () => {
    for (const [client, server] of [
      [{ cipher: CHACHA }, { cipher: AES }],
      [{ cipher: AES }, { cipher: CHACHA }],
    ] as [Side, Side][]) {
      const [c, s] = await mismatch(client, server);
      assert.ok(c instanceof RejectedError && c.reject === RejectCode.cipherMismatch, `client: ${String(c)}`);
      assert.match(c.message, new RegExp(`cipherMismatch \\(we require ${client.cipher}, the server requires ${server.cipher}\\)`));
      assert.ok(s instanceof RejectedError && s.reject === RejectCode.cipherMismatch, `server: ${String(s)}`);
      assert.match(s.message, new RegExp(`the server requires ${server.cipher}, the client requires ${client.cipher}`));
    }
  });

  it('an old client (a hello without the cipher bits) gets ChaCha20-Poly1305 both ways from an accelerated server', async () => {
    const [a, b] = memoryStreamPair();
    const read = reader(a);
    const server = serverHandshake({ stream: b, remote: 'c', local: 's', carrier: 'mem' }, { staticKeyPair: serverKeys, admit: accept, replay: new ReplayGuard(), aesAccelerated: true });
    const hs = new HandshakeState({ ...NOISE, initiator: true, staticKeyPair: clientKeys, remoteStaticKey: serverKeys.publicKey });
    // What polytun sent before the negotiation: caps = datagram | resume, nothing else.
    a.write(hs.writeMessage(encodeClientHello({ minVersion: 1, maxVersion: 1, caps: 3, timestampMs: Date.now(), resumeId: undefined, recvSeq: 0, ...win, padLen: 0 })));
    const sh = decodeServerHello(hs.readMessage(await read(MSG2_SIZE)));
    await read(sh.padLen);
    assert.equal(sh.status, 0);
    assert.equal(sh.caps & CAP_AES_GCM, 0, 'the server hello must not name AES-GCM to a client that did not offer it');
    const s = (await server).channel;
    assert.equal(s.info.cipher, CHACHA);
    // The old client's record layer: ChaCha20-Poly1305, no cipher argument.
    const { send, recv } = hs.transport();
    const got = new Promise<Buffer>((r) => s.onRecord((pt) => r(Buffer.from(pt))));
    s.start();
    a.write(new RecordSealer(send.exportKey()).seal(Buffer.from('\x00from old')));
    assert.equal((await got).subarray(1).toString(), 'from old');
    s.write(Buffer.from('\x00to old'), 7);
    const opener = new RecordOpener(recv.exportKey());
    const input = new ChunkList();
    input.push(await read(2 + 7 + 16));
    assert.equal(opener.next(input)?.subarray(1).toString(), 'to old');
    s.abort();
  });

  it('an old server (ignores the cipher bits) gives an auto client ChaCha20-Poly1305; a client that requires AES-GCM refuses it by name', async () => {
    for (const client of [{ aesAccelerated: true }, { cipher: AES }] as Side[]) {
      const [a, b] = memoryStreamPair();
      const read = reader(b);
      const dialing = clientHandshake({ stream: a, remote: 's', local: 'c', carrier: 'mem' }, { serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...win, ...client });
      const hs = new HandshakeState({ ...NOISE, initiator: false, staticKeyPair: serverKeys });
      const hello = decodeClientHello(hs.readMessage(await read(MSG1_SIZE)));
      await read(hello.padLen);
      assert.notEqual(hello.caps & CAP_AES_GCM, 0, 'the client offers AES-GCM');
      // The old server echoes only the bits it knows.
      b.write(hs.writeMessage(encodeServerHello({ status: 0, version: 1, caps: hello.caps & 3, sessionId: randomBytes(16), recvSeq: 0, resumed: false, ...win, padLen: 0 })));
      if (client.cipher === AES) {
        await assert.rejects(dialing, (e: unknown) => e instanceof RejectedError && e.reject === RejectCode.cipherMismatch && /require aes-256-gcm, the server \(an older polytun\) speaks only chacha20-poly1305/.test(e.message));
        continue;
      }
      const c = (await dialing).channel;
      assert.equal(c.info.cipher, CHACHA);
      const { send } = hs.transport();
      const got = new Promise<Buffer>((r) => c.onRecord((pt) => r(Buffer.from(pt))));
      c.start();
      b.write(new RecordSealer(send.exportKey()).seal(Buffer.from('\x00from old server')));
      assert.equal((await got).subarray(1).toString(), 'from old server');
      c.abort();
    }
  });
});
