/**
 * Test certificates, generated once per test process (generation is cheap,
 * but tests compare fingerprints across carriers and want the same cert).
 */
import { generateSelfSigned, type SelfSignedCert } from '../../src/carriers/cert.js';

let server: SelfSignedCert | undefined;
let other: SelfSignedCert | undefined;

/** A self-signed cert for localhost, 127.0.0.1 and ::1. */
export function testCert(): SelfSignedCert {
  server ??= generateSelfSigned({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1', '::1'] });
  return server;
}

/** A second, unrelated cert (its fingerprint is a wrong pin for testCert). */
export function otherCert(): SelfSignedCert {
  other ??= generateSelfSigned({ commonName: 'other.test', altNames: ['other.test'] });
  return other;
}
