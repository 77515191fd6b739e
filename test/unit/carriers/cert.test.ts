import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { certFingerprint, generateSelfSigned } from '../../../src/carriers/cert.js';
import * as der from '../../../src/carriers/der.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('der', () => {
  it('encodes lengths in short and long form', () => {
    assert.equal(hex(der.octetString(Buffer.alloc(3))), '0403000000');
    assert.equal(hex(der.octetString(Buffer.alloc(200))).slice(0, 6), '0481c8');
    assert.equal(hex(der.octetString(Buffer.alloc(300))).slice(0, 8), '0482012c');
  });

  it('encodes OIDs (ecdsa-with-SHA256, commonName)', () => {
    assert.equal(hex(der.oid('1.2.840.10045.4.3.2')), '06082a8648ce3d040302');
    assert.equal(hex(der.oid('2.5.4.3')), '0603550403');
  });

  it('encodes unsigned integers minimally, padding a set top bit', () => {
    assert.equal(hex(der.unsignedInteger(Buffer.from([0x00, 0x00, 0x7f]))), '02017f');
    assert.equal(hex(der.unsignedInteger(Buffer.from([0x80]))), '02020080');
    assert.equal(hex(der.smallInteger(2)), '020102');
  });

  it('encodes times as UTCTime before 2050 and GeneralizedTime after', () => {
    assert.equal(der.time(new Date(Date.UTC(2030, 0, 2, 3, 4, 5))).toString('latin1').slice(2), '300102030405Z');
    assert.equal(der.time(new Date(Date.UTC(2050, 0, 2, 3, 4, 5))).toString('latin1').slice(2), '20500102030405Z');
    assert.equal(der.time(new Date(Date.UTC(2050, 0, 2))).subarray(0, 1)[0], 0x18);
  });
});

describe('generateSelfSigned', () => {
  const now = new Date(Date.UTC(2030, 5, 1, 12, 0, 0));
  const c = generateSelfSigned({ commonName: 'polytun.test', altNames: ['polytun.test', '10.1.2.3', 'fe80::1:2'], days: 30, now });
  const x = new X509Certificate(c.cert);

  it('is a valid self-signed X.509 with the requested names and validity', () => {
    assert.equal(x.subject, 'CN=polytun.test');
    assert.equal(x.issuer, 'CN=polytun.test');
    assert.equal(x.subjectAltName, 'DNS:polytun.test, IP Address:10.1.2.3, IP Address:FE80:0:0:0:0:0:1:2');
    assert.ok(x.verify(x.publicKey), 'signature verifies with its own key');
    assert.ok(x.checkPrivateKey(createPrivateKey(c.key)), 'key matches');
    assert.equal(new Date(x.validTo).getTime(), now.getTime() + 30 * 86_400_000);
    assert.ok(new Date(x.validFrom).getTime() < now.getTime(), 'backdated for clock skew');
    assert.equal(x.ca, false);
    assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  });

  it('fingerprint is base64url SHA-256 of the DER, and certFingerprint agrees', () => {
    assert.equal(c.fingerprintSha256, createHash('sha256').update(x.raw).digest('base64url'));
    assert.equal(certFingerprint(c.cert), c.fingerprintSha256);
    assert.equal(certFingerprint(Buffer.from(c.cert)), c.fingerprintSha256);
  });

  it('gives a fresh key and serial each time', () => {
    const d = generateSelfSigned({ commonName: 'polytun.test' });
    assert.notEqual(d.fingerprintSha256, c.fingerprintSha256);
    assert.notEqual(new X509Certificate(d.cert).serialNumber, x.serialNumber);
    assert.equal(new X509Certificate(d.cert).subjectAltName, 'DNS:polytun.test');
  });

  it('works past 2049 (GeneralizedTime)', () => {
    const late = generateSelfSigned({ commonName: 'a.test', days: 10, now: new Date(Date.UTC(2049, 11, 28)) });
    assert.equal(new Date(new X509Certificate(late.cert).validTo).getUTCFullYear(), 2050);
  });

  it('rejects names that are neither DNS names nor IPs', () => {
    assert.throws(() => generateSelfSigned({ commonName: 'x', altNames: ['bad name'] }), ConfigError);
  });

  it('is accepted by the openssl CLI (when installed; the runtime never needs it)', (t) => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
    } catch {
      return t.skip('openssl not installed');
    }
    const dir = mkdtempSync(join(tmpdir(), 'polytun-cert-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pem = join(dir, 'cert.pem');
    const fresh = generateSelfSigned({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] });
    writeFileSync(pem, fresh.cert);
    const out = execFileSync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', pem, pem], { encoding: 'utf8' });
    assert.match(out, /: OK/);
    const fp = execFileSync('openssl', ['x509', '-in', pem, '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' });
    const opensslHex = fp.split('=')[1]?.trim().replaceAll(':', '').toLowerCase();
    assert.equal(Buffer.from(fresh.fingerprintSha256, 'base64url').toString('hex'), opensslHex);
  });
});
