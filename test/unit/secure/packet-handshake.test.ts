/**
 * The datagram handshake under a ManualClock, over hand-driven ports: the
 * test decides which datagram arrives, so loss, repetition and spoofing are
 * exact.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { RejectCode, RejectedError, TimeoutError } from '../../../src/core/errors.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { packetClientHandshake, type PacketClientInit, type PacketClientResult } from '../../../src/secure/packet-handshake.js';
import { PacketResponder, type PacketResponderInit, type PacketSession } from '../../../src/secure/packet-responder.js';
import { HandPort, admitAll, clientKeys, pump, serverKeys, windows } from './packet-pairs.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(opts: Partial<PacketResponderInit> = {}) {
  const clock = new ManualClock();
  const responder = new PacketResponder({ clock, staticKeyPair: serverKeys, admit: admitAll, ...opts });
  const sessions: PacketSession[] = [];
  responder.onSession((s) => sessions.push(s));
  const connect = (source: string, init: Partial<PacketClientInit> = {}) => {
    const cp = new HandPort('server', source);
    const sp = new HandPort(source, 'server');
    responder.accept(sp);
    const result = packetClientHandshake(cp, { clock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows, ...init });
    return { cp, sp, result };
  };
  return { clock, responder, sessions, connect };
}

describe('packet handshake', () => {
  it('completes in one round trip: one initiation, one response, one session', async () => {
    const { responder, sessions, connect } = setup();
    const { cp, sp, result } = connect('198.51.100.1:1000');
    assert.equal(pump(cp, sp), 1);
    assert.equal(pump(sp, cp), 1);
    const r = await result;
    assert.equal(r.initiationsSent, 1);
    assert.equal(r.hello.status, 0);
    assert.equal(sessions.length, 1);
    assert.deepEqual(sessions[0]?.clientKey, clientKeys.publicKey);
    assert.deepEqual(r.channel.info.handshakeHash, sessions[0]?.channel.info.handshakeHash);
    assert.equal(responder.sessionCount, 1);
  });

  it('retransmits the same initiation with doubling intervals until answered', async () => {
    const { clock, connect } = setup();
    const { cp, sp, result } = connect('198.51.100.2:1000', { initialRetransmitMs: 500, maxRetransmitMs: 2000 });
    const first = cp.take();
    assert.equal(first.length, 1);
    const sentAt: number[] = [];
    for (let t = 0; t < 6000; t += 50) {
      clock.advance(50);
      for (const d of cp.take()) {
        sentAt.push(clock.now() - 1000);
        assert.deepEqual(d, first[0], 'a retransmission is the same datagram');
      }
    }
    assert.deepEqual(sentAt, [500, 1500, 3500, 5500], '500, then 1000, 2000, then capped at 2000');
    sp.deliver(first[0] as Buffer);
    pump(sp, cp);
    const r = await result;
    assert.equal(r.initiationsSent, 5);
  });

  it('gives up after timeoutMs with TimeoutError and closes its port', async () => {
    const { clock, connect } = setup();
    const { cp, result } = connect('198.51.100.3:1000', { timeoutMs: 3000 });
    const failed = assert.rejects(result, TimeoutError);
    clock.advance(3000);
    await failed;
    assert.equal(cp.closed, true);
    assert.equal(cp.take().length, 3, 'sent at 0, 500 and 1500 ms');
    clock.advance(10_000);
    assert.equal(cp.take().length, 0, 'nothing after giving up');
  });

  it('answers a repeated initiation with the same response and no second session', async () => {
    const { clock, responder, sessions, connect } = setup();
    const { cp, sp, result } = connect('198.51.100.4:1000');
    const init1 = cp.take()[0] as Buffer;
    sp.deliver(init1);
    const resp1 = sp.take();
    assert.equal(resp1.length, 1, 'the response is lost on its way');
    clock.advance(500);
    const init2 = cp.take()[0] as Buffer;
    sp.deliver(init2);
    const resp2 = sp.take();
    assert.deepEqual(resp2, resp1);
    assert.equal(sessions.length, 1);
    assert.equal(responder.stats.repeatedInitiations, 1);
    cp.deliver(resp2[0] as Buffer);
    await result;
    // The first copy arriving late changes nothing either.
    cp.deliver(resp1[0] as Buffer);
    assert.equal(sessions.length, 1);
  });

  it('a rejected client gets a typed reject and no session', async () => {
    const { sessions, connect } = setup({ admit: () => ({ accept: false, reject: RejectCode.unauthorized }) });
    const { cp, sp, result } = connect('198.51.100.5:1000');
    pump(cp, sp);
    pump(sp, cp);
    await assert.rejects(result, (e: unknown) => e instanceof RejectedError && e.reject === RejectCode.unauthorized);
    assert.equal(sessions.length, 0);
  });

  it('negotiates the record cipher as the stream handshake does, and a forced mismatch ends in a typed reject', async () => {
    const both = setup({ cipher: 'auto', aesAccelerated: true });
    const aes = both.connect('198.51.100.8:1000', { cipher: 'auto', aesAccelerated: true });
    pump(aes.cp, aes.sp);
    pump(aes.sp, aes.cp);
    const aesClient = (await aes.result).channel;
    assert.equal(aesClient.info.cipher, 'aes-256-gcm');
    const aesServer = (both.sessions[0] as PacketSession).channel;
    assert.equal(aesServer.info.cipher, 'aes-256-gcm');
    let got: Buffer | undefined;
    aesServer.onRecord((pt) => (got = Buffer.from(pt)));
    aesServer.start();
    aesClient.write(Buffer.from('\0over aes'), 9);
    await turn();
    pump(aes.cp, aes.sp);
    assert.equal(got?.toString('latin1', 1), 'over aes');
    const chacha = both.connect('198.51.100.8:1001', { cipher: 'auto', aesAccelerated: false });
    pump(chacha.cp, chacha.sp);
    pump(chacha.sp, chacha.cp);
    assert.equal((await chacha.result).channel.info.cipher, 'chacha20-poly1305');
    const forced = setup({ cipher: 'aes-256-gcm', aesAccelerated: true });
    const clash = forced.connect('198.51.100.8:1002', { cipher: 'chacha20-poly1305' });
    pump(clash.cp, clash.sp);
    pump(clash.sp, clash.cp);
    await assert.rejects(clash.result, (e: unknown) => e instanceof RejectedError && e.reject === RejectCode.cipherMismatch);
    assert.equal(forced.sessions.length, 0);
  });

  it('an asynchronous admission: repeats while it runs get nothing, then the one answer', async () => {
    let decide: (a: ReturnType<typeof admitAll>) => void = () => undefined;
    const { clock, sessions, connect } = setup({ admit: () => new Promise((r) => (decide = r)) });
    const { cp, sp, result } = connect('198.51.100.6:1000');
    pump(cp, sp);
    clock.advance(500);
    pump(cp, sp);
    assert.equal(sp.take().length, 0);
    decide(admitAll());
    await turn();
    assert.equal(pump(sp, cp), 1);
    await result;
    assert.equal(sessions.length, 1);
  });

  it('a client whose server key is wrong gets nothing back', async () => {
    const { clock, responder, connect } = setup();
    const { cp, sp, result } = connect('198.51.100.7:1000', { serverPublicKey: generateKeyPair().publicKey, timeoutMs: 1000 });
    const failed = assert.rejects(result, TimeoutError);
    pump(cp, sp);
    assert.equal(sp.take().length, 0);
    assert.equal(responder.stats.unauthenticated, 1);
    clock.advance(1000);
    await failed;
  });
});

describe('packet handshake cookies', () => {
  it("cookies 'always': the first initiation gets a cookie reply and costs no state; the repeat with mac2 gets the session", async () => {
    const { responder, sessions, connect } = setup({ cookies: 'always' });
    const { cp, sp, result } = connect('198.51.100.10:1000');
    const init = cp.take()[0] as Buffer;
    sp.deliver(init);
    const reply = sp.take();
    assert.equal(reply.length, 1);
    assert.ok((reply[0] as Buffer).length <= init.length, 'no amplification');
    assert.equal(responder.handshakeCount, 0, 'no state for an unproven source');
    assert.equal(sessions.length, 0);
    cp.deliver(reply[0] as Buffer);
    const again = cp.take();
    assert.equal(again.length, 1, 'sent at once on the cookie, not on the timer');
    assert.equal((again[0] as Buffer).length, init.length);
    sp.deliver(again[0] as Buffer);
    pump(sp, cp);
    const r: PacketClientResult = await result;
    assert.equal(r.cookies, 1);
    assert.equal(sessions.length, 1);
  });

  it('a cookie is bound to the source: the same initiation from a spoofed address gets a cookie reply, never a session', () => {
    const { responder, sessions, connect } = setup({ cookies: 'always' });
    const { cp, sp } = connect('198.51.100.11:1000');
    sp.deliver(cp.take()[0] as Buffer);
    cp.deliver(sp.take()[0] as Buffer);
    const withCookie = cp.take()[0] as Buffer;
    const spoofed = new HandPort('203.0.113.66:999', 'server');
    responder.accept(spoofed);
    spoofed.deliver(withCookie);
    assert.equal(sessions.length, 0);
    assert.equal(spoofed.take().length, 1, 'a cookie reply (to the spoofed address, no bigger than what came)');
    assert.equal(responder.stats.cookieReplies, 2);
  });

  it("'under-load': cookies once the threshold of handshakes in a second is reached, none after the second passes", async () => {
    const { clock, responder, sessions, connect } = setup({ loadThreshold: 2 });
    for (let i = 0; i < 2; i++) {
      const { cp, sp } = connect(`198.51.100.${20 + i}:1000`);
      pump(cp, sp);
    }
    assert.equal(sessions.length, 2);
    const third = connect('198.51.100.30:1000');
    pump(third.cp, third.sp);
    assert.equal(responder.stats.cookieReplies, 1);
    assert.equal(sessions.length, 2);
    clock.advance(1000);
    const fourth = connect('198.51.100.31:1000');
    pump(fourth.cp, fourth.sp);
    assert.equal(sessions.length, 3, 'load gone: no cookie asked');
  });
});
