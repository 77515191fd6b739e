import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError } from '../../../src/core/errors.js';
import { LINK_CARRIERS, decodeLink, encodeLink } from '../../../src/config/link.js';
import type { ClientLink } from '../../../src/config/link.js';

const KEY = Buffer.alloc(32, 0x11).toString('base64url'); // user private key
const PK = Buffer.alloc(32, 0x22).toString('base64url'); // server public key
const FP = Buffer.alloc(32, 0x33).toString('base64url'); // certificate SHA-256

function assertConfigError(fn: () => unknown, why: RegExp, where = 'link'): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.match(err.message, why);
    assert.equal(err.where, where);
    return true;
  });
}

describe('decodeLink', () => {
  test('a full wss link', () => {
    const l = decodeLink(`polytun://${KEY}@edge.example.com:443?pk=${PK}&t=wss&sni=cdn.example.com&path=%2Fws%2Fu1&fp=${FP}#My%20server`);
    assert.deepEqual(l, {
      credential: KEY,
      credentialKind: 'key',
      host: 'edge.example.com',
      port: 443,
      serverKey: PK,
      carrier: 'wss',
      sni: 'cdn.example.com',
      path: '/ws/u1',
      fingerprint: FP,
      name: 'My server',
    });
  });

  test('defaults: tcp carrier, key credential, no name', () => {
    assert.deepEqual(decodeLink(`polytun://${KEY}@203.0.113.7:7000?pk=${PK}`), {
      credential: KEY,
      credentialKind: 'key',
      host: '203.0.113.7',
      port: 7000,
      serverKey: PK,
      carrier: 'tcp',
    });
  });

  test('a udp link round-trips; sni, path and fp are refused on it', () => {
    const text = `polytun://${KEY}@203.0.113.7:7000?pk=${PK}&t=udp`;
    const l = decodeLink(text);
    assert.equal(l.carrier, 'udp');
    assert.equal(encodeLink(l), text);
    assert.throws(() => decodeLink(`${text}&sni=a.example`), /sni needs a tls or wss carrier, not udp/);
    assert.throws(() => decodeLink(`${text}&path=%2Fx`), /path needs a ws or wss carrier, not udp/);
    assert.throws(() => decodeLink(`polytun://${KEY}@203.0.113.7:7000?pk=${PK}&t=quic`), /unknown carrier 'quic' \(tcp, tls, ws, wss, udp\)/);
  });

  test('IPv6 hosts in brackets, tokens, parameters in any order, pasted whitespace, trailing slash, empty #', () => {
    const l = decodeLink(`  POLYTUN://tok_en-1@[2001:db8::1]:8443/?cred=t&t=tls&pk=${PK}#\n`);
    assert.equal(l.host, '2001:db8::1');
    assert.equal(l.port, 8443);
    assert.equal(l.credential, 'tok_en-1');
    assert.equal(l.credentialKind, 'token');
    assert.equal(l.carrier, 'tls');
    assert.equal(l.name, undefined);
    assert.equal(encodeLink(l), `polytun://tok_en-1@[2001:db8::1]:8443?pk=${PK}&t=tls&cred=t`);
  });

  test('clear errors naming what is wrong', () => {
    const ok = `polytun://${KEY}@h.example:443`;
    const cases: [string, RegExp][] = [
      [`${ok}?t=tcp`, /missing pk/],
      [ok, /missing pk/],
      [`polytun://${KEY}@h.example?pk=${PK}`, /missing port/],
      [`polytun://${KEY}@h.example:0?pk=${PK}`, /bad port '0'/],
      [`polytun://${KEY}@h.example:65536?pk=${PK}`, /bad port '65536'/],
      [`polytun://${KEY}@h.example:http?pk=${PK}`, /bad port 'http'/],
      [`polytun://${KEY}@h.example:?pk=${PK}`, /bad port ''/],
      [`${ok}?pk=${PK}&t=foo`, /unknown carrier 'foo'/],
      [`${ok}?pk=${PK}&x=1`, /unknown link parameter 'x'/],
      [`${ok}?pk=${PK}&pk=${PK}`, /duplicate link parameter 'pk'/],
      [`${ok}?pk=`, /empty link parameter 'pk'/],
      [`${ok}?pk`, /empty link parameter 'pk'/],
      [`${ok}?pk=${PK}&cred=x`, /unknown credential kind 'x'/],
      [`${ok}?pk=abc`, /pk is not a 32-byte base64url key/],
      [`${ok}?pk=${Buffer.alloc(32, 0xfb).toString('base64')}`, /standard base64/],
      [`${ok}?pk=${PK.slice(0, -1)}B`, /pk is not/], // non-canonical trailing bits
      [`${ok}?pk=${PK}&sni=x.example`, /sni needs a tls or wss carrier/],
      [`${ok}?pk=${PK}&t=tls&sni=1.2.3.4`, /bad sni/],
      [`${ok}?pk=${PK}&path=%2Fws`, /path needs a ws or wss carrier/],
      [`${ok}?pk=${PK}&t=ws&path=ws`, /bad path/],
      [`${ok}?pk=${PK}&t=ws&fp=${FP}`, /fp needs a tls or wss carrier/],
      [`${ok}?pk=${PK}&t=tls&fp=abcd`, /fp is not/],
      [`${ok}?pk=${PK}#%E0%A4%A`, /bad percent-encoding in name/],
      [`${ok}?pk=${PK}#a%0Ab`, /bad name/],
      [`${ok}/ws?pk=${PK}`, /unexpected path/],
      [`https://${KEY}@h.example:443?pk=${PK}`, /not a polytun:\/\/ link/],
      [`polytun://h.example:443?pk=${PK}`, /missing the credential/],
      [`polytun://@h.example:443?pk=${PK}`, /missing credential/],
      [`polytun://${KEY}@:443?pk=${PK}`, /missing host/],
      [`polytun://${KEY}@2001:db8::1:443?pk=${PK}`, /put IPv6 addresses in brackets/],
      [`polytun://${KEY}@[h.example]:443?pk=${PK}`, /brackets are for IPv6/],
      [`polytun://${KEY}@[::1:443?pk=${PK}`, /missing '\]'/],
      [`polytun://${KEY}@[fe80::1%25eth0]:443?pk=${PK}`, /bad host/],
      [`polytun://${KEY}@bad_host!:443?pk=${PK}`, /bad host/],
      [`polytun://abc@h.example:443?pk=${PK}`, /credential is not a 32-byte base64url key/],
      [`polytun://a+b@h.example:443?pk=${PK}&cred=t`, /token credential is not base64url.*standard base64/],
      [`polytun://${KEY}@h.example:443?pk=${PK}#${'n'.repeat(300)}`, /bad name/],
      ['polytun://' + 'x'.repeat(5000), /longer than/],
    ];
    for (const [link, why] of cases) assertConfigError(() => decodeLink(link), why);
    assertConfigError(() => decodeLink(ok, 'config.yaml:3:link'), /missing pk/, 'config.yaml:3:link');
    assertConfigError(() => decodeLink(42 as unknown as string), /must be a string/);
  });

  test('errors never contain the credential', () => {
    const secret = Buffer.alloc(32, 0x5a).toString('base64url');
    for (const tail of ['', `?pk=${PK}&t=foo`, `?pk=${PK}&sni=a.b`, `?pk=bad`, `?pk=${PK}&cred=x`]) {
      assert.throws(
        () => decodeLink(`polytun://${secret}@h.example:443${tail}`),
        (e: unknown) => e instanceof ConfigError && !e.message.includes(secret),
      );
    }
  });
});

describe('encodeLink', () => {
  test('canonical form: defaults omitted, fixed parameter order, escapes', () => {
    const text = encodeLink({
      credential: KEY,
      credentialKind: 'key',
      host: '::1',
      port: 9000,
      serverKey: PK,
      carrier: 'wss',
      path: '/a?c#d%',
      sni: 'front.example',
      fingerprint: FP,
      name: 'home #1 / ünï',
    });
    assert.equal(text, `polytun://${KEY}@[::1]:9000?pk=${PK}&t=wss&sni=front.example&path=%2Fa%3Fc%23d%25&fp=${FP}#home%20%231%20%2F%20%C3%BCn%C3%AF`);
    assert.equal(decodeLink(text).path, '/a?c#d%');
    assert.equal(decodeLink(text).host, '::1');
  });

  test('refuses what decode would refuse', () => {
    const base: ClientLink = { credential: KEY, credentialKind: 'key', host: 'h.example', port: 1, serverKey: PK, carrier: 'tcp' };
    assertConfigError(() => encodeLink({ ...base, port: 0 }), /bad port/);
    assertConfigError(() => encodeLink({ ...base, carrier: 'quic' as 'tcp' }), /unknown carrier 'quic'/);
    assertConfigError(() => encodeLink({ ...base, serverKey: '' }), /missing pk/);
    assertConfigError(() => encodeLink({ ...base, sni: 'x.example' }), /sni needs/);
    assertConfigError(() => encodeLink({ ...base, name: '' }), /bad name/);
    assertConfigError(() => encodeLink({ ...base, name: '\ud800' }), /not well-formed/);
    assertConfigError(() => encodeLink({ ...base, host: 'a:b' }), /bad host/);
  });
});

// ── property tests ──────────────────────────────────────────────────────────

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64url'));
const hostName = fc.domain().filter((d) => d.length <= 253);
const linkArb: fc.Arbitrary<ClientLink> = fc
  .record({
    kind: fc.constantFrom('key', 'token'),
    key: bytes32,
    token: fc.stringMatching(/^[A-Za-z0-9_-]{1,80}$/),
    host: fc.oneof(fc.ipV4(), fc.ipV6(), hostName),
    port: fc.integer({ min: 1, max: 65535 }),
    serverKey: bytes32,
    carrier: fc.constantFrom(...LINK_CARRIERS),
    sni: fc.option(hostName, { nil: undefined }),
    path: fc.option(fc.stringMatching(/^\/[\x21-\x7e]{0,40}$/), { nil: undefined }),
    fingerprint: fc.option(bytes32, { nil: undefined }),
    name: fc.option(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)),
      { nil: undefined },
    ),
  })
  .map((r) => {
    const tls = r.carrier === 'tls' || r.carrier === 'wss';
    const ws = r.carrier === 'ws' || r.carrier === 'wss';
    const l: ClientLink = {
      credential: r.kind === 'key' ? r.key : r.token,
      credentialKind: r.kind as ClientLink['credentialKind'],
      host: r.host,
      port: r.port,
      serverKey: r.serverKey,
      carrier: r.carrier,
    };
    if (tls && r.sni !== undefined) l.sni = r.sni;
    if (ws && r.path !== undefined) l.path = r.path;
    if (tls && r.fingerprint !== undefined) l.fingerprint = r.fingerprint;
    if (r.name !== undefined) l.name = r.name;
    return l;
  });

describe('properties', () => {
  test('round trip: decode(encode(x)) equals x, and encode is canonical', () => {
    fc.assert(
      fc.property(linkArb, (l) => {
        const text = encodeLink(l);
        const back = decodeLink(text);
        assert.deepEqual(back, l);
        assert.equal(encodeLink(back), text);
      }),
      { numRuns: 1000 },
    );
  });

  test('fuzz: decodeLink throws nothing but ConfigError (random strings)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 }), fc.string().map((s) => `polytun://${s}`)), (s) => {
        try {
          decodeLink(s);
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('fuzz: decodeLink throws nothing but ConfigError (mutated valid links)', () => {
    const edit = fc.record({ at: fc.nat(), del: fc.nat({ max: 4 }), ins: fc.string({ maxLength: 4, unit: fc.constantFrom('%', '@', ':', '[', ']', '?', '&', '=', '#', '/', 'a', '0', '\u0000', '\ud800') }) });
    fc.assert(
      fc.property(linkArb, fc.array(edit, { minLength: 1, maxLength: 4 }), (l, edits) => {
        let s = encodeLink(l);
        for (const e of edits) {
          const at = e.at % (s.length + 1);
          s = s.slice(0, at) + e.ins + s.slice(at + e.del);
        }
        try {
          const back = decodeLink(s);
          // Whatever survives mutation must itself be a valid, encodable link.
          assert.equal(typeof encodeLink(back), 'string');
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
        }
      }),
      { numRuns: 3000 },
    );
  });
});
