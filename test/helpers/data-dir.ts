/**
 * A server data dir as `polytun server` leaves it after its first start
 * (keys, users.json imported into users.db, links.json recording where it
 * listens), made in-process, for the read-only commands (`polytun link`,
 * `polytun user`) that refuse to create one.
 */
import { linkEndpoints } from '../../src/config/links.js';
import { writeServed } from '../../src/config/served.js';
import { nullLogger } from '../../src/core/logger.js';
import { openDataDir } from '../../src/server/datadir.js';
import { importJsonUsers } from '../../src/server/import-users.js';
import { openStore } from '../../src/store/index.js';

/** Creates `dir` as a server listening on `listen` (tcp/tls without a certificate: tcp only) would. */
export async function serverDataDir(dir: string, listen: readonly string[] = ['tcp://127.0.0.1:4433']): Promise<void> {
  const dd = await openDataDir(dir);
  const store = await openStore('', { dataDir: dd.dir });
  try {
    await importJsonUsers(store, dd, nullLogger);
  } finally {
    await store.close();
  }
  await writeServed(dd.dir, linkEndpoints(listen), '');
}
