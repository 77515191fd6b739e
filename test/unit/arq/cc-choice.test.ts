/**
 * `--cc` and `--udp-mode`: parsing, the transport parameters a client sends
 * in its packet handshake, and the server following them over real UDP
 * (its fixed rate capped by --udp-max-rate).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeTransportParams, encodeTransportParams, formatCc, parseBitRate, parseCc, UDP_MODES } from '../../../src/arq/cc-choice.js';
import { createSocket } from 'node:dgram';
import { UdpPacketCarrier } from '../../../src/carriers/udp.js';
import { MemoryMetrics } from '../../../src/core/metrics.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { SessionClient } from '../../../src/paths/session-client.js';
import { SessionServer } from '../../../src/server/session-server.js';
import type { Session } from '../../../src/session/session.js';
import { waitUntil } from '../../helpers/eventually.js';

describe('--cc and --udp-mode', () => {
  it('parses rates and controllers, with clear errors', () => {
    assert.equal(parseBitRate('40mbit'), 5_000_000);
    assert.equal(parseBitRate('1.5Gbit'), 187_500_000);
    assert.equal(parseBitRate('800kbit'), 100_000);
    assert.equal(parseBitRate('100000'), 12_500);
    assert.match(parseBitRate('fast') as string, /bad rate 'fast'/);
    assert.match(parseBitRate('1kbit') as string, /below 8 kbit/);
    assert.deepEqual(parseCc('BBR'), { kind: 'bbr' });
    assert.deepEqual(parseCc('cubic'), { kind: 'cubic' });
    assert.deepEqual(parseCc('fixed:40mbit'), { kind: 'fixed', rate: 5_000_000 });
    assert.match(parseCc('reno') as string, /unknown congestion controller 'reno' \(bbr, cubic or fixed:RATE/);
    assert.match(parseCc('fixed:') as string, /bad rate/);
    assert.equal(formatCc({ kind: 'fixed', rate: 5_000_000 }), 'fixed:40mbit');
  });

  it('transport parameters round-trip, and any 8 bytes decode to something valid', () => {
    for (const mode of UDP_MODES) {
      for (const cc of [undefined, { kind: 'bbr' as const }, { kind: 'cubic' as const }, { kind: 'fixed' as const, rate: 12_500_000 }]) {
        assert.deepEqual(decodeTransportParams(encodeTransportParams({ cc, mode })), { cc, mode });
      }
    }
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 8 }), (b) => {
        const p = decodeTransportParams(Buffer.from(b));
        assert.ok(UDP_MODES.includes(p.mode));
        if (p.cc?.kind === 'fixed') assert.ok(p.cc.rate >= 1000);
      }),
    );
  });

  it('over udp a client that asks for no controller gets the server\'s own (its --cc), and sends with bbr itself', async () => {
    const serverKeys = generateKeyPair();
    const clientKeys = generateKeyPair();
    const server = new SessionServer<string>({ staticKeyPair: serverKeys, users: { byKey: (k) => (k.equals(clientKeys.publicKey) ? 'alice' : undefined) } });
    let serverSession: Session | undefined;
    server.on('session', (e: { session: Session }) => (serverSession = e.session));
    const responder = server.packetResponder({ cc: { kind: 'cubic' } });
    const carrier = new UdpPacketCarrier();
    const listener = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => responder.accept(c));
    const client = new SessionClient({ carrier, endpoint: listener.address, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys });
    try {
      const session = await client.connect();
      await waitUntil(() => serverSession !== undefined, 'the server session');
      assert.equal(session.stats.paths[0]?.transport?.cc, 'bbr');
      assert.equal(serverSession?.stats.paths[0]?.transport?.cc, 'cubic');
    } finally {
      await client.close();
      server.close();
      responder.close();
      await listener.close();
    }
  });

  it('over udp the server sends as the client asks, its fixed rate capped by the server; the listener counts what it admits and drops', async () => {
    const serverKeys = generateKeyPair();
    const clientKeys = generateKeyPair();
    const metrics = new MemoryMetrics();
    const server = new SessionServer<string>({ metrics, staticKeyPair: serverKeys, users: { byKey: (k) => (k.equals(clientKeys.publicKey) ? 'alice' : undefined) } });
    let serverSession: Session | undefined;
    server.on('session', (e: { session: Session }) => (serverSession = e.session));
    const responder = server.packetResponder({ maxFixedRate: 2_500_000 });
    const carrier = new UdpPacketCarrier();
    const listener = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => responder.accept(c));
    const client = new SessionClient({ carrier, endpoint: listener.address, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, cc: { kind: 'fixed', rate: 12_500_000 }, udpMode: 'fast3' });
    try {
      const session = await client.connect();
      await waitUntil(() => serverSession !== undefined, 'the server session');
      assert.equal(session.stats.paths[0]?.transport?.cc, 'fixed:100mbit', 'the client sends at what it asked for');
      assert.equal(serverSession?.stats.paths[0]?.transport?.cc, 'fixed:20mbit', 'the server sends at its cap, not at 100 Mbit/s');
      assert.equal(serverSession?.stats.paths[0]?.carrier, 'udp');
      // What the udp listener admitted and dropped reaches the metrics.
      assert.equal(metrics.value('polytun_udp_handshakes_total', 'session'), 1);
      const probe = createSocket('udp4');
      for (const n of [1, 40, 300]) probe.send(Buffer.alloc(n, 7), listener.address.port, '127.0.0.1');
      await waitUntil(() => (metrics.value('polytun_udp_datagrams_dropped_total', 'unauthenticated') ?? 0) + (metrics.value('polytun_udp_datagrams_dropped_total', 'truncated') ?? 0) === 3, 'the probes counted');
      probe.close();
    } finally {
      await client.close();
      server.close();
      responder.close();
      await listener.close();
    }
  });

  it("a user's own udpMaxRate caps its fixed rate below the listener's; a user without one gets the listener's cap", async () => {
    const serverKeys = generateKeyPair();
    const slow = generateKeyPair();
    const free = generateKeyPair();
    const caps = new Map([['slow', 625_000], ['free', null]]);
    const server = new SessionServer<string>({
      staticKeyPair: serverKeys,
      users: { byKey: (k) => (k.equals(slow.publicKey) ? 'slow' : k.equals(free.publicKey) ? 'free' : undefined), udpMaxRateOf: (u) => caps.get(u) ?? null },
    });
    const sessions = new Map<string, Session>();
    server.on('session', (e: { session: Session; user: string }) => sessions.set(e.user, e.session));
    const responder = server.packetResponder({ maxFixedRate: 2_500_000 });
    const carrier = new UdpPacketCarrier();
    const listener = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => responder.accept(c));
    const clients = [slow, free].map((keys) => new SessionClient({ carrier, endpoint: listener.address, serverPublicKey: serverKeys.publicKey, clientKeyPair: keys, cc: { kind: 'fixed', rate: 12_500_000 } }));
    try {
      for (const c of clients) await c.connect();
      await waitUntil(() => sessions.size === 2, 'both server sessions');
      assert.equal(sessions.get('slow')?.stats.paths[0]?.transport?.cc, 'fixed:5mbit', "the user's own cap, below the listener's");
      assert.equal(sessions.get('free')?.stats.paths[0]?.transport?.cc, 'fixed:20mbit', "the listener's cap");
    } finally {
      for (const c of clients) await c.close();
      server.close();
      responder.close();
      await listener.close();
    }
  });
});
