import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from '../../../src/core/logger.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { VpnRouter, type RoutedClient } from '../../../src/server/vpn-router.js';
import { AddressPool } from '../../../src/tun/pool.js';
import { VPN_FLOW } from '../../../src/tun/vpn-wire.js';
import { icmpEcho, ipv4, udp } from '../../helpers/ip-packets.js';

/** Records warn lines. */
function recordingLogger(lines: object[]): Logger {
  const l: Logger = { debug: () => undefined, info: () => undefined, warn: (o) => lines.push(o), error: () => undefined, child: () => l };
  return l;
}

async function setup(clientToClient = false) {
  const pool = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00:8::/64' });
  const written: Buffer[] = [];
  const tun = { closed: false, write: (ps: readonly Uint8Array[]) => (written.push(...ps.map((p) => Buffer.from(p))), { written: ps.length, dropped: 0, invalid: 0 }) };
  const warns: object[] = [];
  const policy = new DestinationPolicy({ allow: ['10.20.0.0/16', 'fd00:20::/48'], deny: ['*:25'], denyOwnAddresses: false });
  const router = new VpnRouter({ tun, pool, mtu: 1400, clientToClient, policy, logger: recordingLogger(warns) });
  const mk = (user: string, accept = true) => {
    const got: Buffer[] = [];
    const c: RoutedClient = {
      user,
      lease: pool.acquire(user),
      sink: { sendDatagram: (flow, p) => (assert.equal(flow, VPN_FLOW), accept && got.push(Buffer.from(p)) > 0) },
      logged: new Map(),
    };
    router.add(c);
    return { c, got };
  };
  const tick = (): Promise<void> => new Promise((r) => queueMicrotask(r));
  return { router, written, warns, mk, tick };
}

describe('VpnRouter: packets from clients', () => {
  it('a packet from the lease to an allowed destination reaches the TUN (IPv4 and IPv6)', async () => {
    const { router, written, mk, tick } = await setup();
    const { c } = mk('alice'); // 10.8.0.2 / fd00:8::2
    const p4 = udp('10.8.0.2', 5000, '10.20.0.1', 53, Buffer.from('q4'));
    const p6 = udp('fd00:8::2', 5000, 'fd00:20::1', 53, Buffer.from('q6'));
    router.fromClient(c, p4);
    router.fromClient(c, p6);
    assert.equal(written.length, 0, 'written once per tick, not per packet');
    await tick();
    assert.deepEqual(written, [p4, p6]);
    assert.equal(router.counters.fromClients, 2);
  });

  it('drops and counts: spoofed, malformed, oversize, link-local, policy (address and port)', async () => {
    const { router, written, warns, mk, tick } = await setup();
    const { c } = mk('alice');
    router.fromClient(c, udp('10.8.0.77', 1, '10.20.0.1', 53, Buffer.from('spoof'))); // not our lease
    router.fromClient(c, udp('fd00:8::77', 1, 'fd00:20::1', 53, Buffer.from('spoof6')));
    router.fromClient(c, Buffer.from([0x45, 0, 0, 10])); // truncated header
    router.fromClient(c, udp('10.8.0.2', 1, '10.20.0.1', 53, Buffer.alloc(1401))); // > MTU
    router.fromClient(c, udp('fe80::1', 1, 'ff02::2', 2, Buffer.alloc(4)));
    router.fromClient(c, udp('10.8.0.2', 1, '10.99.0.1', 53, Buffer.from('private, not allowed')));
    router.fromClient(c, udp('10.8.0.2', 1, '10.20.0.1', 25, Buffer.from('port 25 denied')));
    router.fromClient(c, icmpEcho('10.8.0.2', '10.20.0.1', 1, 1, Buffer.from('icmp: address rules')));
    await tick();
    const k = router.counters;
    assert.deepEqual([k.spoofed, k.malformed, k.oversize, k.linkLocal, k.policyDenied, k.fromClients], [2, 1, 1, 1, 2, 1]);
    assert.equal(written.length, 1, 'only the ICMP packet');
    const spoofLog = warns.find((w) => (w as { reason?: string }).reason === 'spoofed') as Record<string, unknown>;
    assert.deepEqual([spoofLog.user, spoofLog.src, spoofLog.dst], ['alice', '10.8.0.77', '10.20.0.1']);
  });

  it('rate-limits drop logs: one line per reason per client per 10 s', async () => {
    const { router, warns, mk } = await setup();
    const { c } = mk('alice');
    for (let i = 0; i < 5; i++) router.fromClient(c, udp('10.8.0.9', 1, '10.20.0.1', 53, Buffer.from('x')));
    assert.equal(router.counters.spoofed, 5);
    assert.equal(warns.length, 1);
  });

  it('client-to-client is off by default, and forwards session to session when on', async () => {
    const off = await setup(false);
    const a = off.mk('alice');
    const b = off.mk('bob'); // 10.8.0.3
    off.router.fromClient(a.c, udp('10.8.0.2', 1, '10.8.0.3', 2, Buffer.from('hi bob')));
    await off.tick();
    assert.equal(off.router.counters.c2cBlocked, 1);
    assert.deepEqual([b.got.length, off.written.length], [0, 0]);

    const on = await setup(true);
    const a2 = on.mk('alice');
    const b2 = on.mk('bob');
    const p = udp('fd00:8::2', 1, 'fd00:8::3', 2, Buffer.from('hi bob'));
    on.router.fromClient(a2.c, p);
    on.router.fromClient(a2.c, udp('10.8.0.2', 1, '10.8.0.200', 2, Buffer.from('nobody'))); // pool, unassigned
    assert.deepEqual(b2.got, [p]);
    assert.equal(on.router.counters.noRoute, 1);
  });

  it('the server\'s own TUN address is not "another client": it goes to the policy', async () => {
    const { router, mk } = await setup(false);
    const { c } = mk('alice');
    router.fromClient(c, udp('10.8.0.2', 1, '10.8.0.1', 53, Buffer.from('to the server')));
    // 10.8.0.1 is private and not in --allow: refused by the policy, not by client-to-client
    assert.deepEqual([router.counters.policyDenied, router.counters.c2cBlocked], [1, 0]);
  });
});

describe('VpnRouter: packets from the TUN', () => {
  it('each goes to the session of its destination; unknown → noRoute; refused → queueFull', async () => {
    const { router, mk } = await setup();
    const alice = mk('alice');
    const bob = mk('bob', false);
    const toAlice4 = udp('10.20.0.1', 53, '10.8.0.2', 5000, Buffer.from('a4'));
    const toAlice6 = udp('fd00:20::1', 53, 'fd00:8::2', 5000, Buffer.from('a6'));
    router.fromTun([toAlice4, toAlice6, udp('10.20.0.1', 53, '10.8.0.3', 5000, Buffer.from('bob')), ipv4('10.20.0.1', '10.8.0.99', 17, Buffer.alloc(8))]);
    assert.deepEqual(alice.got, [toAlice4, toAlice6]);
    assert.equal(bob.got.length, 0);
    assert.deepEqual([router.counters.toClients, router.counters.queueFull, router.counters.noRoute], [2, 1, 1]);
    router.remove(alice.c);
    router.fromTun([toAlice4]);
    assert.equal(router.counters.noRoute, 2);
  });
});
