/**
 * VPN mode on the command line: each flag lands in `vpn:`, bad values are
 * reported with their flag, and VPN keys without --tun are refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cliInProcess, SAMPLE_LINK } from '../../helpers/cli-inproc.js';
import { validateConfig } from '../../../src/config/schema.js';

const LINK = SAMPLE_LINK;

const cli = cliInProcess;

const SERVER = ['server', '--listen', 'tcp://0.0.0.0:4433', '--data-dir', '/tmp/x'];

describe('VPN flags', () => {
  it('server: --tun --nat --tun-name --mtu --client-to-client --push-route --push-dns', async () => {
    const r = await cli([...SERVER, '--tun', '10.8.0.0/24,fd00:8::/64', '--nat', '--tun-name', 'pt0', '--mtu', '1380', '--client-to-client',
      '--push-route', '10.20.0.0/16', '--push-route', 'fd00:20::/48', '--push-dns', '10.20.0.53']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.server?.vpn, {
      pool: '10.8.0.0/24,fd00:8::/64', nat: true, tunName: 'pt0', mtu: 1380, clientToClient: true,
      pushRoutes: ['10.20.0.0/16', 'fd00:20::/48'], pushDns: ['10.20.0.53'],
    });
  });

  it('server: VPN off without --tun; defaults with it', async () => {
    assert.equal((await cli(SERVER)).server?.vpn, undefined);
    const r = await cli([...SERVER, '--tun', '10.8.0.0/24']);
    assert.deepEqual(r.server?.vpn, { pool: '10.8.0.0/24', nat: false, tunName: 'polytun0', mtu: 1400, clientToClient: false, pushRoutes: [], pushDns: [] });
  });

  it('server: bad values name their flag', async () => {
    for (const [args, want] of [
      [['--tun', '10.8.0.5/24'], /--tun.*did you mean 10\.8\.0\.0\/24/s],
      [['--tun', 'fd00::/64'], /IPv4 CIDR/],
      [['--tun', '10.8.0.0/31'], /no room for clients/],
      [['--nat'], /vpn\.pool|--tun/],
      [['--tun', '10.8.0.0/24,fd00::/64', '--mtu', '1200'], /1280/],
      [['--tun', '10.8.0.0/24', '--push-dns', 'dns.example'], /not an IP address/],
      [['--tun', '10.8.0.0/24', '--tun-name', 'way-too-long-device-name'], /1-15/],
    ] as const) {
      const r = await cli([...SERVER, ...args]);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.err, want, args.join(' '));
    }
  });

  it('client: --tun --route (repeatable) --redirect-gateway --apply-dns --mss-clamp --tun-name', async () => {
    const r = await cli(['client', LINK, '--tun', '--route', '10.20.0.0/16', '--route', 'fd00:20::/48', '--redirect-gateway', '--apply-dns', '--mss-clamp', '--tun-name', 'pt1']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.client?.vpn, {
      tunName: 'pt1', routes: ['10.20.0.0/16', 'fd00:20::/48'], redirectGateway: true, applyDns: true, mssClamp: true,
      stateDir: undefined, resolvConf: '/etc/resolv.conf',
    });
    assert.equal((await cli(['client', LINK])).client?.vpn, undefined);
  });

  it('client: --route without --tun is refused; so is a bad CIDR', async () => {
    const a = await cli(['client', LINK, '--route', '10.20.0.0/16']);
    assert.notEqual(a.code, 0);
    assert.match(a.err, /--tun/);
    const b = await cli(['client', LINK, '--tun', '--route', '10.20.0.1/16']);
    assert.notEqual(b.code, 0);
    assert.match(b.err, /did you mean/);
  });

  it('YAML form: pool as a list, enabled: false turns the client VPN off', () => {
    const s = validateConfig({ listen: ['tcp://0.0.0.0:1'], dataDir: '/d', vpn: { pool: ['10.8.0.0/24', 'fd00:8::/64'] } }, 'server');
    assert.equal(s.vpn?.pool, '10.8.0.0/24,fd00:8::/64');
    const c = validateConfig({ link: LINK, vpn: { enabled: false } }, 'client');
    assert.equal(c.vpn, undefined);
  });
});
