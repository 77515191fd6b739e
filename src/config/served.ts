/**
 * `DIR/links.json`: where the server was last reachable, written by
 * `polytun server` at every start, so that `polytun link --data-dir DIR` and
 * `polytun user add` can print working links without repeating --listen,
 * --host, --ws-token-path and --store.
 *
 *   { "written": ISO time, "endpoints": LinkEndpoint[], "store": URL without its password }
 *
 * The endpoints are the bound ones (a listen on port 0 records the port the
 * kernel chose) with the public host, SNI, certificate pin and token path
 * already applied. Nothing secret is in it: the store URL loses its password
 * (PostgreSQL then takes it from PGPASSWORD or ~/.pgpass).
 */
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { readIfExists, writeAtomic } from '../core/files.js';
import type { LinkEndpoint } from './links.js';

export const SERVED_FILE = 'links.json';

/** What the file holds. */
export interface Served {
  readonly written: string;
  readonly endpoints: readonly LinkEndpoint[];
  /** The user store URL ('' = SQLite in the data dir), without a password. */
  readonly store: string;
}

/** `url` without the password (and without a query string, which may carry one). */
export function withoutPassword(url: string): string {
  if (!/^postgres(ql)?:\/\//.test(url)) return url;
  try {
    const u = new URL(url);
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return '';
  }
}

/** Writes DIR/links.json. */
export async function writeServed(dir: string, endpoints: readonly LinkEndpoint[], storeUrl: string): Promise<void> {
  const s: Served = { written: new Date().toISOString(), endpoints, store: withoutPassword(storeUrl) };
  await writeAtomic(join(dir, SERVED_FILE), `${JSON.stringify(s, null, 2)}\n`);
}

/**
 * Reads DIR/links.json.
 * @throws ConfigError when it is missing (the server never ran with this version) or unreadable.
 */
export async function readServed(dir: string): Promise<Served> {
  const file = join(dir, SERVED_FILE);
  const text = await readIfExists(file);
  if (text === undefined) {
    throw new ConfigError(file, 'missing (`polytun server` writes it at every start): start the server once, or pass --listen URL (and --host, --ws-token-path as the server has them)');
  }
  try {
    const s = JSON.parse(text) as Served;
    if (!Array.isArray(s.endpoints) || typeof s.store !== 'string') throw new Error('expected {endpoints, store}');
    return s;
  } catch (err) {
    throw new ConfigError(file, `unreadable (${(err as Error).message}); it is rewritten at the next server start, or pass --listen URL`);
  }
}
