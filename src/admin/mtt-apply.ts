/**
 * Applies mtt add/delete/reset commands to the user store: one user per
 * WSS path. Added users get a generated token credential (their polytun
 * links come from the admin API) and are named after their path,
 * `mtt:/the/path`; that name prefix is what marks a user as the
 * controller's own (reset deletes only those). They are in mtt mode (the
 * store's `mtt` flag): they accept stock mtt-clients
 * (src/server/mtt-passthrough.ts).
 *
 * mtt stores whatever it is given. polytun stores what it can serve: an
 * entry whose path the store cannot hold (not '/…', a query, a space) is
 * skipped, and one whose dst is missing or not `host:port` takes the path
 * out of service (mtt would keep the path and fail every dial to its dst).
 * The controller's reply and its ping count are mtt's either way
 * (controller.ts keeps mtt's own path table for that).
 */
import { createHash, randomBytes } from 'node:crypto';
import { formatHostPort, parseHostPort } from '../core/address.js';
import { StoreError, type User, type UserStore } from '../store/types.js';
import type { MuArg } from './mtt-command.js';

const MAX_NAME = 128;
/** Name prefix of the users the controller creates. */
export const MTT_NAME_PREFIX = 'mtt:';
const MAX_PATH = 256;
// The user store's rule for a WSS path: RFC 3986 unreserved and sub-delims plus '/', ':', '@', '%'.
const PATH_RE = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;

/** The user name for a path: readable when it fits, else a digest of the path. */
export function nameForPath(path: string): string {
  const plain = `${MTT_NAME_PREFIX}${path}`;
  if (plain.length <= MAX_NAME) return plain;
  return `${MTT_NAME_PREFIX}sha256:${createHash('sha256').update(path).digest('hex').slice(0, 32)}`;
}

/** True for a user the controller created. */
export function isControllerUser(user: Pick<User, 'name'>): boolean {
  return user.name.startsWith(MTT_NAME_PREFIX);
}

/** True when the store can hold `path` as a WSS path. */
export function storablePath(path: string): boolean {
  return path.length <= MAX_PATH && PATH_RE.test(path);
}

/** `dst` normalized (`host:port`, IPv6 bracketed), or undefined when it is not one. */
export function servableDst(dst: string): string | undefined {
  if (dst === '') return undefined;
  try {
    return formatHostPort(parseHostPort(dst));
  } catch {
    return undefined;
  }
}

function conflictOn(err: unknown, field: string): boolean {
  return err instanceof StoreError && err.code === 'ERR_STORE_CONFLICT' && err.field === field;
}

/** A known path gets the new dst, and mtt mode: the controller says mtt-clients use it. */
async function setDst(store: UserStore, user: User, dst: string): Promise<void> {
  if (user.dst !== dst || !user.mtt) await store.updateUser(user.id, { dst, mtt: true });
}

/** Adds one path, or gives a known path its new dst (mtt overwrites). */
async function addOne(store: UserStore, path: string, dst: string): Promise<void> {
  const existing = await store.findByPath(path);
  if (existing !== undefined) return setDst(store, existing, dst);
  let name = nameForPath(path);
  // A name taken by a user created elsewhere gets a suffix; a few tries are plenty.
  for (let attempt = 0; ; attempt++) {
    try {
      await store.createUser({ name, credential: { kind: 'token' }, wssPath: path, dst, mtt: true });
      return;
    } catch (err) {
      if (conflictOn(err, 'wssPath')) {
        // Another writer added this path between our lookup and insert: overwrite its dst instead.
        const now = await store.findByPath(path);
        if (now !== undefined) return setDst(store, now, dst);
      }
      if (!conflictOn(err, 'name') || attempt >= 3) throw err;
      name = `${nameForPath(path).slice(0, MAX_NAME - 9)}~${randomBytes(4).toString('hex')}`;
    }
  }
}

async function deletePath(store: UserStore, path: string): Promise<void> {
  if (!storablePath(path)) return;
  const u = await store.findByPath(path);
  if (u !== undefined) await store.deleteUser(u.id);
}

/** What an add left unserved (counts only: paths are secrets and stay out of logs). */
export interface AddOutcome {
  /** Entries whose path the store cannot hold. */
  readonly badPath: number;
  /** Entries without a usable dst: their path is out of service. */
  readonly badDst: number;
}

/**
 * opt 1: entries are applied in order (so the last of a repeated path
 * wins). A store failure stops there and rejects; earlier entries stay
 * applied, as with mtt, which has no transactions either.
 */
export async function addPaths(store: UserStore, args: readonly MuArg[]): Promise<AddOutcome> {
  let badPath = 0;
  let badDst = 0;
  for (const arg of args) {
    if (!storablePath(arg.path)) {
      badPath++;
      continue;
    }
    const dst = servableDst(arg.dst);
    if (dst === undefined) {
      badDst++;
      await deletePath(store, arg.path);
    } else {
      await addOne(store, arg.path, dst);
    }
  }
  return { badPath, badDst };
}

/** opt 2: deletes the users holding these paths; unknown paths are ignored (mtt). */
export async function deletePaths(store: UserStore, args: readonly MuArg[]): Promise<void> {
  for (const arg of args) await deletePath(store, arg.path);
}

/** opt 3: deletes every user the controller created (users an admin made are not mtt's to reset). */
export async function resetControllerUsers(store: UserStore): Promise<number> {
  let n = 0;
  let afterId: string | undefined;
  for (;;) {
    const page = await store.listUsers({ limit: 1000, ...(afterId === undefined ? {} : { afterId }) });
    if (page.length === 0) return n;
    afterId = page[page.length - 1]?.id;
    for (const u of page) if (isControllerUser(u) && (await store.deleteUser(u.id))) n++;
  }
}
