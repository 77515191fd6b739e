import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../../src/core/errors.js';
import { cidrContains, cidrHost, cidrSize, formatCidr, formatIpBytes, parseIpBytes, parseIpCidr } from '../../../src/tun/ipaddr.js';

describe('ipaddr', () => {
  it('parses and formats IPv4 and IPv6 (RFC 5952)', () => {
    assert.deepEqual(parseIpBytes('10.8.0.1'), Buffer.from([10, 8, 0, 1]));
    assert.equal(formatIpBytes(parseIpBytes('2001:DB8:0:0:1:0:0:1') as Buffer), '2001:db8::1:0:0:1');
    assert.equal(formatIpBytes(parseIpBytes('fd00:0:0:0:0:0:0:1') as Buffer), 'fd00::1');
    assert.equal(formatIpBytes(parseIpBytes('::') as Buffer), '::');
    assert.equal(formatIpBytes(parseIpBytes('::ffff:10.0.0.1') as Buffer), '::ffff:a00:1');
    assert.equal(formatIpBytes(parseIpBytes('1:0:1:0:1:0:1:0') as Buffer), '1:0:1:0:1:0:1:0');
  });

  it('refuses sloppy text', () => {
    for (const bad of ['010.0.0.1', '10.0.0', '256.0.0.1', '1::2::3', '1:2:3:4:5:6:7:8:9', 'fe80::1%eth0', '', '12345::', 'x']) {
      assert.equal(parseIpBytes(bad), undefined, bad);
    }
  });

  it('property: formatting any 16 bytes gives what the WHATWG URL parser gives, and parses back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.boolean(), (arr, zeros) => {
        const b = Buffer.from(arr);
        if (zeros) b.fill(0, 4, 10);
        const text = formatIpBytes(b);
        assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
        assert.equal(isIP(text), 6);
        assert.deepEqual(parseIpBytes(text), b);
      }),
    );
  });

  it('CIDRs: strict host bits, containment, host offsets, size', () => {
    const c = parseIpCidr('10.8.0.0/22', 'test');
    assert.equal(formatCidr(c), '10.8.0.0/22');
    assert.equal(cidrSize(c), 1024n);
    assert.equal(formatIpBytes(cidrHost(c, 257n)), '10.8.1.1');
    assert.equal(cidrContains(c, parseIpBytes('10.8.3.255') as Buffer), true);
    assert.equal(cidrContains(c, parseIpBytes('10.8.4.0') as Buffer), false);
    assert.throws(() => parseIpCidr('10.8.0.5/24', 'vpn.pool'), (e: unknown) => e instanceof ConfigError && /did you mean 10\.8\.0\.0\/24/.test(e.message));
    assert.throws(() => parseIpCidr('10.8.0.0/33', 'x'), ConfigError);
    assert.throws(() => parseIpCidr('10.8.0.0', 'x'), ConfigError);
    const c6 = parseIpCidr('fd00:8::/64', 'test');
    assert.equal(formatIpBytes(cidrHost(c6, 0x1_0000n)), 'fd00:8::1:0');
    assert.equal(cidrContains(c6, parseIpBytes('fd00:8::ffff:1') as Buffer), true);
    assert.equal(cidrContains(c6, parseIpBytes('fd00:9::1') as Buffer), false);
    assert.equal(parseIpCidr('10.8.0.5/24', 'x', false).bytes.toString('hex'), '0a080000');
  });
});
