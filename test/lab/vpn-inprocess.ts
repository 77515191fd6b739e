/**
 * Part of the VPN lab test: an in-process ServerVpn whose TUN lives in a
 * namespace of the lab, and a real session pair over loopback TCP. The test
 * plays the client by hand so it can send what no kernel would: malformed
 * and oversize packets, and a spoofed source. A UDP socket on the server's
 * TUN address answers the one valid packet, which also checks the TUN →
 * session direction.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { ServerVpn } from '../../src/server/vpn.js';
import { tapLanes } from '../../src/tun/lane-tap.js';
import { VPN_FLOW, VpnMessageDecoder, encodeVpnOpen, type VpnConfig } from '../../src/tun/vpn-wire.js';
import { ipv4, udp } from '../helpers/ip-packets.js';
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
    vpn = await ServerVpn.start({ pool: '10.251.0.0/24', dataDir, tunName: 'ptm', netns: ns });
    const echo = lab.spawn(ns, 'echo', process.execPath, ['-e', ECHO]);
    await echo.waitFor('echo ready', (l) => l === 'ready');

    pair = await makePair();
    vpn.attach(await pair.serverSession, 'alice');
    const replies: Buffer[] = [];
    tapLanes(pair.clientSession, { flow: VPN_FLOW, datagram: (p) => replies.push(Buffer.from(p)) });
    const control = pair.clientSession.openStream(encodeVpnOpen());
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

    const send = (p: Buffer): boolean => pair?.clientSession.sendDatagram(VPN_FLOW, p) ?? false;
    const truncated = Buffer.from([0x45, 0, 0, 60, 0, 0, 0, 0, 64, 17]); // claims 60 bytes, has 10
    const badVersion = Buffer.alloc(48, 0x77);
    const lying = ipv4(me, '10.251.0.1', 17, Buffer.alloc(8));
    lying.writeUInt16BE(lying.length + 4, 2); // total length beyond the packet
    const oversize = udp(me, 5555, '10.251.0.1', 9999, Buffer.alloc(1500 - 28, 0x61)); // 1500 > MTU 1400
    const spoofed = udp('10.251.0.66', 5555, '10.251.0.1', 9999, Buffer.from(`spoofed-${tag}`));
    for (const p of [truncated, badVersion, lying, oversize, spoofed]) assert.equal(send(p), true);
    assert.equal(send(udp(me, 5555, '10.251.0.1', 9999, Buffer.from(`valid-${tag}`))), true);

    await echo.waitFor('the valid packet', (l) => l === `got valid-${tag}`);
    await until('the reply through the TUN', async () => replies.some((p) => p.subarray(28).toString() === `re:valid-${tag}`));
    const s = vpn.stats;
    assert.deepEqual([s.malformed, s.oversize, s.spoofed], [3, 1, 1]);
    assert.ok(s.fromClients === 1 && s.toClients >= 1, JSON.stringify(s));
    assert.deepEqual(echo.out.filter((l) => l.startsWith('got ')), [`got valid-${tag}`], 'only the valid packet reached the target');
    await echo.stop();
  } finally {
    await pair?.close();
    await vpn?.close();
    await sh('ip', ['netns', 'del', ns]);
    rmSync(dataDir, { recursive: true, force: true });
  }
}
