import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VpnPacketPath } from '../../../src/client/vpn-path.js';
import { MemoryMetrics, type Metrics } from '../../../src/core/metrics.js';
import { VPN_FLOW, type VpnConfig } from '../../../src/tun/vpn-wire.js';
import { mssOption, SYN, tcp, tcpChecksumOk, udp } from '../../helpers/ip-packets.js';

const config: VpnConfig = { addr4: { ip: '10.8.0.2', prefix: 24 }, addr6: { ip: 'fd00:8::2', prefix: 64 }, gw4: '10.8.0.1', gw6: 'fd00:8::1', mtu: 1400, routes: [], dns: [] };

function setup(mssClamp = false, metrics?: Metrics) {
  const written: Buffer[] = [];
  const sent: Buffer[] = [];
  let session: { sendDatagram(flow: number, p: Buffer): boolean } | undefined = {
    sendDatagram: (flow, p) => (assert.equal(flow, VPN_FLOW), sent.push(Buffer.from(p)) > 0),
  };
  const tun = { mtu: 1400, closed: false, write: (ps: readonly Uint8Array[]) => (written.push(...ps.map((p) => Buffer.from(p))), { written: ps.length, dropped: 0, invalid: 0 }) };
  const path = new VpnPacketPath({ tun, mssClamp, session: () => session, ...(metrics ? { metrics } : {}) });
  path.setLease(config);
  return { path, written, sent, setSession: (s: typeof session) => (session = s), tick: () => new Promise<void>((r) => queueMicrotask(r)) };
}

describe('VpnPacketPath (client)', () => {
  it('the counters as metrics, read when collected', async () => {
    const metrics = new MemoryMetrics();
    const t = setup(false, metrics);
    const p = udp('10.8.0.2', 1, '10.20.0.1', 2, Buffer.from('x'));
    t.path.fromTun([p, p]);
    t.setSession(undefined);
    t.path.fromTun([p]);
    t.path.fromServer(udp('10.20.0.1', 2, '10.8.0.2', 1, Buffer.from('a')));
    t.path.fromServer(udp('10.20.0.1', 2, '10.8.0.9', 1, Buffer.from('not ours')));
    await t.tick();
    assert.equal(t.written.length, 1);
    assert.deepEqual([metrics.value('polytun_client_vpn_packets_total', 'sent'), metrics.value('polytun_client_vpn_packets_total', 'received')], [2, 1]);
    assert.deepEqual(['dropped', 'misrouted', 'malformed'].map((r) => metrics.value('polytun_client_vpn_dropped_total', r)), [1, 1, 0]);
  });

  it('TUN → session; without a session (carrier lost) packets are dropped and counted, not queued', () => {
    const t = setup();
    const p = udp('10.8.0.2', 1, '10.20.0.1', 2, Buffer.from('x'));
    t.path.fromTun([p, p]);
    assert.equal(t.sent.length, 2);
    t.setSession({ sendDatagram: () => false }); // detached: the session refuses
    t.path.fromTun([p]);
    t.setSession(undefined);
    t.path.fromTun([p]);
    assert.deepEqual([t.path.counters.sent, t.path.counters.dropped], [2, 2]);
  });

  it('server → TUN in one write per tick; malformed, oversize and misrouted packets are dropped', async () => {
    const t = setup();
    const good4 = udp('10.20.0.1', 2, '10.8.0.2', 1, Buffer.from('a'));
    const good6 = udp('fd00:20::1', 2, 'fd00:8::2', 1, Buffer.from('b'));
    t.path.fromServer(good4);
    t.path.fromServer(good6);
    t.path.fromServer(Buffer.from([0x60, 0, 0]));
    t.path.fromServer(udp('10.20.0.1', 2, '10.8.0.2', 1, Buffer.alloc(1400)));
    t.path.fromServer(udp('10.20.0.1', 2, '10.8.0.3', 1, Buffer.from('not ours')));
    await t.tick();
    assert.deepEqual(t.written, [good4, good6]);
    const k = t.path.counters;
    assert.deepEqual([k.received, k.malformed, k.oversize, k.misrouted], [2, 1, 1, 1]);
  });

  it('--mss-clamp lowers SYN MSS both ways (TUN MTU 1400 → 1360 / 1340)', async () => {
    const t = setup(true);
    t.path.fromTun([tcp('10.8.0.2', 4000, '10.20.0.1', 80, SYN, mssOption(1460))]);
    t.path.fromServer(tcp('fd00:20::1', 80, 'fd00:8::2', 4000, SYN, mssOption(1440)));
    await t.tick();
    const out = t.sent[0] as Buffer;
    const back = t.written[0] as Buffer;
    assert.equal(out.readUInt16BE(20 + 22), 1360);
    assert.ok(tcpChecksumOk(out, '10.8.0.2', '10.20.0.1'));
    assert.equal(back.readUInt16BE(40 + 22), 1340);
    assert.ok(tcpChecksumOk(back, 'fd00:20::1', 'fd00:8::2'));
    assert.equal(t.path.counters.clamped, 2);
  });

  it('the kernel\'s own IPv6 link chatter (RS, MLD from fe80::) is not sent to the server', () => {
    const t = setup();
    t.path.fromTun([udp('fe80::1', 1, 'ff02::2', 2, Buffer.alloc(8)), udp('fd00:8::2', 1, 'ff02::fb', 5353, Buffer.alloc(8)), udp('fd00:8::2', 1, 'fd00:20::1', 2, Buffer.alloc(8))]);
    assert.equal(t.sent.length, 1);
    assert.equal(t.path.counters.linkLocal, 2);
  });

  it('stop() ends both directions', async () => {
    const t = setup();
    t.path.stop();
    t.path.fromTun([udp('10.8.0.2', 1, '10.20.0.1', 2, Buffer.from('x'))]);
    t.path.fromServer(udp('10.20.0.1', 2, '10.8.0.2', 1, Buffer.from('y')));
    await t.tick();
    assert.deepEqual([t.sent.length, t.written.length], [0, 0]);
  });
});
