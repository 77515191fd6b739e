/**
 * Lab test (root only): VPN mode over the udp carrier — real `polytun
 * server --listen udp://… --tun … --nat` and `polytun client --tun`
 * processes in the namespaces of test/helpers/vpn-lab.ts:
 *
 *   ns C: polytun client, TUN ptc ══ udp ══ ns S: polytun server, TUN pts, NAT ── veth ── ns T: target
 *
 * HTTP and a 4 MiB TCP echo cross the tunnel intact, the target sees the
 * server's address (NAT), and the client's status shows its one path on
 * udp with the VPN's packets sent as datagrams of their own — TCP's
 * super-packets (TUN offload) cut to the MTU for it, not carried whole in
 * the reliable stream (no TCP inside a retransmitting carrier).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nativeAvailable, nativeUnavailableReason } from '../../src/native/addon.js';
import { ensureBuilt, have } from '../helpers/cli.js';
import { BULK_ECHO, HTTP_GET, SERVER_IP, SERVER_IP2, TARGET, TARGET_IP, TARGET_NET, VpnLab, until, type LabProc } from '../helpers/vpn-lab.js';

const STATUS_PORT = 1099;

const skipReason =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces, TUN devices, iptables)'
    : !existsSync('/dev/net/tun')
      ? '/dev/net/tun missing (modprobe tun)'
      : !nativeAvailable
        ? `native addon unavailable: ${nativeUnavailableReason} (npm run build:native)`
        : !have('iptables')
          ? 'iptables missing (scripts/install-test-deps.sh)'
          : undefined;
if (skipReason !== undefined) console.log(`# vpn-over-udp lab skipped: ${skipReason}`);

interface PathStatus {
  carrier: string;
  state: string;
  transport?: { datagramsSent?: number; datagramsReceived?: number; cc?: string };
}

describe('VPN mode over the udp carrier (lab: client ns — server ns — target ns)', { skip: skipReason ?? false }, () => {
  const tag = randomBytes(3).toString('hex');
  const dataDir = mkdtempSync(join(tmpdir(), 'polytun-vpnudp-data-'));
  const stateDir = mkdtempSync(join(tmpdir(), 'polytun-vpnudp-state-'));
  let lab: VpnLab;
  let server: LabProc;
  let client: LabProc;

  const status = async (): Promise<{ state?: string; paths?: PathStatus[] }> =>
    JSON.parse(await lab.node(lab.c, HTTP_GET, [`http://127.0.0.1:${STATUS_PORT}/status`])) as { state?: string; paths?: PathStatus[] };

  before(async () => {
    ensureBuilt();
    lab = await VpnLab.create(tag);
    const target = lab.spawn(lab.t as string, 'target', process.execPath, ['-e', TARGET, TARGET_IP]);
    await target.waitFor('target ready', (l) => l === 'ready');
    server = lab.polytun(lab.s, 'server', ['server', '--listen', `udp://${SERVER_IP}:4433`, '--data-dir', dataDir, '--tun', '10.251.0.0/24', '--nat', '--allow', TARGET_NET, '--tun-name', 'pts', '--log-format', 'json']);
    const link = await server.waitFor('a link on stdout', (l) => l.startsWith('polytun://'));
    assert.match(link, /[?&]t=udp\b/);
    await server.waitLog('vpn ready');
    client = lab.polytun(lab.c, 'client', ['client', link, '--tun', '--tun-name', 'ptc', '--route', TARGET_NET, '--no-socks', '--status', `127.0.0.1:${STATUS_PORT}`, '--log-format', 'json', '--set', `vpn.stateDir=${stateDir}`]);
    await client.waitLog('vpn up');
  });

  after(async () => {
    await lab?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('HTTP and a 4 MiB TCP echo cross the tunnel intact; the target sees the server (NAT)', async () => {
    const got = JSON.parse(await lab.node(lab.c, HTTP_GET, [`http://${TARGET_IP}:8080/`])) as { remote: string };
    assert.equal(got.remote, SERVER_IP2);
    assert.equal((await lab.node(lab.c, BULK_ECHO, [TARGET_IP, String(4 << 20)])).trim(), 'intact');
  });

  it('the path is udp, and the VPN packets left as datagrams of their own', async () => {
    const st = await until('the status with a udp path', async () => {
      const s = await status();
      return s.paths?.[0]?.transport !== undefined ? s : undefined;
    });
    assert.equal(st.state, 'open');
    assert.equal(st.paths?.length, 1);
    const p = st.paths?.[0] as PathStatus;
    assert.equal(p.carrier, 'udp');
    // 4 MiB echoed in ~1400-byte packets: thousands of datagrams each way, not a handful of small ones.
    assert.ok((p.transport?.datagramsSent ?? 0) > 2500, JSON.stringify(p.transport));
    assert.ok((p.transport?.datagramsReceived ?? 0) > 2500, JSON.stringify(p.transport));
  });
});
