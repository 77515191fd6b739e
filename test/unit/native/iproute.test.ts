import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { AbortedError, ConfigError } from '../../../src/core/errors.js';
import { addRoute, checkCidr, IprouteError, linkExists, parseDefaultRoute, runIp } from '../../../src/tun/iproute.js';

const hasIp = spawnSync('ip', ['-V']).status === 0 ? false : 'iproute2 `ip` not installed';

// Shapes as printed by `ip -j route show default` (iproute2 6.x).
const V4 = JSON.stringify([
  { dst: 'default', gateway: '192.0.2.1', dev: 'eth0', protocol: 'dhcp', metric: 600, flags: [] },
  { dst: 'default', gateway: '198.51.100.1', dev: 'wwan0', protocol: 'static', metric: 100, flags: [] },
]);
const V6 = JSON.stringify([{ dst: 'default', gateway: 'fe80::1', dev: 'eth0', protocol: 'ra', metric: 1024, pref: 'medium', flags: [] }]);
const DEV_ROUTE = JSON.stringify([{ dst: 'default', dev: 'ppp0', scope: 'link', flags: [] }]);

describe('iproute helpers', () => {
  it('picks the lowest-metric default route', () => {
    assert.deepEqual(parseDefaultRoute(V4, 4), { family: 4, gateway: '198.51.100.1', dev: 'wwan0', metric: 100 });
    assert.deepEqual(parseDefaultRoute(V6, 6), { family: 6, gateway: 'fe80::1', dev: 'eth0', metric: 1024 });
  });

  it('parses a gateway-less device route and an empty table', () => {
    assert.deepEqual(parseDefaultRoute(DEV_ROUTE, 4), { family: 4, dev: 'ppp0', metric: 0 });
    assert.equal(parseDefaultRoute('[]', 4), undefined);
    assert.equal(parseDefaultRoute('', 6), undefined);
  });

  it('reports unparsable output as IprouteError', () => {
    assert.throws(() => parseDefaultRoute('{oops', 4), IprouteError);
    assert.throws(() => parseDefaultRoute('{"dst":"default"}', 4), /not an array/);
  });

  it('validates CIDRs', () => {
    for (const ok of ['10.0.0.1/24', '10.0.0.1', 'fd00::1/64', '::/0', '0.0.0.0/0']) assert.equal(checkCidr(ok), ok);
    for (const bad of ['10.0.0.1/33', 'fd00::1/129', '10.0.0/24', '10.0.0.1/', '10.0.0.1/2a', 'eth0', '-f/24']) {
      assert.throws(() => checkCidr(bad), ConfigError, bad);
    }
  });

  it('refuses a route without a target and bad names before running ip', async () => {
    await assert.rejects(addRoute('10.9.0.0/16', {}), /needs dev or via/);
    await assert.rejects(addRoute('10.9.0.0/16', { dev: '-bad' }), ConfigError);
    await assert.rejects(runIp(['link'], { netns: 'bad name' }), ConfigError);
  });

  it('an ip failure is an IprouteError with its stderr and exit code', { skip: hasIp }, async () => {
    await assert.rejects(runIp(['link', 'show', 'dev', 'nosuchdev0']), (e: unknown) => {
      assert.ok(e instanceof IprouteError);
      assert.equal(e.code, 'ERR_IPROUTE');
      assert.notEqual(e.exitCode, 0);
      assert.match(e.stderr, /nosuchdev0/);
      assert.match(e.message, /ip link show dev nosuchdev0/);
      return true;
    });
    assert.equal(await linkExists('nosuchdev0'), false);
    assert.equal(await linkExists('lo'), true);
  });

  it('an aborted ip command rejects with AbortedError', { skip: hasIp }, async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(runIp(['link', 'show'], { signal: ac.signal }), AbortedError);
  });
});
