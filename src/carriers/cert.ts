/**
 * Self-signed TLS certificates without the openssl CLI or a dependency:
 * an ECDSA P-256 key from node:crypto and a small DER writer (der.ts) for the
 * X.509 v3 structure (RFC 5280):
 *
 *   Certificate ::= SEQUENCE {
 *     tbsCertificate  SEQUENCE { [0] version(v3), serial, sigAlg, issuer,
 *                                validity, subject, spki, [3] extensions }
 *     signatureAlgorithm  ecdsa-with-SHA256
 *     signature           BIT STRING (DER ECDSA-Sig-Value)
 *   }
 *
 * polytun clients normally pin the certificate (`pinSha256`), so a
 * self-signed leaf is a first-class choice, not a test convenience.
 *
 * Its shape is an ordinary site's, not a tell: the site's name as subject
 * and SAN, a 90-day validity (as Let's Encrypt issues), a random serial, an
 * ECDSA P-256 key (certbot's default). Renewal re-issues with the same key,
 * so a pin on the public key (`spkiSha256`) survives it.
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError } from '../core/errors.js';
import * as der from './der.js';

/** Input of {@link generateSelfSigned}. */
export interface SelfSignedInit {
  /** Subject and issuer CN. */
  commonName: string;
  /** DNS names and IP addresses for subjectAltName. @default [commonName] */
  altNames?: readonly string[];
  /** Validity from now, in days. @default CERT_VALIDITY_DAYS */
  days?: number;
  /** Re-issue for this private key (PEM or KeyObject, ECDSA P-256) instead of generating one. */
  key?: string | KeyObject;
  /** Clock, for tests. @default new Date() */
  now?: Date;
}

/** A PEM certificate, its PKCS#8 PEM key and the pin clients configure. */
export interface SelfSignedCert {
  cert: string;
  key: string;
  /** base64url SHA-256 of the certificate DER (a `pinSha256` value). */
  fingerprintSha256: string;
  /** base64url SHA-256 of the public key (SPKI DER): a `pinSha256` value that survives re-issuing with the same key. */
  spkiSha256: string;
}

/** Validity of a generated certificate, days: what Let's Encrypt issues. */
export const CERT_VALIDITY_DAYS = 90;
/** A generated certificate is re-issued (same key) when it has fewer days left than this. */
export const CERT_RENEW_BEFORE_DAYS = 30;

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

function name(cn: string): Buffer {
  return der.sequence(der.set(der.sequence(der.oid(OID.commonName), der.utf8String(cn))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // expand "::" then write eight 16-bit groups
  const [head = '', tail] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function generalName(n: string): Buffer {
  // GeneralName: dNSName [2] IA5String, iPAddress [7] OCTET STRING
  return isIP(n) ? der.implicitPrimitive(7, ipBytes(n)) : der.implicitPrimitive(2, Buffer.from(n, 'ascii'));
}

/**
 * Generates an ECDSA P-256 self-signed certificate valid for `altNames`
 * (serverAuth + clientAuth). Synchronous: key generation takes ~1 ms.
 */
export function generateSelfSigned(init: SelfSignedInit): SelfSignedCert {
  const altNames = init.altNames ?? [init.commonName];
  for (const n of altNames) {
    if (isIP(n) === 6 && n.includes('.')) throw new ConfigError('altNames', `IPv4-mapped IPv6 not supported: ${n}`);
    if (!isIP(n) && !/^[A-Za-z0-9*._-]+$/.test(n)) throw new ConfigError('altNames', `not a DNS name or IP: ${n}`);
  }
  const days = init.days ?? CERT_VALIDITY_DAYS;
  const now = init.now ?? new Date();
  const { publicKey, privateKey } = keyPair(init.key);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1);
  // the P-256 uncompressed point is the last 65 bytes of the SPKI.
  const ski = createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
  // Random, positive, 18 bytes as Let's Encrypt's (CA/B Forum: at least 64 random bits).
  const serial = randomBytes(18);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
  const sigAlg = der.sequence(der.oid(OID.ecdsaWithSha256));
  const subject = name(init.commonName);
  // Backdated an hour so a client whose clock runs a little slow accepts it.
  const notBefore = new Date(now.getTime() - 3_600_000);
  const notAfter = new Date(now.getTime() + days * 86_400_000);
  const extensions = der.sequence(
    extension(OID.basicConstraints, true, der.sequence()),
    // keyUsage = digitalSignature only: BIT STRING, 7 unused bits, 0b1000_0000.
    // No keyCertSign: with cA FALSE, RFC 5280 forbids it, and OpenSSL accepts
    // a self-signed leaf given as `ca` without it.
    extension(OID.keyUsage, true, der.tlv(0x03, Buffer.from([0x07, 0x80]))),
    extension(OID.extKeyUsage, false, der.sequence(der.oid(OID.serverAuth), der.oid(OID.clientAuth))),
    extension(OID.subjectAltName, false, der.sequence(...altNames.map(generalName))),
    extension(OID.subjectKeyIdentifier, false, der.octetString(ski)),
  );
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)),
    der.unsignedInteger(serial),
    sigAlg,
    subject,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    subject,
    spki,
    der.explicit(3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certDer = der.sequence(tbs, sigAlg, der.bitString(signature));
  const b64 = certDer.toString('base64').replace(/.{1,64}/g, '$&\n');
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    fingerprintSha256: fingerprintOfDer(certDer),
    spkiSha256: spkiSha256Of(spki),
  };
}

/** The key pair to certify: a new P-256 one, or the given private key (which must be P-256: we sign ecdsa-with-SHA256). */
function keyPair(key: string | KeyObject | undefined): { publicKey: KeyObject; privateKey: KeyObject } {
  if (key === undefined) return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ConfigError('key', 'a generated certificate needs an ECDSA P-256 key');
  }
  return { publicKey: createPublicKey(privateKey), privateKey };
}

function spkiSha256Of(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest('base64url');
}

/** The SPKI pin (base64url SHA-256 of the public key) of a PEM certificate: stable across re-issues with the same key. */
export function spkiFingerprint(pem: string | Buffer): string {
  return spkiSha256Of(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }));
}

/** The SPKI pin of a certificate's DER bytes. */
export function spkiFingerprintOfDer(certDer: Buffer): string {
  return spkiFingerprint(new X509Certificate(certDer).toString());
}

/** base64url SHA-256 of a certificate's DER bytes. */
export function fingerprintOfDer(certDer: Buffer): string {
  return createHash('sha256').update(certDer).digest('base64url');
}

/** The `pinSha256` value for a PEM certificate (the first one if a chain is given). */
export function certFingerprint(pem: string | Buffer): string {
  return fingerprintOfDer(new X509Certificate(pem).raw);
}
