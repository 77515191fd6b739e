/**
 * The server's TLS certificate, for tls://, wss:// and https admin
 * listeners: the configured files, or one generated and kept in the data
 * dir.
 *
 *   DIR/tls-cert.pem  mode 0644  self-signed, 90 days, named for the site
 *   DIR/tls-key.pem   mode 0600  ECDSA P-256, kept across re-issues
 *
 * Links pin a configured certificate by its hash, a generated one by its
 * public key's (SPKI) hash: a generated certificate is re-issued with the
 * same key when it nears expiry or names another host, so the pin the links
 * already carry keeps working.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { CERT_RENEW_BEFORE_DAYS, certFingerprint, generateSelfSigned, spkiFingerprint } from '../carriers/cert.js';

/** The server certificate (configured or self-signed) and its pin. */
export interface ServerCert {
  cert: string;
  key: string;
  fingerprint: string;
}

/** Where the certificate comes from and what a generated one is issued for. */
export interface CertSource {
  /** The server's data dir: a generated certificate and its key are kept in it. */
  dataDir: string;
  /** Configured certificate and key files (`--cert`, `--key`); undefined = a generated certificate. */
  files: { readonly cert: string; readonly key: string } | undefined;
  /** `--host`: the name a generated certificate is issued for, when given. */
  publicHost: string | undefined;
  /** The listen addresses in order: without `--host`, the first host that is a DNS name names the certificate. */
  listen: readonly { readonly host: string }[];
}

const certFile = (dataDir: string): string => join(dataDir, 'tls-cert.pem');
const keyFile = (dataDir: string): string => join(dataDir, 'tls-key.pem');

/**
 * The name a generated certificate is issued for: `--host`, else the first
 * listen host that is a DNS name, else `localhost`. An ordinary site's
 * certificate names the site; an IP literal stays out of it unless it is
 * all `--host` gives.
 */
export function certNameFor(src: Pick<CertSource, 'publicHost' | 'listen'>): string {
  if (src.publicHost !== undefined) return src.publicHost;
  return src.listen.find((l) => isIP(l.host) === 0 && l.host !== '' && l.host !== 'localhost')?.host ?? 'localhost';
}

/**
 * The configured certificate (pinned by its hash), or the one generated in
 * the data dir: created on the first call, re-issued (with the same key
 * when it is P-256) when it has less than CERT_RENEW_BEFORE_DAYS left at
 * `now` or does not name {@link certNameFor}'s host.
 */
export async function loadOrCreateCert(src: CertSource, log: Logger, now = new Date()): Promise<ServerCert> {
  if (src.files) {
    const [cert, key] = await Promise.all([readFile(src.files.cert, 'utf8'), readFile(src.files.key, 'utf8')]);
    return { cert, key, fingerprint: certFingerprint(cert) };
  }
  const certPath = certFile(src.dataDir);
  const keyPath = keyFile(src.dataDir);
  const name = certNameFor(src);
  let key: string | undefined;
  if (existsSync(certPath) && existsSync(keyPath)) {
    const [cert, oldKey] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    const x = new X509Certificate(cert);
    const daysLeft = (Date.parse(x.validTo) - now.getTime()) / 86_400_000;
    const named = isIP(name) ? x.checkIP(name) : x.checkHost(name);
    if (daysLeft >= CERT_RENEW_BEFORE_DAYS && named !== undefined) return { cert, key: oldKey, fingerprint: spkiFingerprint(cert) };
    key = reusableKey(oldKey);
    log.info({ certPath, name, daysLeft: Math.floor(daysLeft), sameKey: key !== undefined }, 'renewing the generated TLS certificate');
  }
  const made = generateSelfSigned({ commonName: name, altNames: [name], now, ...(key !== undefined ? { key } : {}) });
  await writeFile(keyPath, made.key, { mode: 0o600 });
  await writeFile(certPath, made.cert, { mode: 0o644 });
  if (key === undefined) log.info({ certPath, name }, 'generated a self-signed TLS certificate (its public key is pinned in the links)');
  return { cert: made.cert, key: made.key, fingerprint: made.spkiSha256 };
}

/** The old key when a certificate can be re-issued for it (P-256), so the links' pin survives; else undefined (a new key). */
function reusableKey(pem: string): string | undefined {
  try {
    const k = createPrivateKey(pem);
    return k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? pem : undefined;
  } catch {
    return undefined; // unreadable key: a new one (and new pins) is the only way on
  }
}

/**
 * The pin the server's links carry, the same as {@link loadOrCreateCert}
 * gives, for commands that only read the data dir: a configured
 * certificate's hash, or the public key's of the generated one. Never
 * creates a certificate.
 * @throws ConfigError when none has been generated yet.
 */
export async function existingCertPin(src: Pick<CertSource, 'dataDir' | 'files'>): Promise<string> {
  const file = src.files?.cert ?? certFile(src.dataDir);
  if (src.files === undefined && !existsSync(file)) {
    throw new ConfigError(file, 'no certificate yet (the server creates it at its first tls/wss start): start the server once, or pass --cert/--key as the server has them');
  }
  const pem = await readFile(file, 'utf8');
  return src.files === undefined ? spkiFingerprint(pem) : certFingerprint(pem);
}
