/**
 * Which record cipher a connection uses, chosen in the handshake the way TLS
 * 1.3 stacks choose: AES-256-GCM when both ends have AES acceleration (on
 * such CPUs it is 2–3× faster than ChaCha20-Poly1305), ChaCha20-Poly1305
 * otherwise (software AES is slow, and constant-time only at a further
 * cost). `records.cipher` / `--cipher` forces one on either side.
 *
 * On the wire, three client-hello capability bits (hello.ts), which a
 * server that predates them ignores, so it answers ChaCha20-Poly1305 as it
 * always has; a server hello without CAP_AES_GCM means ChaCha20-Poly1305, so
 * an old client, which sends none of the bits, gets it too:
 * - CAP_AES_GCM: the client can seal and open AES-256-GCM records;
 * - CAP_PREFER_AES_GCM: it would rather (it has AES acceleration, or was told to);
 * - CAP_CIPHER_REQUIRED: it was told to use its preferred cipher and no other.
 * The server answers CAP_AES_GCM in its hello when the records are
 * AES-256-GCM; a cipher one side forces and the other cannot use ends in a
 * typed reject (RejectCode.cipherMismatch) whose hello says, by the same
 * bit, the cipher the server wanted.
 *
 * Both ciphers take the direction's 32-byte key from the Noise split as it
 * is (AES-256, hence no truncation), and the record nonce is a counter, so
 * keys stay per direction and independent exactly as before.
 */
import { readFileSync } from 'node:fs';
import { RejectCode } from '../core/errors.js';
import { RECORD_CIPHERS, createRecordAead, type RecordCipher } from './aead.js';
import { CAP_AES_GCM, CAP_CIPHER_REQUIRED, CAP_PREFER_AES_GCM } from './hello.js';

export type { RecordCipher };
export { RECORD_CIPHERS };

/** `records.cipher` / `--cipher`: let the hardware decide, or force one. */
export type CipherChoice = 'auto' | RecordCipher;
export const CIPHER_CHOICES: readonly CipherChoice[] = ['auto', ...RECORD_CIPHERS];

/** What this end brings to the negotiation. */
export interface CipherPolicy {
  choice: CipherChoice;
  /** This CPU has AES acceleration (see aesAcceleration()). */
  aesAccelerated: boolean;
}

/** How AES acceleration was found out, for the startup log. */
export interface AesAcceleration {
  accelerated: boolean;
  /** 'cpuinfo': the CPU flags said; 'measured': they were unavailable, a short timing decided. */
  how: 'cpuinfo' | 'measured';
  /** The flags that decided (x86-64: aes + pclmulqdq; arm64: aes + pmull), when read. */
  flags?: string[];
}

/**
 * Reads AES acceleration from /proc/cpuinfo text: x86-64 needs AES-NI and
 * carry-less multiply (GHASH), arm64 the AES and PMULL instructions.
 * Undefined when the text says nothing either way (no flags line).
 */
export function aesFromCpuinfo(text: string): AesAcceleration | undefined {
  const flags = /^flags\s*:\s*(.*)$/m.exec(text)?.[1];
  if (flags !== undefined) {
    const have = new Set(flags.split(/\s+/));
    const need = ['aes', 'pclmulqdq'];
    return { accelerated: need.every((f) => have.has(f)), how: 'cpuinfo', flags: need.filter((f) => have.has(f)) };
  }
  const features = /^Features\s*:\s*(.*)$/m.exec(text)?.[1];
  if (features !== undefined) {
    const have = new Set(features.split(/\s+/));
    const need = ['aes', 'pmull'];
    return { accelerated: need.every((f) => have.has(f)), how: 'cpuinfo', flags: need.filter((f) => have.has(f)) };
  }
  return undefined;
}

/**
 * When the flags cannot be read: seal 512 KiB with each cipher in eight
 * interleaved rounds (a few ms) and call AES accelerated when its best round
 * is at most 1.25× ChaCha20's. Without AES instructions, AES-GCM is several
 * times slower than ChaCha20, so the noise of a short timing cannot flip the
 * answer on a real machine, busy or not.
 */
export function measureAes(): AesAcceleration {
  const key = Buffer.alloc(32, 7);
  const rec = Buffer.alloc(16 * 1024 + 16);
  const aes = createRecordAead(key, true, undefined, 'aes-256-gcm');
  const chacha = createRecordAead(key, true, undefined, 'chacha20-poly1305');
  let n = 0;
  const time = (a: typeof aes): number => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < 32; i++) a.seal(rec, 0, rec.length - 16, rec, 0, 0, n++);
    return Number(process.hrtime.bigint() - t);
  };
  time(aes); // warm-up: tables, JIT
  time(chacha);
  // Interleaved rounds, the best of each: a busy machine slows both alike,
  // and a preempted round is not the best one. The margin keeps a near tie
  // (AES-NI and ChaCha20 both fast) on AES's side: without AES instructions
  // AES-GCM is several times slower, far outside it.
  let bestAes = Infinity;
  let bestChacha = Infinity;
  for (let round = 0; round < 8; round++) {
    bestAes = Math.min(bestAes, time(aes));
    bestChacha = Math.min(bestChacha, time(chacha));
  }
  return { accelerated: aesFast(bestAes, bestChacha), how: 'measured' };
}

/** The measurement's verdict from each cipher's best time: AES-GCM counts as accelerated up to 1.25× ChaCha20's time. */
export function aesFast(bestAesNs: number, bestChachaNs: number): boolean {
  return bestAesNs <= 1.25 * bestChachaNs;
}

let detected: AesAcceleration | undefined;

/** AES acceleration on this machine: the CPU flags, else a short measurement. Found out once per process. */
export function aesAcceleration(): AesAcceleration {
  if (detected !== undefined) return detected;
  let text: string | undefined;
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    text = undefined; // not Linux, or no procfs: measure
  }
  detected = (text !== undefined ? aesFromCpuinfo(text) : undefined) ?? measureAes();
  return detected;
}

/** The policy of `choice` on this machine (acceleration found out only when it matters). */
export function localCipherPolicy(choice: CipherChoice = 'auto', aesAccelerated?: boolean): CipherPolicy {
  return { choice, aesAccelerated: aesAccelerated ?? (choice === 'auto' ? aesAcceleration().accelerated : false) };
}

/**
 * A startup log line's fields for `choice` (and, for 'auto', the one-time
 * detection done now, so the first handshake does not pay for it).
 */
export function cipherPolicyFields(choice: CipherChoice): Record<string, unknown> {
  if (choice !== 'auto') return { cipher: choice };
  const a = aesAcceleration();
  return { cipher: 'auto', aesAcceleration: a.accelerated, from: a.how === 'cpuinfo' ? `CPU flags (${a.flags?.join(' ') || 'none of aes, pclmulqdq/pmull'})` : 'a short measurement' };
}

/** The client-hello capability bits of a policy. */
export function clientCipherCaps(p: CipherPolicy): number {
  switch (p.choice) {
    case 'chacha20-poly1305':
      return CAP_CIPHER_REQUIRED; // offers no AES: preferred = ChaCha20-Poly1305, and nothing else
    case 'aes-256-gcm':
      return CAP_AES_GCM | CAP_PREFER_AES_GCM | CAP_CIPHER_REQUIRED;
    default:
      return CAP_AES_GCM | (p.aesAccelerated ? CAP_PREFER_AES_GCM : 0);
  }
}

/** The server's pick for a client's hello caps: a cipher, or a reject naming what each side wanted. */
export type CipherPick = { cipher: RecordCipher } | { reject: typeof RejectCode.cipherMismatch; detail: string; serverWants: RecordCipher };

/** Server side: picks the record cipher for a client's hello caps under the server's policy. */
export function pickCipher(server: CipherPolicy, clientCaps: number): CipherPick {
  const clientAes = (clientCaps & CAP_AES_GCM) !== 0;
  const clientPrefers: RecordCipher = clientAes && (clientCaps & CAP_PREFER_AES_GCM) !== 0 ? 'aes-256-gcm' : 'chacha20-poly1305';
  const clientRequires = (clientCaps & CAP_CIPHER_REQUIRED) !== 0 ? clientPrefers : undefined;
  const clientSays = clientRequires !== undefined ? `the client requires ${clientRequires}` : 'the client (an older polytun, or without AES-GCM) offers only chacha20-poly1305';
  if (server.choice !== 'auto') {
    const forced = server.choice;
    if (forced === 'aes-256-gcm' ? !clientAes : clientRequires === 'aes-256-gcm') {
      return { reject: RejectCode.cipherMismatch, detail: `the server requires ${forced}, ${clientSays}`, serverWants: forced };
    }
    return { cipher: forced };
  }
  if (clientRequires !== undefined) return { cipher: clientRequires };
  return { cipher: clientPrefers === 'aes-256-gcm' && server.aesAccelerated ? 'aes-256-gcm' : 'chacha20-poly1305' };
}

/** The cipher a server hello names (by CAP_AES_GCM; an older server never sets it). */
export function cipherOfServerCaps(caps: number): RecordCipher {
  return (caps & CAP_AES_GCM) !== 0 ? 'aes-256-gcm' : 'chacha20-poly1305';
}
