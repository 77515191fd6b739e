import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import fc from 'fast-check';
import { ConfigError } from '../../../src/core/errors.js';
import { formatIp, parseCidr } from '../../../src/server/cidr.js';
import { DEFAULT_DENY, DestinationPolicy, normalizeHostName, parsePolicyEntry } from '../../../src/server/policy.js';
import type { DestinationPolicyInit, PolicyDecision } from '../../../src/server/policy.js';

// Every address below is only *checked*, never dialed.
const PUBLIC4 = '93.184.216.34';
const PUBLIC6 = '2a00:1450:4001:80b::200e';

function iface(address: string): NetworkInterfaceInfo {
  const v6 = address.includes(':');
  return v6
    ? { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal: false, cidr: null, scopeid: 0 }
    : { address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: null };
}

/** A policy with no own addresses unless the test gives some. */
function policy(init: DestinationPolicyInit = {}): DestinationPolicy {
  return new DestinationPolicy({ interfaces: () => ({}), ...init });
}

const brief = (d: PolicyDecision): string => `${d.allowed ? 'allow' : 'deny'} ${d.reason}`;

describe('default deny', () => {
  test('refuses every built-in range at its network address and at its last address', () => {
    const p = policy();
    for (const [text, reason] of DEFAULT_DENY) {
      const c = parseCidr(text);
      const first = text.split('/')[0] ?? '';
      assert.equal(brief(p.checkAddress(first, 443)), `deny ${reason}`, text);
      assert.equal(p.checkAddress(first, 443).rule, c.toString());
      if (c.family === 4) {
        const last = formatIp({ family: 4, v4: (c.v4Network | ~c.v4Mask) >>> 0 });
        // 255.255.255.255 ends 240.0.0.0/4 but has its own, more specific name.
        const want = last === '255.255.255.255' ? 'broadcast' : reason;
        assert.equal(brief(p.checkAddress(last, 443)), `deny ${want}`, `${text} last ${last}`);
      }
    }
  });

  test('named samples from each range, and their neighbours outside it', () => {
    const p = policy();
    const table: [string, string][] = [
      ['0.1.2.3', 'deny this-network'],
      ['127.0.0.1', 'deny loopback'],
      ['127.255.255.254', 'deny loopback'],
      ['10.20.30.40', 'deny private'],
      ['172.16.0.1', 'deny private'],
      ['172.31.255.255', 'deny private'],
      ['172.32.0.1', 'allow public'],
      ['172.15.255.255', 'allow public'],
      ['192.168.1.1', 'deny private'],
      ['100.64.0.1', 'deny cgnat'],
      ['100.127.255.255', 'deny cgnat'],
      ['100.128.0.1', 'allow public'],
      ['169.254.169.254', 'deny link-local'],
      ['192.0.0.8', 'deny ietf-protocol'],
      ['198.18.0.1', 'deny benchmark'],
      ['198.19.255.255', 'deny benchmark'],
      ['198.20.0.1', 'allow public'],
      ['224.0.0.1', 'deny multicast'],
      ['239.255.255.250', 'deny multicast'],
      ['240.0.0.1', 'deny reserved'],
      ['255.255.255.255', 'deny broadcast'],
      ['::', 'deny unspecified'],
      ['::1', 'deny loopback'],
      ['fe80::1', 'deny link-local'],
      ['fe80::1%eth0', 'deny link-local'],
      ['fc00::1', 'deny unique-local'],
      ['fd12:3456::1', 'deny unique-local'],
      ['ff02::1', 'deny multicast'],
      [PUBLIC4, 'allow public'],
      [PUBLIC6, 'allow public'],
    ];
    for (const [ip, want] of table) {
      assert.equal(brief(p.checkAddress(ip, 80)), want, ip);
      assert.equal(brief(p.checkName(ip, 80)), want, `checkName ${ip}`);
    }
  });

  test('IPv6 spellings of IPv4 addresses get the IPv4 verdict', () => {
    const p = policy();
    assert.equal(brief(p.checkAddress('::ffff:127.0.0.1', 80)), 'deny loopback');
    assert.equal(brief(p.checkName('[::ffff:127.0.0.1]', 80)), 'deny loopback');
    assert.equal(brief(p.checkAddress('::ffff:7f00:1', 80)), 'deny loopback');
    assert.equal(brief(p.checkAddress('::7f00:1', 80)), 'deny loopback');
    assert.equal(brief(p.checkAddress('::ffff:a00:1', 80)), 'deny private');
    assert.equal(brief(p.checkAddress('::ffff:169.254.169.254', 80)), 'deny link-local');
    assert.equal(brief(p.checkAddress(`::ffff:${PUBLIC4}`, 80)), 'allow public');
  });

  test('NAT64, SIIT and 6to4 addresses that embed a refused IPv4 are refused', () => {
    const p = policy({ allow: ['127.0.0.1'] });
    const d = p.checkAddress('64:ff9b::7f00:1', 80);
    assert.equal(brief(d), 'deny loopback', 'an IPv4 allow does not open its NAT64 form');
    assert.match(d.rule ?? '', /embeds 127\.0\.0\.1/);
    assert.equal(brief(p.checkAddress('64:ff9b::10.1.2.3', 80)), 'deny private');
    assert.equal(brief(p.checkAddress('::ffff:0:a9fe:a9fe', 80)), 'deny link-local');
    assert.equal(brief(p.checkAddress('2002:c0a8:101::1', 80)), 'deny private');
    assert.equal(brief(p.checkAddress('64:ff9b:1::a00:1', 80)), 'deny nat64-local');
    assert.equal(brief(p.checkAddress('64:ff9b::5db8:d822', 80)), 'allow public', 'NAT64 of a public address');
    const withDeny = policy({ deny: [PUBLIC4] });
    assert.equal(brief(withDeny.checkAddress('64:ff9b::5db8:d822', 80)), 'deny deny-rule', 'IPv4 deny entries see through NAT64');
    assert.equal(brief(withDeny.checkAddress('2002:5db8:d822::1', 80)), 'deny deny-rule');
  });

  test("the server's own interface addresses are refused, re-read after the TTL", () => {
    let now = 0;
    let ifs: NodeJS.Dict<NetworkInterfaceInfo[]> = { eth0: [iface(PUBLIC4), iface(PUBLIC6)], lo: [iface('127.0.0.1')] };
    let reads = 0;
    const p = new DestinationPolicy({ interfaces: () => (reads++, ifs), now: () => now, ownAddressTtlMs: 1000 });
    const d = p.checkAddress(PUBLIC4, 443);
    assert.equal(brief(d), 'deny own-address');
    assert.equal(d.rule, PUBLIC4);
    assert.equal(brief(p.checkAddress(PUBLIC6, 443)), 'deny own-address');
    assert.equal(brief(p.checkAddress(`::ffff:${PUBLIC4}`, 443)), 'deny own-address');
    assert.equal(brief(p.checkAddress('127.0.0.1', 443)), 'deny loopback', 'the range name wins over own-address');
    assert.equal(brief(p.checkAddress('93.184.216.35', 443)), 'allow public');

    ifs = { eth0: [iface('93.184.216.35')] };
    now = 999;
    assert.equal(brief(p.checkAddress(PUBLIC4, 443)), 'deny own-address', 'snapshot still trusted');
    now = 1000;
    assert.equal(brief(p.checkAddress(PUBLIC4, 443)), 'allow public', 'snapshot refreshed');
    assert.equal(brief(p.checkAddress('93.184.216.35', 443)), 'deny own-address');
    assert.equal(reads, 2);

    const off = new DestinationPolicy({ interfaces: () => ({ eth0: [iface(PUBLIC4)] }), denyOwnAddresses: false });
    assert.equal(brief(off.checkAddress(PUBLIC4, 443)), 'allow public');
    const allowed = new DestinationPolicy({ interfaces: () => ({ eth0: [iface(PUBLIC4)] }), allow: [PUBLIC4] });
    assert.equal(brief(allowed.checkAddress(PUBLIC4, 443)), 'allow allow-rule');
  });

  test('a failing interface listing keeps the previous snapshot and logs', () => {
    let now = 0;
    let fail = false;
    const warnings: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_o: object, m?: string) => void warnings.push(m ?? ''),
      error: () => undefined,
      child: () => logger,
    };
    const p = new DestinationPolicy({
      interfaces: () => {
        if (fail) throw Object.assign(new Error('uv_interface_addresses failed'), { code: 'ERR_SYSTEM_ERROR' });
        return { eth0: [iface(PUBLIC4)] };
      },
      now: () => now,
      logger,
    });
    assert.equal(brief(p.checkAddress(PUBLIC4, 1)), 'deny own-address');
    fail = true;
    now = 60_000;
    assert.equal(brief(p.checkAddress(PUBLIC4, 1)), 'deny own-address');
    assert.equal(warnings.length, 1);
  });
});

describe('user rules', () => {
  test('explicit allow opens a default range, but only what it names', () => {
    const p = policy({ allow: ['127.0.0.1'] });
    const d = p.checkAddress('127.0.0.1', 8080);
    assert.deepEqual(d, { allowed: true, reason: 'allow-rule', rule: '127.0.0.1' });
    assert.equal(brief(p.checkAddress('127.0.0.2', 8080)), 'deny loopback');
    assert.equal(brief(p.checkAddress('::1', 8080)), 'deny loopback');
    assert.equal(brief(p.checkAddress('::ffff:127.0.0.1', 8080)), 'allow allow-rule');
  });

  test('explicit deny beats explicit allow, whatever the order or specificity', () => {
    const p = policy({ allow: ['10.0.0.0/8', '10.1.2.3'], deny: ['10.1.0.0/16'] });
    assert.equal(brief(p.checkAddress('10.1.2.3', 80)), 'deny deny-rule');
    assert.equal(p.checkAddress('10.1.2.3', 80).rule, '10.1.0.0/16');
    assert.equal(brief(p.checkAddress('10.2.0.1', 80)), 'allow allow-rule');
    const q = policy({ allow: ['*'], deny: [PUBLIC4] });
    assert.equal(brief(q.checkAddress(PUBLIC4, 80)), 'deny deny-rule');
    assert.equal(brief(q.checkAddress('127.0.0.1', 80)), 'allow allow-rule', '`allow *` turns the default off');
  });

  test('ports: single, lists, ranges, IPv6 in brackets', () => {
    const p = policy({ allow: ['127.0.0.1:80,443', '127.0.0.2:8000-9000', '[::1]:22', '[fd00::/8]:443'] });
    assert.equal(brief(p.checkAddress('127.0.0.1', 80)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('127.0.0.1', 443)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('127.0.0.1', 8080)), 'deny loopback');
    assert.equal(brief(p.checkAddress('127.0.0.2', 8000)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('127.0.0.2', 9000)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('127.0.0.2', 7999)), 'deny loopback');
    assert.equal(brief(p.checkAddress('127.0.0.2', 9001)), 'deny loopback');
    assert.equal(brief(p.checkAddress('::1', 22)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('::1', 23)), 'deny loopback');
    assert.equal(brief(p.checkAddress('fd00::5', 443)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('fd00::5', 80)), 'deny unique-local');
  });

  test('a narrower block with the wrong port does not hide a wider block with the right one', () => {
    const p = policy({ allow: ['10.0.0.0/8:443', '10.1.2.3:22'] });
    assert.equal(brief(p.checkAddress('10.1.2.3', 443)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('10.1.2.3', 22)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('10.1.2.3', 80)), 'deny private');
  });

  test('blocking SMTP: 0.0.0.0/0:25 is IPv4 only, *:25 and denyPorts cover both families', () => {
    const v4only = policy({ deny: ['0.0.0.0/0:25'] });
    assert.equal(brief(v4only.checkAddress(PUBLIC4, 25)), 'deny deny-rule');
    assert.equal(brief(v4only.checkAddress(PUBLIC4, 587)), 'allow public');
    assert.equal(brief(v4only.checkAddress(PUBLIC6, 25)), 'allow public');
    for (const p of [policy({ deny: ['*:25'] }), policy({ denyPorts: [25] }), policy({ deny: ['0.0.0.0/0:25', '[::/0]:25'] })]) {
      assert.equal(brief(p.checkAddress(PUBLIC4, 25)), 'deny deny-rule');
      assert.equal(brief(p.checkAddress(PUBLIC6, 25)), 'deny deny-rule');
      assert.equal(brief(p.checkAddress(PUBLIC6, 443)), 'allow public');
    }
    // `*` also refuses names before any DNS query; address blocks wait for the resolved address.
    assert.equal(brief(policy({ denyPorts: [25] }).checkName('mail.example.net', 25)), 'deny deny-rule');
    assert.equal(brief(policy({ deny: ['0.0.0.0/0:25'] }).checkName('mail.example.net', 25)), 'allow name-ok');
    // deny beats allow, so an allowed host still cannot send mail.
    const q = policy({ allow: ['127.0.0.1'], denyPorts: ['25', '465-466'] });
    assert.equal(brief(q.checkAddress('127.0.0.1', 25)), 'deny deny-rule');
    assert.equal(brief(q.checkAddress('127.0.0.1', 466)), 'deny deny-rule');
    assert.equal(brief(q.checkAddress('127.0.0.1', 467)), 'allow allow-rule');
  });

  test('allowPorts refuses every other port, before any allow', () => {
    const p = policy({ allow: ['127.0.0.1'], allowPorts: [443, '8000-8080'] });
    assert.deepEqual(p.checkAddress(PUBLIC4, 80), { allowed: false, reason: 'port-not-allowed', rule: 'allowPorts' });
    assert.equal(brief(p.checkName('example.net', 80)), 'deny port-not-allowed');
    assert.equal(brief(p.checkAddress(PUBLIC4, 443)), 'allow public');
    assert.equal(brief(p.checkAddress('127.0.0.1', 8080)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('127.0.0.1', 22)), 'deny port-not-allowed');
  });

  test('domain rules: exact names and *.suffix (apex included), case and trailing dot ignored', () => {
    const p = policy({ deny: ['*.example.com', 'evil.test', 'mail.example.org:25'] });
    for (const n of ['example.com', 'www.example.com', 'a.b.EXAMPLE.com.', 'EVIL.test']) {
      assert.equal(brief(p.checkName(n, 443)), 'deny deny-rule', n);
    }
    assert.equal(p.checkName('x.example.com', 443).rule, '*.example.com');
    for (const n of ['notexample.com', 'example.com.au', 'sub.evil.test', 'mail.example.org']) {
      assert.equal(brief(p.checkName(n, 443)), 'allow name-ok', n);
    }
    assert.equal(brief(p.checkName('mail.example.org', 25)), 'deny deny-rule');
    // A deny by name also holds for the addresses that name resolved to.
    assert.equal(brief(p.checkAddress(PUBLIC4, 443, 'www.example.com')), 'deny deny-rule');
    assert.equal(brief(p.checkAddress(PUBLIC4, 443, 'www.example.net')), 'allow public');
  });

  test('a name allow carries over to its resolved addresses, but never past an explicit deny', () => {
    const p = policy({ allow: ['intranet.corp', '*.svc.local:8443'], deny: ['10.9.0.0/16'] });
    assert.equal(brief(p.checkName('intranet.corp', 80)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('10.0.0.5', 80, 'intranet.corp')), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('10.0.0.5', 80, 'INTRANET.corp.')), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('10.0.0.5', 80, 'other.corp')), 'deny private');
    assert.equal(brief(p.checkAddress('10.0.0.5', 80)), 'deny private');
    assert.equal(brief(p.checkAddress('10.9.0.5', 80, 'intranet.corp')), 'deny deny-rule');
    assert.equal(brief(p.checkAddress('10.0.0.7', 8443, 'api.svc.local')), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('10.0.0.7', 8444, 'api.svc.local')), 'deny private');
  });

  test('DNS rebinding: a harmless-looking name that resolves to loopback is refused', () => {
    const p = policy();
    assert.equal(brief(p.checkName('rebind.attacker.test', 80)), 'allow name-ok');
    assert.equal(brief(p.checkAddress('127.0.0.1', 80, 'rebind.attacker.test')), 'deny loopback');
    assert.equal(brief(p.checkAddress('::ffff:169.254.169.254', 80, 'rebind.attacker.test')), 'deny link-local');
    const demo = policy({ allow: ['127.0.0.1'] });
    assert.equal(brief(demo.checkAddress('127.0.0.1', 80, 'rebind.attacker.test')), 'allow allow-rule');
  });

  test("otherwise: 'deny' turns the policy into an allow-list", () => {
    const p = policy({ otherwise: 'deny', allow: ['93.184.216.0/24', 'api.example.com'] });
    assert.equal(brief(p.checkAddress(PUBLIC4, 443)), 'allow allow-rule');
    assert.equal(brief(p.checkAddress('93.184.217.1', 443)), 'deny not-allowed');
    assert.equal(brief(p.checkAddress('127.0.0.1', 443)), 'deny loopback');
    assert.equal(brief(p.checkName('other.example.com', 443)), 'allow name-ok', 'the address check decides');
    assert.equal(brief(p.checkAddress('93.184.217.1', 443, 'other.example.com')), 'deny not-allowed');
    assert.equal(brief(p.checkAddress('93.184.217.1', 443, 'api.example.com')), 'allow allow-rule');
  });

  test('malformed targets and ports are refused, never thrown', () => {
    const p = policy({ allow: ['*'] });
    for (const n of ['2130706433', '0x7f000001', '0177.0.0.1', '127.1', 'a..b', '', '-', 'exa mple.com', 'ünïcode.com', `${'a'.repeat(64)}.com`]) {
      assert.equal(brief(p.checkName(n, 80)), 'deny bad-name', JSON.stringify(n));
    }
    assert.equal(brief(p.checkName('under_score.example', 80)), 'allow allow-rule');
    for (const port of [0, -1, 65536, 1.5, Number.NaN]) assert.equal(brief(p.checkAddress(PUBLIC4, port)), 'deny bad-port');
    assert.equal(brief(p.checkAddress('localhost', 80)), 'deny bad-address');
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), fc.integer({ min: -5, max: 70_000 }), (host, port) => {
        const a = policy().checkName(host, port);
        const b = policy().checkAddress(host, port, host);
        assert.equal(typeof a.allowed, 'boolean');
        assert.equal(typeof b.allowed, 'boolean');
      }),
    );
  });
});

describe('entry parsing', () => {
  test('forms', () => {
    const e = (s: string): string => {
      const r = parsePolicyEntry(s, 'x');
      const t = r.target;
      const what = t.kind === 'cidr' ? t.cidr.toString() : t.kind === 'host' ? t.name : t.kind === 'suffix' ? `*.${t.suffix}` : '*';
      return `${t.kind} ${what}${r.ports ? ` ${r.ports.map(([a, b]) => (a === b ? a : `${a}-${b}`)).join(',')}` : ''}`;
    };
    assert.equal(e('127.0.0.1'), 'cidr 127.0.0.1/32');
    assert.equal(e('10.0.0.0/8:80,443'), 'cidr 10.0.0.0/8 80,443');
    assert.equal(e('::1'), 'cidr ::1/128');
    assert.equal(e('[::1:22]'), 'cidr 0.1.0.34/32', 'brackets without ports: the IPv4-compatible address ::0.1.0.34');
    assert.equal(e('2001:db8::1:abcd'), 'cidr 2001:db8::1:abcd/128');
    assert.equal(e('[::1]:22'), 'cidr ::1/128 22');
    assert.equal(e('[fc00::/7]:1-1024'), 'cidr fc00::/7 1-1024');
    assert.equal(e('::ffff:127.0.0.1'), 'cidr 127.0.0.1/32');
    assert.equal(e('Example.COM'), 'host example.com');
    assert.equal(e('*.Example.com:443'), 'suffix *.example.com 443');
    assert.equal(e('*'), 'any *');
    assert.equal(e(' *:25 '), 'any * 25');
  });

  test('bad entries are ConfigErrors naming the list, index and entry', () => {
    const bad: [string, RegExp][] = [
      ['10.0.0.1/8', /host bits/],
      ['300.1.1.1', /IPv4/],
      ['1.2.3.4:0', /bad port/],
      ['1.2.3.4:70000', /bad port/],
      ['1.2.3.4:9-8', /range/],
      ['1.2.3.4:', /bad port/],
      ['1.2.3.4:80,', /bad port/],
      ['[::1', /missing '\]'/],
      ['[::1]22', /expected ':PORTS'/],
      ['[1.2.3.4]:80', /only for IPv6/],
      ['*.', /suffix/],
      ['exa mple.com', /not an IP/],
      ['0x7f.1', /not an IP/],
      ['', /empty/],
      ['fe80::zz', /IPv6/],
      ['::1:22', /ambiguous: write \[::1\]:22 for ports, or \[::1:22\]/],
      ['2001:db8::1:8000-9000', /ambiguous/],
    ];
    for (const [entry, why] of bad) {
      assert.throws(
        () => new DestinationPolicy({ allow: ['127.0.0.1'], deny: ['*:25', entry] }),
        (err: unknown) =>
          err instanceof ConfigError && err.where === 'policy.deny[1]' && why.test(err.message) && err.message.includes(`'${entry}'`),
        entry,
      );
    }
    assert.throws(() => new DestinationPolicy({ allowPorts: ['http'], where: 'egress' }), (e: unknown) => e instanceof ConfigError && e.where === 'egress.allowPorts');
    assert.throws(() => new DestinationPolicy({ denyPorts: [0] }), (e: unknown) => e instanceof ConfigError && e.where === 'policy.denyPorts');
  });

  test('fuzz: parsing throws ConfigError or nothing', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^[[\]0-9a-f:.,/*-]{0,30}$/)), (s) => {
        try {
          parsePolicyEntry(s, 'fuzz');
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('normalizeHostName', () => {
    assert.equal(normalizeHostName('WWW.Example.COM.'), 'www.example.com');
    assert.equal(normalizeHostName('localhost'), 'localhost');
    assert.equal(normalizeHostName('1.2.3.4'), undefined, 'numeric last label');
    assert.equal(normalizeHostName('a-.b'), undefined);
    assert.equal(normalizeHostName('.'), undefined);
  });
});
