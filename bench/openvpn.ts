/**
 * OpenVPN as the TUN peer of bench/vpn.ts (recipe: shared/design/PEER-BENCH.md):
 * userspace OpenVPN 2.6 point to point over UDP between the two lab
 * namespaces, TLS with a throwaway CA, data channel CHACHA20-POLY1305.
 * Installed with apt when missing (no daemon is started by the package).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sh, type LabProc, type VpnLab } from '../test/helpers/vpn-lab.js';

/** Tunnel addresses of the OpenVPN link (server side, client side). */
export const OVPN_SERVER_TUN = '10.234.0.2';
export const OVPN_CLIENT_TUN = '10.234.0.1';

function have(cmd: string): Promise<boolean> {
  return new Promise((resolve) => execFile('sh', ['-c', `command -v ${cmd}`], (err) => resolve(err === null)));
}

/** True when openvpn is (or could be made) available; tries `apt-get install openvpn` once. */
export async function ensureOpenvpn(log: (s: string) => void): Promise<boolean> {
  if (await have('openvpn')) return true;
  if (process.getuid?.() !== 0) return false;
  log('# openvpn missing: installing it with apt-get');
  try {
    // No daemon auto-start while the package installs.
    await writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    await sh('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'openvpn']).catch(async () => {
      await sh('apt-get', ['update', '-qq']);
      await sh('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'openvpn']);
    });
  } catch (err) {
    log(`# openvpn: apt-get failed: ${String(err).split('\n')[0]}`);
  } finally {
    await sh('rm', ['-f', '/usr/sbin/policy-rc.d']);
  }
  return have('openvpn');
}

/** A CA and a server and a client certificate (EC P-256), for `--remote-cert-tls server`. */
async function makeCerts(dir: string): Promise<void> {
  const ssl = (args: string[]): Promise<string> => sh('openssl', args);
  await writeFile(join(dir, 'server.ext'), 'keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  await writeFile(join(dir, 'client.ext'), 'keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n');
  await ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=bench-ca', '-days', '2',
    '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt')]);
  for (const who of ['server', 'client']) {
    await ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${who}`, '-keyout', join(dir, `${who}.key`), '-out', join(dir, `${who}.csr`)]);
    await ssl(['x509', '-req', '-in', join(dir, `${who}.csr`), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2',
      '-extfile', join(dir, `${who}.ext`), '-out', join(dir, `${who}.crt`)]);
  }
}

/** Starts both ends; resolves when both report "Initialization Sequence Completed". */
export async function startOpenvpn(lab: VpnLab, dir: string, serverIp: string): Promise<LabProc[]> {
  await makeCerts(dir);
  const common = ['--dev-type', 'tun', '--proto', 'udp', '--port', '1194', '--data-ciphers', 'CHACHA20-POLY1305', '--txqueuelen', '1000', '--verb', '3'];
  const server = lab.spawn(lab.s, 'openvpn-server', 'openvpn', [
    '--dev', 'ovpnb', '--local', serverIp, '--ifconfig', OVPN_SERVER_TUN, OVPN_CLIENT_TUN, '--tls-server', '--dh', 'none',
    '--cert', join(dir, 'server.crt'), '--key', join(dir, 'server.key'), '--ca', join(dir, 'ca.crt'), ...common,
  ]);
  const client = lab.spawn(lab.c, 'openvpn-client', 'openvpn', [
    '--dev', 'ovpna', '--remote', serverIp, '--ifconfig', OVPN_CLIENT_TUN, OVPN_SERVER_TUN, '--tls-client', '--remote-cert-tls', 'server',
    '--cert', join(dir, 'client.crt'), '--key', join(dir, 'client.key'), '--ca', join(dir, 'ca.crt'), ...common,
  ]);
  const ready = (p: LabProc): Promise<string> => p.waitFor('OpenVPN ready', (l) => l.includes('Initialization Sequence Completed'), 30_000);
  await Promise.all([ready(server), ready(client)]);
  return [server, client];
}
