import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { nullLogger } from '../../../src/core/logger.js';
import { generateSelfSigned, spkiFingerprint } from '../../../src/carriers/cert.js';
import { parseListenUrl as parse, type ListenUrl } from '../../../src/config/values.js';
import { certNameFor, existingCertPin, loadOrCreateCert, type CertSource } from '../../../src/server/cert-store.js';

const parseListenUrl = (text: string): ListenUrl => parse(text) as ListenUrl;

const DAY = 86_400_000;

describe('loadOrCreateCert', () => {
  const cfg = (dataDir: string, publicHost?: string): CertSource => ({ dataDir, publicHost, listen: [parseListenUrl('wss://0.0.0.0:443')], files: undefined });

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

  it('existingCertPin reads the pin the links carry without creating a certificate', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'polytun-cert-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await assert.rejects(existingCertPin({ dataDir: dir, files: undefined }), (err: unknown) => err instanceof ConfigError && /no certificate yet/.test(err.message));
    assert.equal(existsSync(join(dir, 'tls-cert.pem')), false, 'nothing created');
    const t0 = new Date(Date.UTC(2031, 0, 1));
    const made = await loadOrCreateCert(cfg(dir, 'vpn.example'), nullLogger, t0);
    assert.equal(await existingCertPin({ dataDir: dir, files: undefined }), made.fingerprint);
    await loadOrCreateCert(cfg(dir, 'vpn.example'), nullLogger, new Date(t0.getTime() + 70 * DAY));
    assert.equal(await existingCertPin({ dataDir: dir, files: undefined }), made.fingerprint, 'a re-issue keeps the pin');
    // Configured files are pinned by the certificate's hash, by both.
    const own = generateSelfSigned({ commonName: 'own.example' });
    writeFileSync(join(dir, 'own-cert.pem'), own.cert);
    writeFileSync(join(dir, 'own-key.pem'), own.key);
    const files = { cert: join(dir, 'own-cert.pem'), key: join(dir, 'own-key.pem') };
    const loaded = await loadOrCreateCert({ ...cfg(dir), files }, nullLogger);
    assert.equal(loaded.cert, own.cert);
    assert.equal(loaded.fingerprint, own.fingerprintSha256);
    assert.equal(await existingCertPin({ dataDir: dir, files }), own.fingerprintSha256);
  });
});
