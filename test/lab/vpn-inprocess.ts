/**
 * Part of the VPN lab test: an in-process ServerVpn whose TUN lives in a
 * namespace of the lab, and a real session pair over loopback TCP. The test
 * plays the client by hand so it can send what no kernel would: malformed
 * and oversize packets, and a spoofed source. A UDP socket on the server's
 * TUN address answers the valid packets, which also checks the TUN →
 * session direction. The client announces offload, so it also sends
 * offloaded packets (VPN_GSO_FLOW, src/tun/vnet.ts): broken metadata, a
 * spoofed super-packet, and valid ones the kernel must take whole.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { MemoryMetrics } from '../../src/core/metrics.js';
import { ServerVpn } from '../../src/server/vpn.js';
import { gsoDatagram, OFF_CSUM, OFF_GSO } from '../../src/tun/vnet.js';
import { OPEN_OFFLOAD, VPN_FLOW, VPN_GSO_FLOW, VPN_VERSION, VpnMessageDecoder, encodeVpnOpen, type VpnConfig } from '../../src/tun/vpn-wire.js';
import { ipv4, udp } from '../helpers/ip-packets.js';
import { makePartial, tcpSuper } from '../helpers/offload-packets.js';
import { makePair } from '../helpers/session-pair.js';
import { sh, until, type VpnLab } from '../helpers/vpn-lab.js';

const ECHO = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => { console.log('got ' + m.toString()); s.send('re:' + m.toString(), r.port, r.address); });
s.bind(9999, '10.251.0.1', () => console.log('ready'));
`;

/** Runs the check; everything it makes is removed before it returns or throws. */
export async function inProcessMalformedCheck(lab: VpnLab, tag: string, baseDir: string): Promise<void> {
  const ns = `pv${tag}m`;
  const dataDir = mkdtempSync(join(baseDir, 'inproc-'));
  await sh('ip', ['netns', 'add', ns]);
  let vpn: ServerVpn | undefined;
  let pair: Awaited<ReturnType<typeof makePair>> | undefined;
  try {
    const metrics = new MemoryMetrics();
    vpn = await ServerVpn.start({ pool: '10.251.0.0/24', dataDir, tunName: 'ptm', netns: ns, metrics });
    const echo = lab.spawn(ns, 'echo', process.execPath, ['-e', ECHO]);
    await echo.waitFor('echo ready', (l) => l === 'ready');

    pair = await makePair();
    vpn.attach(await pair.serverSession, 'alice');
    const replies: Buffer[] = [];
    // Offloaded replies carry a 3-byte header in front of the packet.
    pair.clientSession.lanes.datagrams(VPN_FLOW, VPN_GSO_FLOW, (flow, p) => replies.push(Buffer.from(flow === VPN_FLOW ? p : p.subarray(3))));
    const control = pair.clientSession.openStream(encodeVpnOpen(VPN_VERSION, OPEN_OFFLOAD));
    const dec = new VpnMessageDecoder();
    const config = await new Promise<VpnConfig>((resolve, reject) => {
      control.on('data', (c: Buffer) => {
        const m = dec.push(c)[0];
        if (m?.type === 'config') resolve(m.config);
        else if (m) reject(new Error(`refused: ${JSON.stringify(m)}`));
      });
      control.on('error', reject);
    });
    const me = config.addr4.ip;
    assert.equal(config.gw4, '10.251.0.1');
    assert.equal(config.offload, true, 'the server takes offloaded packets');

    const send = (p: Buffer): boolean => pair?.clientSession.sendDatagram(VPN_FLOW, p) ?? false;
    const truncated = Buffer.from([0x45, 0, 0, 60, 0, 0, 0, 0, 64, 17]); // claims 60 bytes, has 10
    const badVersion = Buffer.alloc(48, 0x77);
    const lying = ipv4(me, '10.251.0.1', 17, Buffer.alloc(8));
    lying.writeUInt16BE(lying.length + 4, 2); // total length beyond the packet
    const oversize = udp(me, 5555, '10.251.0.1', 9999, Buffer.alloc(1500 - 28, 0x61)); // 1500 > MTU 1400
    const spoofed = udp('10.251.0.66', 5555, '10.251.0.1', 9999, Buffer.from(`spoofed-${tag}`));
    for (const p of [truncated, badVersion, lying, oversize, spoofed]) assert.equal(send(p), true);
    assert.equal(send(udp(me, 5555, '10.251.0.1', 9999, Buffer.from(`valid-${tag}`))), true);

    // Offloaded: 3 malformed (short, GSO on UDP, unknown flag), 1 oversize (a segment over the MTU), 1 spoofed.
    const gso = OFF_GSO | OFF_CSUM | 1360;
    const sendGso = (d: Buffer): boolean => pair?.clientSession.sendDatagram(VPN_GSO_FLOW, d) ?? false;
    const bulk = Buffer.alloc(20_000, 0x62);
    for (const d of [
      Buffer.from([3, 5]),
      gsoDatagram(makePartial(udp(me, 5555, '10.251.0.1', 9999, Buffer.from(`gso-udp-${tag}`))), OFF_GSO | OFF_CSUM | 100),
      gsoDatagram(tcpSuper(me, 5555, '10.251.0.1', 9, bulk), gso | 0x400000),
      gsoDatagram(tcpSuper(me, 5555, '10.251.0.1', 9, bulk), OFF_GSO | OFF_CSUM | 1361),
      gsoDatagram(tcpSuper('10.251.0.66', 5555, '10.251.0.1', 9, bulk), gso),
    ]) assert.equal(sendGso(d), true);
    // Valid: a UDP datagram with a partial checksum reaches the echo; a TCP super-packet to a
    // closed port is taken whole by the kernel, which answers it with one RST.
    assert.equal(sendGso(gsoDatagram(makePartial(udp(me, 5555, '10.251.0.1', 9999, Buffer.from(`partial-${tag}`))), OFF_CSUM)), true);
    assert.equal(sendGso(gsoDatagram(tcpSuper(me, 5556, '10.251.0.1', 9, bulk), gso)), true);

    await echo.waitFor('the valid packet', (l) => l === `got valid-${tag}`);
    await echo.waitFor('the valid packet with a partial checksum', (l) => l === `got partial-${tag}`);
    await until('the reply through the TUN', async () => replies.some((p) => p.subarray(28).toString() === `re:valid-${tag}`));
    await until('an RST for the super-packet', async () =>
      replies.some((p) => p[9] === 6 && p.readUInt16BE(20) === 9 && p.readUInt16BE(22) === 5556 && ((p[33] as number) & 0x04) !== 0));
    const s = vpn.stats;
    assert.deepEqual([s.malformed, s.oversize, s.spoofed], [3 + 3, 1 + 1, 1 + 1]);
    assert.ok(s.fromClients === 3 && s.superPackets === 1 && s.toClients >= 1 && s.tunDropped === 0, JSON.stringify(s));
    // The same counters as metrics (the router's and the TUN device's), passed down by ServerVpn.
    assert.deepEqual(['malformed', 'oversize', 'spoofed'].map((r) => metrics.value('polytun_vpn_dropped_total', r)), [6, 2, 2]);
    assert.equal(metrics.value('polytun_vpn_packets_total', 'fromClients'), 3);
    assert.equal(metrics.value('polytun_vpn_clients'), 1);
    assert.ok((metrics.value('polytun_tun_packets_total', 'written') ?? 0) >= 3, 'the TUN wrote the valid packets');
    assert.deepEqual(echo.out.filter((l) => l.startsWith('got ')).sort(), [`got partial-${tag}`, `got valid-${tag}`], 'only the valid packets reached the target');
    await echo.stop();
  } finally {
    await pair?.close();
    await vpn?.close();
    await sh('ip', ['netns', 'del', ns]);
    rmSync(dataDir, { recursive: true, force: true });
  }
}
