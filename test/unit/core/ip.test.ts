import { strict as assert } from 'node:assert';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseIpv4, parseIpv6Groups } from '../../../src/core/ip.js';
import { formatIpv6Groups } from '../../../src/core/address.js';

describe('core/ip: the one IP-literal parser', () => {
  it('reads dotted quads strictly', () => {
    assert.equal(parseIpv4('0.0.0.0'), 0);
    assert.equal(parseIpv4('255.255.255.255'), 0xffffffff);
    assert.equal(parseIpv4('10.1.2.3'), 0x0a010203);
    for (const bad of ['010.0.0.1', '10.1', '2130706433', '1.2.3.256', '1.2.3.4.', ' 1.2.3.4', '1.2.3.-4', '0x7f.0.0.1', '']) {
      assert.equal(parseIpv4(bad), undefined, bad);
    }
  });

  it('reads IPv6 with ::, a dotted tail only last, and refuses the rest', () => {
    assert.deepEqual(parseIpv6Groups('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(parseIpv6Groups('::1'), [0, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(parseIpv6Groups('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    assert.deepEqual(parseIpv6Groups('2001:DB8::8:800:200C:417A'), [0x2001, 0xdb8, 0, 0, 0x8, 0x800, 0x200c, 0x417a]);
    for (const bad of ['1::2::3', ':', ':::', '1:2:3:4:5:6:7:8:9', '1.2.3.4::', '::1.2.3.4:5', 'fe80::1%eth0', '[::1]', '12345::', '1:2:3:4:5:6:7::8', 'g::1']) {
      assert.equal(parseIpv6Groups(bad), undefined, bad);
    }
  });

  it('agrees with net.isIP on addresses, extended IPv4 forms and random address characters', () => {
    const ch = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.array(ch, { maxLength: 46 }).map((a) => a.join('')), fc.ipV4(), fc.ipV4Extended(), fc.ipV6()), (s) => {
        // Node accepts dotted quads with leading zeros nowhere, like us.
        assert.equal(parseIpv4(s) !== undefined, isIP(s) === 4, s);
        assert.equal(parseIpv6Groups(s) !== undefined, isIP(s) === 6, s);
      }),
      { numRuns: 20_000 },
    );
  });

  it('round-trips every address through RFC 5952 text', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (g) => {
        assert.deepEqual(parseIpv6Groups(formatIpv6Groups(g)), g);
      }),
    );
  });
});
