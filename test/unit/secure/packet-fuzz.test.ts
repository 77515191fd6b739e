/**
 * Fuzzing the packet channel's parsers with fast-check: the handshake
 * datagram decoder and mac checks, the transport header and opener, the
 * responder's whole receive path (behind mac1 too, so Noise message 1 sees
 * arbitrary bytes, and the hello decoder arbitrary payloads behind a genuine Noise message), the client's handshake receive
 * path, and mutations of genuine transport datagrams. Nothing throws,
 * nothing is answered, nothing forged is delivered.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import type { PacketRecordChannel } from '../../../src/secure/packet-channel.js';
import { PacketOpener } from '../../../src/secure/packet-crypt.js';
import { HandshakeState } from '../../../src/secure/noise.js';
import { PACKET_NOISE_PROTOCOL, PACKET_PROLOGUE, packetClientHandshake } from '../../../src/secure/packet-handshake.js';
import { PacketResponder, type PacketSession } from '../../../src/secure/packet-responder.js';
import {
  HS_COOKIE, HS_INITIATION, HS_RESPONSE, MIN_INITIATION, SEED, checkMac1, decodeHandshake, encodeHandshake, readHeader, serverPublicKeys,
} from '../../../src/secure/packet-wire.js';
import { HandPort, admitAll, clientKeys, pump, serverKeys, windows } from './packet-pairs.js';

const keys = serverPublicKeys(serverKeys.publicKey);
const bytes = fc.uint8Array({ maxLength: 1500 }).map((u) => Buffer.from(u));

function responderEnv() {
  const clock = new ManualClock();
  const responder = new PacketResponder({ clock, staticKeyPair: serverKeys, admit: admitAll });
  const sessions: PacketSession[] = [];
  responder.onSession((s) => sessions.push(s));
  const src = new HandPort('203.0.113.1:1', 'server');
  responder.accept(src);
  return { clock, responder, sessions, src };
}

describe('packet parsers under fuzz', () => {
  it('handshake decoding, mac1 and header reads never throw on any bytes', () => {
    const opener = new PacketOpener(randomBytes(32), randomBytes(16), { cipher: 'chacha20-poly1305' });
    fc.assert(
      fc.property(bytes, fc.boolean(), (d, initiation) => {
        decodeHandshake(keys, d, initiation);
        assert.equal(checkMac1(keys, d), false);
        const h = opener.peek(d);
        if (h !== undefined) assert.equal(typeof opener.open(Buffer.from(d), h), 'string');
        if (d.length >= 12) readHeader(d);
      }),
      { numRuns: 500 },
    );
  });

  it('the responder: any datagram is dropped, counted, and answered with nothing', () => {
    const { responder, sessions, src } = responderEnv();
    fc.assert(
      fc.property(bytes, (d) => {
        const before = responder.stats.datagrams;
        src.deliver(d);
        assert.equal(responder.stats.datagrams, before + 1);
      }),
      { numRuns: 500 },
    );
    const s = responder.stats;
    assert.equal(s.truncated + s.oversized + s.unauthenticated, s.datagrams);
    assert.equal(s.errors, 0);
    assert.equal(src.sent.length, 0);
    assert.equal(sessions.length, 0);
  });

  it('behind mac1: arbitrary initiation bodies reach the Noise reader and fail quietly', () => {
    const { responder, sessions, src } = responderEnv();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 900 }), fc.integer({ min: 0, max: 300 }), fc.constantFrom(HS_INITIATION, HS_RESPONSE, 0, 255), (body, pad, type) => {
        const b = Buffer.from(body);
        src.deliver(encodeHandshake(keys, type, b, SEED + 1 + b.length + 32 + pad, undefined));
      }),
      { numRuns: 200 },
    );
    assert.equal(responder.stats.errors, 0);
    assert.ok(responder.stats.handshakeFailed > 0);
    assert.equal(src.sent.length, 0);
    assert.equal(sessions.length, 0);
  });

  it('behind Noise: a genuine message 1 around an arbitrary payload reaches the hello decoder and fails quietly, or is judged as a hello', () => {
    const { responder, src } = responderEnv();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 68, maxLength: 68 }), (payload) => {
        const hs = new HandshakeState({ protocolName: PACKET_NOISE_PROTOCOL, initiator: true, prologue: PACKET_PROLOGUE, staticKeyPair: clientKeys, remoteStaticKey: serverKeys.publicKey });
        const before = { ...responder.stats };
        src.deliver(encodeHandshake(keys, HS_INITIATION, hs.writeMessage(Buffer.from(payload)), MIN_INITIATION));
        const s = responder.stats;
        // Random bytes make a hello whose windows or timestamp do not check out: dropped, or (rarely) a typed reject.
        assert.equal(s.handshakeFailed + s.skewed + s.rejected + s.sessions, before.handshakeFailed + before.skewed + before.rejected + before.sessions + 1);
      }),
      { numRuns: 100 },
    );
    assert.equal(responder.stats.errors, 0);
  });

  it('the client in its handshake: arbitrary datagrams, forged responses and cookie replies are ignored; the genuine answer still completes it', async () => {
    const clock = new ManualClock();
    const responder = new PacketResponder({ clock, staticKeyPair: serverKeys, admit: admitAll });
    const sp = new HandPort('client', 'server');
    responder.accept(sp);
    const cp = new HandPort('server', 'client');
    const result = packetClientHandshake(cp, { clock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows });
    const init = cp.take();
    fc.assert(
      fc.property(bytes, fc.constantFrom(0, HS_RESPONSE, HS_COOKIE), (d, wrap) => {
        cp.deliver(wrap === 0 ? d : encodeHandshake(keys, wrap, d, SEED + 1 + d.length));
      }),
      { numRuns: 300 },
    );
    assert.equal(cp.take().length, 0, 'no forged cookie reply made the client resend');
    for (const d of init) sp.deliver(d);
    pump(sp, cp);
    const r = await result;
    assert.equal(r.cookies, 0);
  });

  it('a genuine transport datagram, altered anywhere or cut, is never delivered; the channel stays open', async () => {
    const clock = new ManualClock();
    const responder = new PacketResponder({ clock, staticKeyPair: serverKeys, admit: admitAll });
    let server: PacketRecordChannel | undefined;
    responder.onSession((s) => (server = s.channel));
    const sp = new HandPort('client', 'server');
    responder.accept(sp);
    const cp = new HandPort('server', 'client');
    const result = packetClientHandshake(cp, { clock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows });
    pump(cp, sp);
    pump(sp, cp);
    const client = (await result).channel;
    const srv = server as PacketRecordChannel;
    const got: Buffer[] = [];
    srv.onRecord((pt) => got.push(Buffer.from(pt)));
    let closed = false;
    srv.onClose(() => (closed = true));
    srv.start();
    const rec = Buffer.from('\0genuine record');
    const genuine: Buffer[] = [];
    for (let i = 0; i < 5; i++) client.write(rec, rec.length);
    await new Promise((r) => setImmediate(r));
    genuine.push(...cp.take());
    fc.assert(
      fc.property(
        fc.nat(genuine.length - 1),
        fc.array(fc.tuple(fc.nat(2000), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat(2000)),
        (which, flips, cut) => {
          const d = Buffer.from(genuine[which] as Buffer);
          for (const [at, x] of flips) d[at % d.length] = (d[at % d.length] as number) ^ x;
          sp.deliver(cut === null ? d : d.subarray(0, cut % d.length));
        },
      ),
      { numRuns: 400 },
    );
    assert.equal(got.length, 0, 'nothing altered got through');
    assert.equal(closed, false);
    assert.equal(responder.stats.errors, 0);
    for (const d of genuine) sp.deliver(d);
    assert.equal(got.length, genuine.length, 'the originals still open: failures marked nothing');
    assert.ok(srv.stats.forged + srv.stats.malformed > 0);
  });
});
