/**
 * The responder's promises about unauthenticated input and sessions: no
 * amplification, bounded work under a flood, replays refused, and roaming
 * that follows only authenticated datagrams.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { RejectCode } from '../../../src/core/errors.js';
import { ReplayGuard } from '../../../src/secure/handshake.js';
import type { PacketRecordChannel } from '../../../src/secure/packet-channel.js';
import { packetClientHandshake, rebindClient } from '../../../src/secure/packet-handshake.js';
import { PacketResponder, type PacketResponderInit, type PacketSession } from '../../../src/secure/packet-responder.js';
import { HandPort, admitAll, clientKeys, pump, serverKeys, windows } from './packet-pairs.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(opts: Partial<PacketResponderInit> = {}) {
  const clock = new ManualClock();
  const responder = new PacketResponder({ clock, staticKeyPair: serverKeys, admit: admitAll, ...opts });
  const sessions: PacketSession[] = [];
  responder.onSession((s) => sessions.push(s));
  return { clock, responder, sessions };
}

/** A genuine initiation datagram (and the client port that would read the answer). */
function initiation(clock: ManualClock, source: string): { cp: HandPort; d: Buffer } {
  const cp = new HandPort('server', source);
  void packetClientHandshake(cp, { clock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows, timeoutMs: 1e9 }).catch(() => undefined);
  return { cp, d: cp.take()[0] as Buffer };
}

function write(ch: PacketRecordChannel, text: string): void {
  const b = Buffer.from(`\0${text}`);
  ch.write(b, b.length);
}

async function established(source = '198.51.100.40:1000') {
  const env = setup();
  const cp = new HandPort('server', source);
  const sp = new HandPort(source, 'server');
  env.responder.accept(sp);
  const result = packetClientHandshake(cp, { clock: env.clock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows });
  pump(cp, sp);
  pump(sp, cp);
  const client = (await result).channel;
  const server = (env.sessions[0] as PacketSession).channel;
  const got: string[] = [];
  const clientGot: string[] = [];
  server.onRecord((pt) => got.push(pt.toString('latin1', 1)));
  client.onRecord((pt) => clientGot.push(pt.toString('latin1', 1)));
  server.start();
  client.start();
  return { ...env, cp, sp, client, server, got, clientGot };
}

describe('packet responder: roaming', () => {
  it('follows the client to a new address on its first authenticated datagram; replies go there', async () => {
    const e = await established();
    write(e.client, 'one');
    await turn();
    pump(e.cp, e.sp);
    assert.deepEqual(e.got, ['one']);
    assert.equal(e.server.port, e.sp);
    // The client's NAT rebinds: a new source port.
    const cp2 = new HandPort('server', '198.51.100.40:2000');
    const sp2 = new HandPort('198.51.100.40:2000', 'server');
    e.responder.accept(sp2);
    rebindClient(e.client, cp2);
    assert.equal(e.cp.closed, true);
    write(e.client, 'two');
    await turn();
    pump(cp2, sp2);
    assert.deepEqual(e.got, ['one', 'two']);
    assert.equal(e.server.port, sp2);
    assert.equal(e.server.info.remote, '198.51.100.40:2000');
    assert.equal(e.responder.stats.roamed, 1);
    write(e.server, 'back');
    await turn();
    assert.equal(e.sp.take().length, 0, 'nothing to the old address');
    pump(sp2, cp2);
    assert.deepEqual(e.clientGot, ['back']);
  });

  it('garbage, a replay or an older datagram from a new address moves nothing', async () => {
    const e = await established();
    write(e.client, 'a');
    write(e.client, 'b');
    await turn();
    const [da, db] = e.cp.take() as [Buffer, Buffer];
    e.sp.deliver(db);
    const other = new HandPort('203.0.113.5:7', 'server');
    e.responder.accept(other);
    other.deliver(randomBytes(100));
    other.deliver(randomBytes(1000));
    assert.equal(e.server.port, e.sp, 'garbage');
    other.deliver(db);
    assert.equal(e.server.port, e.sp, 'a replay');
    assert.equal(e.server.stats.replayed, 1);
    other.deliver(da);
    assert.deepEqual(e.got, ['b', 'a'], 'the older datagram is genuine and fresh: delivered');
    assert.equal(e.server.port, e.sp, 'but not the newest: no move');
    assert.equal(e.responder.stats.roamed, 0);
    assert.equal(other.sent.length, 0, 'and nothing was sent to that address');
  });
});

describe('packet responder: replay', () => {
  it('a replayed transport datagram is refused and counted, delivered once', async () => {
    const e = await established();
    write(e.client, 'x');
    await turn();
    const [d] = e.cp.take() as [Buffer];
    for (let i = 0; i < 3; i++) e.sp.deliver(d);
    assert.deepEqual(e.got, ['x']);
    assert.equal(e.server.stats.replayed, 2);
  });

  it('a replayed initiation after its answer expired is dropped by the replay guard, no second session', () => {
    const { clock, responder, sessions } = setup({ answeredTtlMs: 1000, replay: new ReplayGuard() });
    const sp = new HandPort('198.51.100.50:1', 'server');
    responder.accept(sp);
    const { d } = initiation(clock, '198.51.100.50:1');
    sp.deliver(d);
    assert.equal(sp.take().length, 1);
    clock.advance(2000);
    sp.deliver(d);
    assert.equal(sp.take().length, 0);
    assert.equal(responder.stats.replayedInitiations, 1);
    assert.equal(sessions.length, 1);
  });

  for (const cookies of ['under-load', 'always'] as const) {
    it(`active probing (cookies ${cookies}): a captured initiation replayed from another address gets nothing, then or later`, () => {
      const { clock, responder, sessions } = setup({ cookies });
      const sp = new HandPort('198.51.100.52:1', 'server');
      responder.accept(sp);
      const { cp, d } = initiation(clock, '198.51.100.52:1');
      sp.deliver(d);
      if (cookies === 'always') {
        pump(sp, cp); // the cookie reply; the client sends again with mac2
        sp.deliver(cp.take()[0] as Buffer);
      }
      assert.equal(sp.take().length, 1, 'the genuine client is answered');
      const prober = new HandPort('203.0.113.99:4444', 'server');
      responder.accept(prober);
      prober.deliver(d);
      clock.advance(60_000);
      prober.deliver(d);
      assert.equal(prober.sent.length, 0);
      assert.equal(responder.stats.replayedInitiations, 2);
      assert.equal(sessions.length, 1);
    });
  }

  it('an initiation with a clock off by more than maxSkewMs gets nothing', () => {
    const { clock, responder, sessions } = setup({ maxSkewMs: 1000, wallClock: () => Date.now() + 5000 });
    const sp = new HandPort('198.51.100.51:1', 'server');
    responder.accept(sp);
    sp.deliver(initiation(clock, '198.51.100.51:1').d);
    assert.equal(sp.take().length, 0);
    assert.equal(responder.stats.skewed, 1);
    assert.equal(sessions.length, 0);
  });
});

describe('packet responder: unauthenticated input', () => {
  it('no amplification: for every datagram, bytes sent back to its source ≤ its size (fast-check)', () => {
    const clock = new ManualClock();
    // Genuine initiations are costly (a DH each): a few made once, replayed, cut and resent in any order.
    const genuine = Array.from({ length: 4 }, (_, i) => initiation(clock, `s${i}`));
    const action = fc.oneof(
      fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ maxLength: 1400 }) }),
      fc.record({ kind: fc.constant('initiation' as const), which: fc.nat(3) }),
      fc.record({ kind: fc.constant('truncated' as const), which: fc.nat(3), keep: fc.nat(400) }),
      fc.record({ kind: fc.constant('client-reads' as const), which: fc.nat(3) }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(action, fc.nat(3)), { maxLength: 40 }), fc.constantFrom('always' as const, 'under-load' as const), (actions, cookies) => {
        const { responder } = setup({ cookies, loadThreshold: 1 });
        const sources = Array.from({ length: 4 }, (_, i) => new HandPort(`203.0.113.${i}:9`, 'server'));
        for (const s of sources) responder.accept(s);
        const resent: Buffer[][] = genuine.map(() => []);
        for (const [a, from] of actions) {
          const src = sources[from] as HandPort;
          let d: Buffer;
          if (a.kind === 'garbage') d = Buffer.from(a.bytes);
          else if (a.kind === 'truncated') {
            const whole = (genuine[a.which] as { d: Buffer }).d;
            d = whole.subarray(0, a.keep % whole.length);
          }
          else if (a.kind === 'initiation') d = resent[a.which]?.shift() ?? (genuine[a.which] as { d: Buffer }).d;
          else {
            // The client reads what the server sent it (a cookie reply makes it resend with mac2).
            const g = genuine[a.which] as { cp: HandPort };
            for (const s of sources) for (const x of s.take()) g.cp.deliver(x);
            (resent[a.which] as Buffer[]).push(...g.cp.take());
            continue;
          }
          const before = src.bytesSent;
          src.deliver(d);
          assert.ok(src.bytesSent - before <= d.length, `${a.kind}: ${src.bytesSent - before} bytes out for ${d.length} in`);
          if (a.kind !== 'initiation') assert.equal(src.bytesSent, before, `${a.kind}: nothing back`);
        }
        responder.close();
      }),
      { numRuns: 150 },
    );
  });

  it('a flood of initiations from spoofed sources: bounded table, then cookies, a DH only for the first few', () => {
    const { clock, responder } = setup({ maxHandshakes: 8, loadThreshold: 1e9, admit: () => ({ accept: false, reject: RejectCode.unauthorized }) });
    const { d } = initiation(clock, 'x');
    // Each spoofed source replays a distinct genuine initiation; one is enough to show the gate (the cookie comes before the DH).
    const floods = [d, ...Array.from({ length: 9 }, (_, i) => initiation(clock, `y${i}`).d)];
    let out = 0;
    let inBytes = 0;
    for (let i = 0; i < 200; i++) {
      const src = new HandPort(`10.${i >> 8}.${i & 255}.1:5`, 'server');
      responder.accept(src);
      const dg = floods[i % floods.length] as Buffer;
      src.deliver(dg);
      inBytes += dg.length;
      out += src.bytesSent;
    }
    assert.ok(responder.handshakeCount <= 4, `table at ${responder.handshakeCount}`);
    assert.equal(responder.stats.rejected, 4, 'a DH and a reject for the first four only');
    // The rest: a cookie reply, or nothing for a message 1 already read (a replay from elsewhere).
    assert.equal(responder.stats.cookieReplies + responder.stats.replayedInitiations, 196);
    assert.ok(responder.stats.cookieReplies > 100);
    assert.ok(out <= inBytes);
  });

  it('garbage of every size gets no byte back and is counted', () => {
    const { responder } = setup();
    const src = new HandPort('203.0.113.77:1', 'server', 1452);
    responder.accept(src);
    for (const n of [0, 1, 11, 28, 29, 100, 212, 213, 220, 221, 400, 1200, 1452, 1453, 9000]) src.deliver(randomBytes(n));
    assert.equal(src.sent.length, 0);
    const s = responder.stats;
    assert.equal(s.truncated + s.oversized + s.unauthenticated, 15);
    assert.equal(s.oversized, 2);
    assert.equal(s.truncated, 4);
  });
});
