import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from '../../../src/core/logger.js';
import { MemoryMetrics, type Metrics } from '../../../src/core/metrics.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { VpnRouter, type RoutedClient } from '../../../src/server/vpn-router.js';
import { AddressPool } from '../../../src/tun/pool.js';
import { VPN_FLOW } from '../../../src/tun/vpn-wire.js';
import { checksum, icmpEcho, ipv4, ipv6, udp } from '../../helpers/ip-packets.js';

/** Records warn lines. */
function recordingLogger(lines: object[]): Logger {
  const l: Logger = { debug: () => undefined, info: () => undefined, warn: (o) => lines.push(o), error: () => undefined, child: () => l };
  return l;
}

async function setup(clientToClient = false, metrics?: Metrics) {
  const pool = await AddressPool.open({ v4: '10.8.0.0/24', v6: 'fd00:8::/64' });
  const written: Buffer[] = [];
  const tun = { closed: false, write: (ps: readonly Uint8Array[]) => (written.push(...ps.map((p) => Buffer.from(p))), { written: ps.length, dropped: 0, invalid: 0 }) };
  const warns: object[] = [];
  const policy = new DestinationPolicy({ allow: ['10.20.0.0/16', 'fd00:20::/48'], deny: ['*:25'], denyOwnAddresses: false });
  const router = new VpnRouter({ tun, pool, mtu: 1400, clientToClient, policy, logger: recordingLogger(warns), ...(metrics ? { metrics } : {}) });
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

  it('the counters as metrics, read when collected', async () => {
    const metrics = new MemoryMetrics();
    const { router, mk, tick } = await setup(false, metrics);
    const alice = mk('alice');
    mk('bob', false);
    assert.equal(metrics.value('polytun_vpn_clients'), 2);
    router.fromTun([udp('10.20.0.1', 53, '10.8.0.2', 5000, Buffer.from('a')), udp('10.20.0.1', 53, '10.8.0.3', 5000, Buffer.from('b')), ipv4('10.20.0.1', '10.8.0.99', 17, Buffer.alloc(8))]);
    router.fromClient(alice.c, udp('10.8.0.2', 1, '10.20.0.1', 53, Buffer.from('out')));
    router.fromClient(alice.c, udp('10.8.0.77', 1, '10.20.0.1', 53, Buffer.from('spoof')));
    await tick();
    assert.equal(metrics.value('polytun_vpn_packets_total', 'toClients'), 1);
    assert.equal(metrics.value('polytun_vpn_packets_total', 'fromClients'), 1);
    assert.deepEqual(['noRoute', 'queueFull', 'spoofed', 'malformed'].map((r) => metrics.value('polytun_vpn_dropped_total', r)), [1, 1, 1, 0]);
    router.remove(alice.c);
    assert.equal(metrics.value('polytun_vpn_clients'), 1);
  });
});

/** An ICMPv6 echo request with its checksum (pseudo-header included). */
function icmp6Echo(src: Buffer, dst: Buffer, id: number, seq: number, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from([128, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff]), data]);
  const tail = Buffer.alloc(8);
  tail.writeUInt32BE(body.length, 0);
  tail[7] = 58;
  body.writeUInt16BE(checksum(Buffer.concat([src, dst, tail, body])), 2);
  return ipv6(formatIp(src), formatIp(dst), 58, body);
}

function formatIp(b: Buffer): string {
  return b.length === 4 ? [...b].join('.') : (b.toString('hex').match(/.{4}/g) ?? []).join(':');
}

describe("VpnRouter: pings to the server's tunnel address", () => {
  it('answers ICMP echo to the gateway (v4 and v6) with a valid reply, although the policy refuses the address', async () => {
    const { router, written, mk, tick } = await setup();
    const { c, got } = mk('alice'); // 10.8.0.2 / fd00:8::2; gateway 10.8.0.1 / fd00:8::1, private: refused by the policy
    router.fromClient(c, icmpEcho('10.8.0.2', '10.8.0.1', 7, 1, Buffer.from('ping4')));
    const src6 = Buffer.from('fd000008000000000000000000000002', 'hex');
    const gw6 = Buffer.from('fd000008000000000000000000000001', 'hex');
    router.fromClient(c, icmp6Echo(src6, gw6, 7, 2, Buffer.from('ping6')));
    await tick();
    assert.equal(written.length, 0, 'nothing reaches the TUN');
    assert.equal(got.length, 2);
    assert.equal(router.counters.echoReplies, 2);
    assert.equal(router.counters.policyDenied, 0);
    const [r4, r6] = got as [Buffer, Buffer];
    assert.deepEqual(r4, (() => {
      const want = icmpEcho('10.8.0.1', '10.8.0.2', 7, 1, Buffer.from('ping4'));
      want[20] = 0; // echo reply
      want.writeUInt16BE(0, 22);
      want.writeUInt16BE(checksum(want.subarray(20)), 22);
      return want;
    })());
    assert.equal(checksum(r4.subarray(0, 20)), 0, 'IPv4 header checksum');
    assert.equal(r6[40], 129);
    assert.deepEqual(r6.subarray(8, 24), gw6);
    assert.deepEqual(r6.subarray(24, 40), src6);
    const tail = Buffer.alloc(8);
    tail.writeUInt32BE(r6.length - 40, 0);
    tail[7] = 58;
    assert.equal(checksum(Buffer.concat([r6.subarray(8, 40), tail, r6.subarray(40)])), 0, 'ICMPv6 checksum');
    assert.equal(r6.subarray(48).toString(), 'ping6');
  });

  it('anything else to the gateway still goes through the policy', async () => {
    const { router, written, mk, tick } = await setup();
    const { c, got } = mk('alice');
    router.fromClient(c, udp('10.8.0.2', 5000, '10.8.0.1', 22, Buffer.from('ssh?')));
    await tick();
    assert.equal(written.length + got.length, 0);
    assert.equal(router.counters.policyDenied, 1);
  });
});
