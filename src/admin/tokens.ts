/**
 * Secrets of the management APIs, kept in the data directory, and the
 * signed bearer tokens of provisioning.
 *
 *   DIR/
 *   ├─ admin.token      0600  the admin API bearer token (base64url, 32 bytes) + "\n"
 *   └─ provision.secret 0600  HMAC key of provisioning tokens (base64url, 32 bytes) + "\n"
 *
 * Both are created on first start and read afterwards, so a restart neither
 * changes the admin token nor logs out every router holding a provisioning
 * token. A file that exists but does not parse is a ConfigError and is never
 * replaced (a silently new secret would lock every client out).
 *
 * A provisioning token is stateless: the server keeps nothing per token.
 *
 *   ┌─ base64url(JSON claims) ─┐ . ┌─ base64url(HMAC-SHA256(key, "polytun-provision-v1." ‖ part 1)) ─┐
 *     {"v":1,"sub":"<user id>","iat":<ms>,"exp":<ms>,"pwd":"<tag>"}
 *
 * `pwd` binds the token to the user's current password hash, so changing or
 * clearing the password revokes every token issued under the old one.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { createExclusive, readIfExists } from '../core/files.js';
import { nullLogger, type Logger } from '../core/logger.js';

/** File name of the admin token in the data directory. */
export const ADMIN_TOKEN_FILE = 'admin.token';
/** File name of the provisioning HMAC key in the data directory. */
export const PROVISION_SECRET_FILE = 'provision.secret';

const SECRET_TEXT = /^[A-Za-z0-9_-]{43}$/;
const MAC_CONTEXT = 'polytun-provision-v1.';
const MAX_TOKEN = 2048;

/** Reads a 32-byte base64url secret file, creating it on first use. */
async function ensureSecretText(dataDir: string, name: string, log: Logger): Promise<{ text: string; created: boolean }> {
  const file = join(dataDir, name);
  let created = false;
  let text = await readIfExists(file);
  if (text === undefined) {
    try {
      created = await createExclusive(file, `${randomBytes(32).toString('base64url')}\n`);
    } catch (err) {
      throw new ConfigError(file, `cannot create: ${(err as Error).message}`);
    }
    text = await readIfExists(file);
    if (text === undefined) throw new ConfigError(file, 'vanished while it was being created');
  } else {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) log.warn({ file, mode: (st.mode & 0o777).toString(8) }, 'secret file is readable by other users; run chmod 600 on it');
  }
  const trimmed = text.trim();
  if (!SECRET_TEXT.test(trimmed)) {
    throw new ConfigError(file, 'corrupt secret (expected 43 base64url characters); left untouched: restore it, or move it away to create a new one');
  }
  return { text: trimmed, created };
}

/** Options of the data-dir secret helpers. */
export interface SecretFileOptions {
  /** Warnings about loose file modes. @default nullLogger */
  readonly logger?: Logger;
}

/**
 * The admin API token: read from `DIR/admin.token`, created on first start.
 * `created` tells the caller to print it once (it is never logged).
 * @throws ConfigError when the file cannot be read, created or parsed.
 */
export async function ensureAdminToken(dataDir: string, opts: SecretFileOptions = {}): Promise<{ token: string; created: boolean }> {
  const { text, created } = await ensureSecretText(dataDir, ADMIN_TOKEN_FILE, opts.logger ?? nullLogger);
  return { token: text, created };
}

/**
 * The provisioning HMAC key: read from `DIR/provision.secret`, created on first start.
 * @throws ConfigError when the file cannot be read, created or parsed.
 */
export async function ensureProvisionSecret(dataDir: string, opts: SecretFileOptions = {}): Promise<Buffer> {
  const { text } = await ensureSecretText(dataDir, PROVISION_SECRET_FILE, opts.logger ?? nullLogger);
  return Buffer.from(text, 'base64url');
}

/**
 * Compares two secrets in time independent of where they differ (and of
 * their lengths: both sides are hashed to 32 bytes first).
 */
export function secretsEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i.exec(header);
  return m?.[1];
}

/** What a provisioning token asserts. Times are ms since the epoch. */
export interface TokenClaims {
  /** Store id of the user the token was issued to. */
  readonly sub: string;
  /** Issued at. */
  readonly iat: number;
  /** Expires at; the token is refused from this instant on. */
  readonly exp: number;
  /** Tag of the password hash the token was issued under ({@link passwordTag}). */
  readonly pwd: string;
}

function mac(key: Buffer, payload: string): Buffer {
  return createHmac('sha256', key).update(MAC_CONTEXT).update(payload).digest();
}

/** Signs `claims` into a bearer token with the 32-byte HMAC key `key`. */
export function signToken(key: Buffer, claims: TokenClaims): string {
  const payload = Buffer.from(JSON.stringify({ v: 1, sub: claims.sub, iat: claims.iat, exp: claims.exp, pwd: claims.pwd })).toString('base64url');
  return `${payload}.${mac(key, payload).toString('base64url')}`;
}

/**
 * The claims of `token` when its MAC is right and it has not expired at
 * `now`; undefined for anything else (forged, truncated, expired, garbage).
 */
export function verifyToken(key: Buffer, token: string, now = Date.now()): TokenClaims | undefined {
  if (typeof token !== 'string' || token.length > MAX_TOKEN) return undefined;
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const want = mac(key, payload);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
  let c: unknown;
  try {
    c = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined; // only reachable with our own key: a bug, not an attack
  }
  const r = c as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || r.v !== 1) return undefined;
  const { sub, iat, exp, pwd } = r;
  if (typeof sub !== 'string' || typeof pwd !== 'string' || !Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) return undefined;
  if (now >= (exp as number)) return undefined;
  return { sub, iat: iat as number, exp: exp as number, pwd };
}

/** A short public tag of a password hash: changes whenever the password does. */
export function passwordTag(hash: string): string {
  return createHash('sha256').update('polytun-password-tag.').update(hash).digest().subarray(0, 12).toString('base64url');
}
