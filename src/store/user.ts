/**
 * What both backends share: input validation, credential resolution, ids,
 * the field ↔ column table, traffic batching and the change fan-out. A
 * backend only turns validated values into SQL and rows back into users.
 */
import { randomBytes } from 'node:crypto';
import { parseHostPort, formatHostPort } from '../core/address.js';
import type { Logger } from '../core/logger.js';
import { KEY_LENGTH, encodeKey, generateKeyPair, generateToken, keyPairFromToken, publicKeyOf } from '../secure/keys.js';
import { StoreError } from './types.js';
import type { CredentialInput, NewUser, StoreChange, StoreField, TrafficEntry, UserKind, UserPatch, UserPolicy } from './types.js';

/** Validated values of the writable columns. */
export interface UserValues {
  name: string;
  kind: UserKind;
  publicKey: Buffer;
  secret: string | null;
  wssPath: string | null;
  dst: string | null;
  policy: UserPolicy;
  quotaBytes: number | null;
  expiresAt: number | null;
  enabled: boolean;
  mtt: boolean;
  udpMaxRate: number | null;
}

const USER_COLUMNS = 'id, name, public_key, kind, wss_path, dst, policy, quota_bytes, expires_at, enabled, mtt, udp_max_rate, created_at, updated_at, bytes_up, bytes_down';

/** The columns a User is read from (same in both schemas); the secret only when asked for. */
export function userColumns(withSecret: boolean | undefined): string {
  return withSecret === true ? `${USER_COLUMNS}, secret_plaintext` : USER_COLUMNS;
}

/** Writable field → column name (same in both schemas). */
export const COLUMN: { readonly [K in keyof UserValues]: string } = {
  name: 'name',
  kind: 'kind',
  publicKey: 'public_key',
  secret: 'secret_plaintext',
  wssPath: 'wss_path',
  dst: 'dst',
  policy: 'policy',
  quotaBytes: 'quota_bytes',
  expiresAt: 'expires_at',
  enabled: 'enabled',
  mtt: 'mtt',
  udpMaxRate: 'udp_max_rate',
};

/** Maps a unique column (or a constraint name containing it) to the field a conflict names. */
export function conflictField(text: string): StoreField {
  if (text.includes('public_key')) return 'publicKey';
  if (text.includes('wss_path')) return 'wssPath';
  if (text.includes('name')) return 'name';
  return 'id';
}

const MAX_NAME = 128;
const MAX_PATH = 256;
const MAX_TOKEN = 256;
const MAX_POLICY_ENTRIES = 1000;
const MAX_POLICY_ENTRY = 300;
// Unreserved and sub-delims of RFC 3986 plus '/', ':', '@' and '%' escapes: no '?', '#', spaces.
const PATH_RE = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function invalid(field: StoreField, message: string): never {
  throw new StoreError('ERR_STORE_INVALID', field, `${field}: ${message}`);
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME) invalid('name', `expected 1-${MAX_NAME} characters`);
  if (name.trim() !== name || CONTROL_RE.test(name)) invalid('name', 'no leading/trailing spaces or control characters');
  return name;
}

function checkPath(path: unknown): string | null {
  if (path === null) return null;
  if (typeof path !== 'string' || path.length > MAX_PATH || !PATH_RE.test(path)) {
    invalid('wssPath', `expected null or a URL path starting with '/' (at most ${MAX_PATH} characters, no query or fragment)`);
  }
  return path;
}

function checkDst(dst: unknown): string | null {
  if (dst === null) return null;
  if (typeof dst !== 'string') invalid('dst', "expected null or 'host:port'");
  try {
    return formatHostPort(parseHostPort(dst));
  } catch (err) {
    throw new StoreError('ERR_STORE_INVALID', 'dst', `dst: ${(err as Error).message}`, { cause: err });
  }
}

function checkList(list: unknown, which: string): string[] {
  if (!Array.isArray(list) || list.length > MAX_POLICY_ENTRIES) invalid('policy', `${which}: expected an array of at most ${MAX_POLICY_ENTRIES} entries`);
  return list.map((e: unknown) => {
    if (typeof e !== 'string' || e.trim() === '' || e.length > MAX_POLICY_ENTRY) invalid('policy', `${which}: entries are non-empty strings of at most ${MAX_POLICY_ENTRY} characters`);
    return e;
  });
}

function checkPolicy(policy: unknown): UserPolicy {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) invalid('policy', 'expected an object { allow?, deny? }');
  const extra = Object.keys(policy).filter((k) => k !== 'allow' && k !== 'deny');
  if (extra.length > 0) invalid('policy', `unknown keys ${extra.join(', ')}`);
  const p = policy as { allow?: unknown; deny?: unknown };
  const out: { allow?: string[]; deny?: string[] } = {};
  if (p.allow !== undefined) out.allow = checkList(p.allow, 'allow');
  if (p.deny !== undefined) out.deny = checkList(p.deny, 'deny');
  return out;
}

function checkCount(value: unknown, field: StoreField): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) invalid(field, 'expected null or a non-negative integer');
  return value;
}

function checkKey(key: unknown, what: string): Buffer {
  if (!Buffer.isBuffer(key) || key.length !== KEY_LENGTH) invalid('credential', `${what}: expected a ${KEY_LENGTH}-byte Buffer`);
  return key;
}

/** Resolves a credential into kind, public key and stored secret, generating what is missing. */
export function resolveCredential(cred: CredentialInput | undefined): Pick<UserValues, 'kind' | 'publicKey' | 'secret'> {
  const c = cred ?? { kind: 'key' };
  if (c.kind === 'token') {
    const token = c.token ?? generateToken();
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN) invalid('credential', `token: expected 1-${MAX_TOKEN} characters`);
    return { kind: 'token', publicKey: keyPairFromToken(token).publicKey, secret: token };
  }
  if (c.kind !== 'key') invalid('credential', "kind must be 'key' or 'token'");
  if (c.privateKey !== undefined) {
    const priv = checkKey(c.privateKey, 'privateKey');
    const pub = publicKeyOf(priv);
    if (c.publicKey !== undefined && !checkKey(c.publicKey, 'publicKey').equals(pub)) invalid('credential', 'publicKey does not match privateKey');
    return { kind: 'key', publicKey: pub, secret: encodeKey(priv) };
  }
  if (c.publicKey !== undefined) return { kind: 'key', publicKey: Buffer.from(checkKey(c.publicKey, 'publicKey')), secret: null };
  const pair = generateKeyPair();
  return { kind: 'key', publicKey: pair.publicKey, secret: encodeKey(pair.privateKey) };
}

/** Validates a new user and fills the defaults. */
export function prepareNew(input: NewUser): UserValues {
  if (typeof input !== 'object' || input === null) invalid('name', 'expected a user object');
  return {
    name: checkName(input.name),
    ...resolveCredential(input.credential),
    wssPath: checkPath(input.wssPath ?? null),
    dst: checkDst(input.dst ?? null),
    policy: checkPolicy(input.policy ?? {}),
    quotaBytes: checkCount(input.quotaBytes ?? null, 'quotaBytes'),
    expiresAt: checkCount(input.expiresAt ?? null, 'expiresAt'),
    enabled: checkEnabled(input.enabled ?? true),
    mtt: checkBool(input.mtt ?? false, 'mtt'),
    udpMaxRate: checkRate(input.udpMaxRate ?? null),
  };
}

/** A rate cap in bytes per second (1 kB/s to 1 TB/s), or null for none. */
function checkRate(v: unknown): number | null {
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1000 || v > 1e12) invalid('udpMaxRate', 'expected bytes per second, an integer from 1000 to 10^12, or null');
  return v;
}

function checkEnabled(v: unknown): boolean {
  return checkBool(v, 'enabled');
}

function checkBool(v: unknown, field: StoreField): boolean {
  if (typeof v !== 'boolean') invalid(field, 'expected a boolean');
  return v;
}

/** Validates a patch; only the present fields are returned. */
export function preparePatch(patch: UserPatch): { values: Partial<UserValues>; resetTraffic: boolean } {
  const v: Partial<UserValues> = {};
  if (patch.name !== undefined) v.name = checkName(patch.name);
  if (patch.credential !== undefined) Object.assign(v, resolveCredential(patch.credential));
  if (patch.wssPath !== undefined) v.wssPath = checkPath(patch.wssPath);
  if (patch.dst !== undefined) v.dst = checkDst(patch.dst);
  if (patch.policy !== undefined) v.policy = checkPolicy(patch.policy);
  if (patch.quotaBytes !== undefined) v.quotaBytes = checkCount(patch.quotaBytes, 'quotaBytes');
  if (patch.expiresAt !== undefined) v.expiresAt = checkCount(patch.expiresAt, 'expiresAt');
  if (patch.enabled !== undefined) v.enabled = checkEnabled(patch.enabled);
  if (patch.mtt !== undefined) v.mtt = checkBool(patch.mtt, 'mtt');
  if (patch.udpMaxRate !== undefined) v.udpMaxRate = checkRate(patch.udpMaxRate);
  return { values: v, resetTraffic: patch.resetTraffic === true };
}

/** Checks a list `limit`/`offset`; returns the effective values. */
export function listBounds(limit: number | undefined, offset: number | undefined): { limit: number; offset: number } {
  const l = limit ?? 100;
  const o = offset ?? 0;
  if (!Number.isSafeInteger(l) || l < 1 || l > 10_000) invalid('list', 'limit must be an integer in 1..10000');
  if (!Number.isSafeInteger(o) || o < 0) invalid('list', 'offset must be a non-negative integer');
  return { limit: l, offset: o };
}

/** True when `s` has the shape of a store id (cheap pre-check before an id lookup). */
export function looksLikeId(s: string): boolean {
  return UUID_RE.test(s);
}

/**
 * Makes time-ordered UUIDs (RFC 9562 v7 layout, with rand_a used as a
 * counter so ids made in the same millisecond still sort in creation order):
 *
 * ┌──────────── 48 bits ─────────────┬ 4 ─┬── 12 ──┬ 2 ┬──── 62 bits ────┐
 * │ unix time in ms, big-endian      │ 7  │ counter│10 │ random          │
 * └──────────────────────────────────┴────┴────────┴───┴─────────────────┘
 */
export class IdGenerator {
  private lastMs = 0;
  private seq = 0;

  /** The next id; never sorts before an earlier id of this generator. */
  next(now = Date.now()): string {
    if (now > this.lastMs) {
      this.lastMs = now;
      // A random start leaves room for 3000+ ids in the millisecond and keeps ids unguessable.
      this.seq = randomBytes(2).readUInt16BE(0) & 0x3ff;
    } else if (++this.seq > 0xfff) {
      // Counter exhausted (or the clock went back): borrow the next millisecond.
      this.lastMs += 1;
      this.seq = 0;
    }
    const b = randomBytes(16);
    b.writeUIntBE(this.lastMs, 0, 6);
    b.writeUInt16BE(0x7000 | this.seq, 6);
    b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

/** A random WSS path for a new user: `/u/` + 128 bits in hex. */
export function generateWssPath(): string {
  return `/u/${randomBytes(16).toString('hex')}`;
}

/**
 * Validates traffic entries and sums them per user, in id order (so that
 * PostgreSQL transactions lock rows in one global order and cannot deadlock).
 */
export function aggregateTraffic(entries: readonly TrafficEntry[]): { userId: string; up: number; down: number }[] {
  if (!Array.isArray(entries)) invalid('traffic', 'expected an array of { userId, up, down }');
  const sums = new Map<string, { userId: string; up: number; down: number }>();
  for (const e of entries) {
    if (typeof e?.userId !== 'string') invalid('traffic', 'userId must be a string');
    if (!Number.isSafeInteger(e.up) || e.up < 0 || !Number.isSafeInteger(e.down) || e.down < 0) invalid('traffic', 'up and down must be non-negative integers');
    if (e.up === 0 && e.down === 0) continue;
    const s = sums.get(e.userId);
    if (s === undefined) sums.set(e.userId, { userId: e.userId, up: e.up, down: e.down });
    else {
      s.up += e.up;
      s.down += e.down;
    }
  }
  return [...sums.values()].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
}

/** True when a traffic increment of `added` bytes moved `total` from below the quota to at/above it. */
export function crossedQuota(quota: number | null, total: number, added: number): boolean {
  return quota !== null && total >= quota && total - added < quota;
}

/** Fans a change out to listeners; a throwing listener is logged, never propagated to the writer. */
export class ChangeHub {
  private readonly listeners = new Set<(c: StoreChange) => void>();
  constructor(private readonly log: Logger) {}

  /** Adds a listener; returns its remover. */
  add(listener: (c: StoreChange) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Calls every listener with `change`. */
  emit(change: StoreChange): void {
    for (const l of [...this.listeners]) {
      try {
        l(change);
      } catch (err) {
        this.log.error({ err, op: change.op }, 'user store change listener threw');
      }
    }
  }

  /** Drops every listener. */
  clear(): void {
    this.listeners.clear();
  }
}

/**
 * A users-table row as a driver returns it; the backends differ only in how
 * the driver types JSON, integers, times and booleans (`pg` gives JSON,
 * bigint strings, Dates and booleans; SQLite text and numbers).
 */
export interface UserRowOf<Json, Int, Time, Bool> {
  id: string;
  name: string;
  public_key: Buffer;
  kind: string;
  secret_plaintext?: string | null;
  wss_path: string | null;
  dst: string | null;
  policy: Json;
  quota_bytes: Int | null;
  expires_at: Time | null;
  enabled: Bool;
  mtt: Bool;
  udp_max_rate: Int | null;
  created_at: Time;
  updated_at: Time;
  bytes_up: Int;
  bytes_down: Int;
}
