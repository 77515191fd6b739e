import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { nullLogger } from '../../../src/core/logger.js';
import { CERT_VALIDITY_DAYS, generateSelfSigned, spkiFingerprint } from '../../../src/carriers/cert.js';
import { TlsCarrier } from '../../../src/carriers/tls.js';
import { certNameFor, loadOrCreateCert } from '../../../src/cli/run-server.js';
import type { ServerConfig } from '../../../src/config/schema.js';
import { parseListenUrl as parse, type ListenUrl } from '../../../src/config/values.js';

const parseListenUrl = (text: string): ListenUrl => parse(text) as ListenUrl;

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

describe('loadOrCreateCert', () => {
  const cfg = (dataDir: string, publicHost?: string): ServerConfig =>
    ({ dataDir, publicHost, listen: [parseListenUrl('wss://0.0.0.0:443')], tls: undefined }) as unknown as ServerConfig;

  it('names the certificate after --host, else a listen host that is a name, else localhost', () => {
    assert.equal(certNameFor({ publicHost: 'vpn.example', listen: [parseListenUrl('tls://0.0.0.0:443')] }), 'vpn.example');
    assert.equal(certNameFor({ publicHost: undefined, listen: [parseListenUrl('tls://0.0.0.0:443'), parseListenUrl('tls://edge.example:443')] }), 'edge.example');
    assert.equal(certNameFor({ publicHost: undefined, listen: [parseListenUrl('tls://127.0.0.1:443')] }), 'localhost');
  });

  it('generates once, keeps it while valid, re-issues near expiry with the same key so the pin in links holds', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'polytun-cert-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const t0 = new Date(Date.UTC(2031, 0, 1));
    const first = await loadOrCreateCert(cfg(dir, 'vpn.example'), nullLogger, t0);
    const x1 = new X509Certificate(first.cert);
    assert.equal(x1.subject, 'CN=vpn.example');
    assert.equal(x1.subjectAltName, 'DNS:vpn.example');
    assert.equal(first.fingerprint, spkiFingerprint(first.cert), 'links pin the public key');
    const later = await loadOrCreateCert(cfg(dir, 'vpn.example'), nullLogger, new Date(t0.getTime() + 50 * DAY));
    assert.equal(later.cert, first.cert, 'still 40 days left: kept');
    const renewed = await loadOrCreateCert(cfg(dir, 'vpn.example'), nullLogger, new Date(t0.getTime() + 70 * DAY));
    assert.notEqual(renewed.cert, first.cert, '20 days left: re-issued');
    assert.equal(renewed.fingerprint, first.fingerprint, 'same key, same pin');
    assert.equal(Date.parse(new X509Certificate(renewed.cert).validTo), t0.getTime() + 160 * DAY);
    const renamed = await loadOrCreateCert(cfg(dir, 'other.example'), nullLogger, new Date(t0.getTime() + 71 * DAY));
    assert.equal(new X509Certificate(renamed.cert).subject, 'CN=other.example', 'a new --host re-issues');
    assert.equal(renamed.fingerprint, first.fingerprint);
  });
});
