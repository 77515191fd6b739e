import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import {
  AddressError,
  classifyHost,
  decodeDestination,
  encodeDestination,
  encodedDestinationLength,
  formatHostPort,
  makeDestination,
  parseHostPort,
} from '../../../src/core/address.js';
import type { Destination } from '../../../src/core/address.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function assertAddressError(fn: () => unknown, reason: AddressError['reason']): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof AddressError, `expected AddressError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    assert.equal(err.code, 'ERR_PROTOCOL');
    return true;
  });
}

describe('classifyHost', () => {
  test('uses net.isIP', () => {
    assert.equal(classifyHost('10.1.2.3'), 'ipv4');
    assert.equal(classifyHost('::1'), 'ipv6');
    assert.equal(classifyHost('2001:db8::1'), 'ipv6');
    assert.equal(classifyHost('example.com'), 'domain');
    assert.equal(classifyHost('01.2.3.4'), 'domain');
  });
});

describe('parseHostPort / formatHostPort', () => {
  test('accepts the three forms', () => {
    assert.deepEqual(parseHostPort('example.com:443'), { host: 'example.com', port: 443, kind: 'domain' });
    assert.deepEqual(parseHostPort('1.2.3.4:80'), { host: '1.2.3.4', port: 80, kind: 'ipv4' });
    assert.deepEqual(parseHostPort('[::1]:8080'), { host: '::1', port: 8080, kind: 'ipv6' });
    assert.deepEqual(parseHostPort('[2001:DB8:0:0::0001]:1'), { host: '2001:db8::1', port: 1, kind: 'ipv6' });
    assert.deepEqual(parseHostPort('example.com.:0'), { host: 'example.com.', port: 0, kind: 'domain' });
  });

  test('default port applies only when the port is absent', () => {
    assert.deepEqual(parseHostPort('example.com', 80), { host: 'example.com', port: 80, kind: 'domain' });
    assert.deepEqual(parseHostPort('[::1]', 80), { host: '::1', port: 80, kind: 'ipv6' });
    assertAddressError(() => parseHostPort('example.com'), 'port');
    assertAddressError(() => parseHostPort('example.com:', 80), 'port');
  });

  test('refuses malformed input with a clear reason', () => {
    assertAddressError(() => parseHostPort('::1:80'), 'syntax');
    assertAddressError(() => parseHostPort('[::1'), 'syntax');
    assertAddressError(() => parseHostPort('[::1]80'), 'syntax');
    assertAddressError(() => parseHostPort('[1.2.3.4]:80'), 'syntax');
    assertAddressError(() => parseHostPort('[fe80::1%eth0]:80'), 'syntax');
    assertAddressError(() => parseHostPort(':80'), 'syntax');
    assertAddressError(() => parseHostPort('host:65536'), 'port');
    assertAddressError(() => parseHostPort('host:+1'), 'port');
    assertAddressError(() => parseHostPort('host:0x50'), 'port');
    assertAddressError(() => parseHostPort('host:123456'), 'port');
  });

  test('refuses domains no resolver accepts or that disguise an IPv4 address', () => {
    for (const bad of ['a b', 'a\0b', 'a\x01b', 'a\x7fb', 'a/b', 'a@b', 'a%2e', 'a\\b', '127.1', '0x7f.0.0.1', '2130706433', '01.2.3.4', 'x.0x1']) {
      assertAddressError(() => parseHostPort(`${bad}:80`), 'domain');
    }
    assertAddressError(() => parseHostPort(`${'a'.repeat(256)}:80`), 'domain');
    assert.equal(parseHostPort(`${'a'.repeat(255)}:80`).host.length, 255);
    assert.equal(parseHostPort('bücher.example:80').host, 'bücher.example');
  });

  test('formatHostPort brackets IPv6', () => {
    assert.equal(formatHostPort({ host: '::1', port: 80 }), '[::1]:80');
    assert.equal(formatHostPort({ host: 'a.example', port: 1 }), 'a.example:1');
    assert.equal(formatHostPort(parseHostPort('[2001:db8::1]:443')), '[2001:db8::1]:443');
  });
});

describe('IPv6 normalization (RFC 5952)', () => {
  const cases: [string, string][] = [
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['2001:0DB8:0000:0000:0000:FF00:0042:8329', '2001:db8::ff00:42:8329'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // tie: first run wins
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group stays
    ['1::', '1::'],
    ['::ffff:c000:0201', '::ffff:192.0.2.1'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ];
  for (const [input, want] of cases) {
    test(`${input} → ${want}`, () => {
      assert.equal(makeDestination(input, 1).host, want);
    });
  }

  test('agrees with the WHATWG URL serializer on any address (mapped form aside)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const { dest } = decodeDestination(Buffer.concat([Buffer.from([4]), bytes, Buffer.from([0, 1])]));
        assert.equal(isIP(dest.host), 6);
        assert.deepEqual(encodeDestination(dest).subarray(1, 17), Buffer.from(bytes));
        if (!dest.host.startsWith('::ffff:')) assert.equal(dest.host, new URL(`http://[${dest.host}]/`).hostname.slice(1, -1));
      }),
    );
  });
});

describe('binary destination codec', () => {
  const fixtures: [string, Destination][] = [
    ['01 7f000001 0050', { host: '127.0.0.1', port: 80, kind: 'ipv4' }],
    ['04 00000000000000000000000000000001 1f90', { host: '::1', port: 8080, kind: 'ipv6' }],
    ['03 0b 6578616d706c652e636f6d 01bb', { host: 'example.com', port: 443, kind: 'domain' }],
  ];
  for (const [h, d] of fixtures) {
    test(`${d.kind} ${h}`, () => {
      assert.deepEqual(encodeDestination(d), hex(h));
      assert.equal(encodedDestinationLength(d), hex(h).length);
      const buf = Buffer.concat([hex('aabb'), hex(h), hex('cc')]);
      assert.deepEqual(decodeDestination(buf, 2), { dest: d, bytesRead: hex(h).length });
    });
  }

  test('a domain that spells an IP is classified as the IP', () => {
    const { dest } = decodeDestination(hex('03 09 3132372e302e302e31 0016'));
    assert.deepEqual(dest, { host: '127.0.0.1', port: 22, kind: 'ipv4' });
    assert.equal(decodeDestination(hex('03 03 3a3a31 0016')).dest.kind, 'ipv6');
  });

  test('decode errors are typed', () => {
    assertAddressError(() => decodeDestination(Buffer.alloc(0)), 'truncated');
    assertAddressError(() => decodeDestination(hex('01 7f0000')), 'truncated');
    assertAddressError(() => decodeDestination(hex('01 7f000001 00')), 'truncated');
    assertAddressError(() => decodeDestination(hex('03 05 6162')), 'truncated');
    assertAddressError(() => decodeDestination(hex('02 7f000001 0050')), 'atyp');
    assertAddressError(() => decodeDestination(hex('03 00 0050')), 'domain');
    assertAddressError(() => decodeDestination(hex('03 03 610062 0050')), 'domain');
    assertAddressError(() => decodeDestination(hex('03 02 c328 0050')), 'domain'); // invalid UTF-8
  });

  test('encode refuses inconsistent destinations', () => {
    assertAddressError(() => encodeDestination({ host: '1.2.3.4', port: 1, kind: 'domain' }), 'kind');
    assertAddressError(() => encodeDestination({ host: 'example.com', port: 1, kind: 'ipv4' }), 'kind');
    assertAddressError(() => encodeDestination({ host: 'example.com', port: 65536, kind: 'domain' }), 'port');
    assertAddressError(() => encodeDestination({ host: 'a\nb', port: 1, kind: 'domain' }), 'domain');
    assertAddressError(() => encodeDestination({ host: 'é'.repeat(128), port: 1, kind: 'domain' }), 'domain');
  });

  const arbDest: fc.Arbitrary<Destination> = fc.oneof(
    fc.ipV4().map((h) => makeDestination(h, 0)),
    fc.ipV6().map((h) => makeDestination(h, 0)),
    fc.domain().filter((h) => h.length <= 255).map((h) => makeDestination(h, 0)),
  ).chain((d) => fc.integer({ min: 0, max: 65535 }).map((port) => ({ ...d, port })));

  test('encode/decode round-trips any valid destination', () => {
    fc.assert(
      fc.property(arbDest, (d) => {
        const buf = encodeDestination(d);
        assert.deepEqual(decodeDestination(buf), { dest: d, bytesRead: buf.length });
      }),
    );
  });

  test('random bytes only ever raise AddressError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(4), (bytes, off) => {
        try {
          const { dest, bytesRead } = decodeDestination(Buffer.from(bytes), off);
          assert.ok(bytesRead >= 5 && off + bytesRead <= bytes.length); // the shortest: a one-byte domain
          assert.deepEqual(makeDestination(dest.host, dest.port), dest);
        } catch (err) {
          if (!(err instanceof AddressError)) throw err;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
