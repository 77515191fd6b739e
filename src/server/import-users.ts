/**
 * One-time import of the data dir's users.json (the single-server user list
 * of earlier versions, and what `openDataDir` creates on a first start) into
 * the user store, keeping every user's private key so links already handed
 * out stay valid. Each imported user also gets a WSS path, for ws/wss
 * listeners.
 *
 * A marker file records that the import ran, so a user later deleted through
 * the admin API is not brought back by the next start. A users.json user
 * whose key is already in the store is skipped; one whose name another user
 * of the store holds (a fleet's second server has its own `default`) is
 * skipped with a warning.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import { decodeKey } from '../secure/keys.js';
import { StoreError, generateWssPath, type UserStore } from '../store/index.js';
import type { DataDir } from './datadir.js';

/** Marker file (in the data dir) written once users.json was imported. */
export const IMPORT_MARKER = 'users.json.imported';

/**
 * Imports users.json into `store` unless that was done before.
 * @returns the names of the users added to the store.
 */
export async function importJsonUsers(store: UserStore, dd: DataDir, log: Logger): Promise<string[]> {
  const marker = join(dd.dir, IMPORT_MARKER);
  if (existsSync(marker)) return [];
  const added: string[] = [];
  for (const u of dd.users.listUsers()) {
    const publicKey = Buffer.from(u.publicKey, 'base64url');
    if ((await store.findByPublicKey(publicKey)) !== undefined) continue;
    try {
      await store.createUser({ name: u.name, credential: { kind: 'key', privateKey: decodeKey(u.key, `users.json user '${u.name}'`) }, wssPath: generateWssPath() });
      added.push(u.name);
    } catch (err) {
      if (!(err instanceof StoreError && err.code === 'ERR_STORE_CONFLICT' && err.field === 'name')) throw err;
      log.warn({ user: u.name }, 'users.json user not imported: the user store already has a user of that name (another server of the fleet?)');
    }
  }
  if (added.length > 0) log.info({ users: added, store: store.backend }, 'imported users.json into the user store');
  await writeFile(marker, `users.json was imported into the ${store.backend} user store on ${new Date().toISOString()}; it is no longer read.\n`, { mode: 0o600 });
  return added;
}
