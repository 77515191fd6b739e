/**
 * Applies checked mtt add/delete commands to the user store: one user per
 * WSS path. Added users get a generated token credential (their links come
 * from the admin API) and are named after their path, `mtt:/the/path`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { StoreError, type User, type UserStore } from '../store/types.js';
import { Opt, type MuArg } from './mtt-command.js';

const MAX_NAME = 128;
const PREFIX = 'mtt:';

/** The user name for a path: readable when it fits, else a digest of the path. */
export function nameForPath(path: string): string {
  const plain = `${PREFIX}${path}`;
  if (plain.length <= MAX_NAME) return plain;
  return `${PREFIX}sha256:${createHash('sha256').update(path).digest('hex').slice(0, 32)}`;
}

function conflictOn(err: unknown, field: string): boolean {
  return err instanceof StoreError && err.code === 'ERR_STORE_CONFLICT' && err.field === field;
}

async function setDst(store: UserStore, user: User, dst: string): Promise<void> {
  if (user.dst !== dst) await store.updateUser(user.id, { dst });
}

/** Adds one path, or gives a known path its new dst (mtt overwrites). */
async function addOne(store: UserStore, arg: MuArg & { dst: string }): Promise<void> {
  const existing = await store.findByPath(arg.path);
  if (existing !== undefined) return setDst(store, existing, arg.dst);
  let name = nameForPath(arg.path);
  // A name taken by a user created elsewhere gets a suffix; a few tries are plenty.
  for (let attempt = 0; ; attempt++) {
    try {
      await store.createUser({ name, credential: { kind: 'token' }, wssPath: arg.path, dst: arg.dst });
      return;
    } catch (err) {
      if (conflictOn(err, 'wssPath')) {
        // Another writer added this path between our lookup and insert: overwrite its dst instead.
        const now = await store.findByPath(arg.path);
        if (now !== undefined) return setDst(store, now, arg.dst);
      }
      if (!conflictOn(err, 'name') || attempt >= 3) throw err;
      name = `${nameForPath(arg.path).slice(0, MAX_NAME - 9)}~${randomBytes(4).toString('hex')}`;
    }
  }
}

/**
 * Applies an add (opt 1) or delete (opt 2). Entries are applied in order; a
 * store failure stops there and rejects (earlier entries stay applied, like
 * mtt, which has no transactions either).
 */
export async function applyCommand(store: UserStore, opt: 1 | 2, args: readonly MuArg[]): Promise<void> {
  for (const arg of args) {
    try {
      if (opt === Opt.add) {
        if (arg.dst === undefined) throw new StoreError('ERR_STORE_INVALID', 'dst', 'dst is required');
        await addOne(store, { path: arg.path, dst: arg.dst });
      } else {
        const u = await store.findByPath(arg.path);
        if (u !== undefined) await store.deleteUser(u.id); // unknown paths are ignored (mtt)
      }
    } catch (err) {
      if (err instanceof StoreError && err.code !== 'ERR_STORE_BACKEND') {
        throw new StoreError(err.code, err.field, `args_bunch path ${JSON.stringify(arg.path)}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }
}
