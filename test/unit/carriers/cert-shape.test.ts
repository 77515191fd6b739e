import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { CERT_VALIDITY_DAYS, generateSelfSigned, spkiFingerprint } from '../../../src/carriers/cert.js';
import { TlsCarrier } from '../../../src/carriers/tls.js';

const DAY = 86_400_000;

describe('generated certificates look like an ordinary site\'s', () => {
  it('90 days, the site name as subject and SAN, an 18-byte random serial, ECDSA P-256', () => {
    const now = new Date(Date.UTC(2031, 2, 3));
    const c = generateSelfSigned({ commonName: 'shop.example', now });
    const x = new X509Certificate(c.cert);
    assert.equal(CERT_VALIDITY_DAYS, 90);
    assert.equal(x.subject, 'CN=shop.example');
    assert.equal(x.subjectAltName, 'DNS:shop.example');
    assert.equal(Date.parse(x.validTo), now.getTime() + 90 * DAY);
    assert.equal(x.serialNumber.length, 36, '18 bytes');
    assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const serials = new Set(Array.from({ length: 20 }, () => new X509Certificate(generateSelfSigned({ commonName: 'a.example' }).cert).serialNumber));
    assert.equal(serials.size, 20);
  });

  it('re-issuing with the same key keeps the SPKI pin and changes the certificate pin', () => {
    const a = generateSelfSigned({ commonName: 'shop.example' });
    const b = generateSelfSigned({ commonName: 'shop.example', key: a.key });
    assert.equal(b.spkiSha256, a.spkiSha256);
    assert.notEqual(b.fingerprintSha256, a.fingerprintSha256);
    assert.equal(spkiFingerprint(b.cert), a.spkiSha256);
  });

  it('a TLS client pinned to the public key accepts the re-issued certificate', async (t) => {
    const a = generateSelfSigned({ commonName: 'shop.example' });
    const b = generateSelfSigned({ commonName: 'shop.example', key: a.key });
    const l = await new TlsCarrier({ cert: b.cert, key: b.key }).listen({ host: '127.0.0.1', port: 0 }, (c) => c.stream.destroy());
    t.after(() => l.close());
    const conn = await new TlsCarrier({ pinSha256: a.spkiSha256 }).dial(l.address);
    assert.equal(conn.meta.fingerprint, b.fingerprintSha256);
    conn.stream.destroy();
    await assert.rejects(new TlsCarrier({ pinSha256: generateSelfSigned({ commonName: 'x.example' }).spkiSha256 }).dial(l.address), /fingerprint mismatch/);
  });
});
