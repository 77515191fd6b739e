/**
 * Provisioning passwords: scrypt hashes, and where they are kept.
 *
 * The user store validates `policy` strictly (only `allow`/`deny`) and has no
 * password column, so the hashes live beside it in the data directory:
 *
 *   DIR/provision-passwords.json   0600   { "<user id>": "<hash>", … }
 *
 * keyed by store id (ids are never reused, so an entry can never apply to
 * another user). {@link PasswordVault} is the seam: a store that grows a
 * password field can take the file's place without touching the APIs.
 *
 * Hash text (self-describing, so the cost can be raised later):
 *
 *   scrypt$<N>$<r>$<p>$<salt, base64url 16 bytes>$<key, base64url 32 bytes>
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { writeAtomic } from '../core/files.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { UserStore } from '../store/types.js';

/** Shortest accepted provisioning password. */
export const MIN_PASSWORD = 8;
/** Longest accepted provisioning password (scrypt work is bounded anyway, this bounds memory). */
export const MAX_PASSWORD = 256;

const COST = { N: 16384, r: 8, p: 1 } as const;
const KEY_LEN = 32;
// 128·N·r bytes = 16 MiB at the default cost; leave room above it.
const MAX_MEM = 64 * 1024 * 1024;
const HASH_RE = /^scrypt\$(\d{1,7})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9_-]{22})\$([A-Za-z0-9_-]{43})$/;

function scryptAsync(password: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_LEN, { N, r, p, maxmem: MAX_MEM }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Hashes a password with scrypt and a fresh 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, COST.N, COST.r, COST.p);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** A well-formed hash of a password nobody knows: verifying against it costs what a real check costs. */
let decoy: Promise<string> | undefined;

/**
 * True when `password` matches `hash`. With `hash` undefined (unknown user,
 * or no password set) it still runs one scrypt and returns false, so the
 * answer time does not tell which user names exist.
 */
export async function verifyPassword(password: string, hash: string | undefined): Promise<boolean> {
  const h = hash ?? (await (decoy ??= hashPassword(randomBytes(16).toString('base64url'))));
  const m = HASH_RE.exec(h);
  if (m === null) return false;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const want = Buffer.from(m[5] ?? '', 'base64url');
  let got: Buffer;
  try {
    got = await scryptAsync(password, Buffer.from(m[4] ?? '', 'base64url'), N, r, p);
  } catch {
    return false; // parameters out of scrypt's range: a corrupt entry never matches
  }
  return hash !== undefined && timingSafeEqual(got, want);
}

/** Where provisioning password hashes are kept. */
export interface PasswordVault {
  /** The hash of a user's password; undefined when the user has none. */
  get(userId: string): Promise<string | undefined>;
  /** Sets (hash) or clears (undefined) a user's password hash. */
  set(userId: string, hash: string | undefined): Promise<void>;
  /** Resolves once every write started so far reached the file (or failed): a deletion's drop is written in the background. */
  settled(): Promise<void>;
  /** Stops following the store. Idempotent. */
  close(): void;
}

/** Options of {@link openPasswordVault}. */
export interface PasswordVaultInit {
  /** Data directory holding `provision-passwords.json`. */
  readonly dataDir: string;
  /** When given, entries of deleted users are dropped as the store reports deletions. */
  readonly store?: UserStore;
  /** @default nullLogger */
  readonly logger?: Logger;
}

/** File name of the hashes in the data directory. */
export const PASSWORDS_FILE = 'provision-passwords.json';

/** Opens the file-backed vault, reading the file now (a corrupt file is a ConfigError, never overwritten). */
export async function openPasswordVault(init: PasswordVaultInit): Promise<PasswordVault> {
  const file = join(init.dataDir, PASSWORDS_FILE);
  const log = init.logger ?? nullLogger;
  const hashes = new Map<string, string>();
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
  }
  if (text !== undefined) {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(file, `corrupt (not JSON: ${(err as Error).message}); left untouched`);
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError(file, 'corrupt: expected an object { userId: hash }; left untouched');
    for (const [id, h] of Object.entries(data)) {
      if (typeof h !== 'string' || !HASH_RE.test(h)) throw new ConfigError(file, `corrupt hash for user ${id}; left untouched`);
      hashes.set(id, h);
    }
  }

  // Writes are serialized: each one snapshots the map and replaces the file atomically.
  let queue: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    const data = `${JSON.stringify(Object.fromEntries(hashes), null, 2)}\n`;
    const run = (): Promise<void> => writeAtomic(file, data);
    const p = queue.then(run, run);
    // The caller sees the failure through `p`; the queue only orders writes.
    queue = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  };

  const unsubscribe = init.store?.onChange((c) => {
    if (c.op !== 'delete' || !hashes.delete(c.userId)) return;
    save().catch((err: unknown) => log.warn({ err, file }, 'could not drop the provisioning password of a deleted user'));
  });

  return {
    get: (userId) => Promise.resolve(hashes.get(userId)),
    set: (userId, hash) => {
      if (hash === undefined) {
        if (!hashes.delete(userId)) return Promise.resolve();
      } else {
        if (!HASH_RE.test(hash)) return Promise.reject(new ConfigError(file, 'refusing to store a malformed password hash'));
        hashes.set(userId, hash);
      }
      return save();
    },
    settled: () => queue,
    close: () => unsubscribe?.(),
  };
}
