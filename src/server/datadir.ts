/**
 * The server's data directory: its static key and its users.
 *
 *   DIR/            mode 0700
 *   ├─ server.key   mode 0600  the server's X25519 private key, base64url + "\n"
 *   └─ users.json   mode 0600  [{ "name": "default", "key": "<client private key>", "created": "<ISO time>" }]
 *
 * The first start creates both (one user, `default`); later starts read them,
 * so the server key, and therefore every link handed out, survives restarts.
 * Users' private keys are kept because the server is what prints their links.
 *
 * Files are written atomically (temporary file, fsync, then rename, or link
 * for a file that must not exist yet, so two servers starting at once cannot
 * both create a key). A file that exists but cannot be read or parsed is a
 * ConfigError naming it and is never replaced: a corrupt server.key silently
 * regenerated would cut off every client.
 *
 * users.json sits behind {@link UserStore} so that an SQLite store can take
 * its place without touching callers. Links for the users are built by
 * `linksFor` in src/config/links.ts (links are a config-layer format).
 */
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { createExclusive, errnoCode, readIfExists, writeAtomic } from '../core/files.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { decodeKey, encodeKey, generateKeyPair, publicKeyOf, type KeyPair } from '../secure/keys.js';

/** One user of the server. */
export interface User {
  /** Unique name, `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. */
  readonly name: string;
  /** The user's X25519 private key, base64url (what goes into their link). */
  readonly key: string;
  /** The matching public key, base64url (what the handshake presents). */
  readonly publicKey: string;
  /** When the user was added, ISO 8601. */
  readonly created: string;
}

/** The user directory. Reads are synchronous because the handshake path calls them. */
export interface UserStore {
  /** Every user, in the order they were added. */
  listUsers(): readonly User[];
  /** Adds a user with a fresh key pair and saves it. ConfigError if the name is bad or taken. */
  addUser(name: string): Promise<User>;
  /** The user whose public key is `pub` (raw 32 bytes or base64url). */
  findByPublicKey(pub: Buffer | string): User | undefined;
}

/** An opened data directory. */
export interface DataDir {
  /** Absolute path. */
  readonly dir: string;
  /** The server's static key pair. */
  readonly serverKeyPair: KeyPair;
  /** The server's public key, base64url (the `pk` of links). */
  readonly serverPublicKey: string;
  readonly users: UserStore;
}

/** Options of {@link openDataDir}. */
export interface OpenDataDirInit {
  /** Warnings about loose file modes go here. @default nullLogger */
  logger?: Logger;
  /** Name of the user created on first start. @default 'default' */
  defaultUser?: string;
  /**
   * Open an existing data dir without changing anything (read-only commands
   * such as `polytun link`): a missing directory or server key is a
   * ConfigError naming the directory, never a fresh key nobody asked for.
   * @default false
   */
  existing?: boolean;
}

const KEY_FILE = 'server.key';
const USERS_FILE = 'users.json';
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

async function warnIfLoose(file: string, log: Logger): Promise<void> {
  const st = await stat(file);
  if ((st.mode & 0o077) !== 0) {
    log.warn({ file, mode: (st.mode & 0o777).toString(8) }, 'secret file is readable by other users; run chmod 600 on it');
  }
}

function parseServerKey(text: string, file: string): KeyPair {
  try {
    const privateKey = decodeKey(text.trim(), file);
    return { privateKey, publicKey: publicKeyOf(privateKey) };
  } catch (err) {
    const why = err instanceof ConfigError ? err.message.slice(file.length + 2) : String(err);
    throw new ConfigError(file, `corrupt server key (${why}); left untouched: restore it, or move it away to create a new key (every client link changes)`);
  }
}

async function loadServerKey(dir: string, log: Logger): Promise<KeyPair> {
  const file = join(dir, KEY_FILE);
  let text = await readIfExists(file);
  if (text === undefined) {
    const created = await createExclusive(file, `${encodeKey(generateKeyPair().privateKey)}\n`);
    if (created) log.info({ file }, 'created a new server key');
    text = await readIfExists(file);
    if (text === undefined) throw new ConfigError(file, 'the server key vanished while it was being created');
  } else await warnIfLoose(file, log);
  return parseServerKey(text, file);
}

function makeUser(name: string, key: string, created: string, where: string): User {
  const publicKey = encodeKey(publicKeyOf(decodeKey(key, where)));
  return { name, key, publicKey, created };
}

function parseUsers(text: string, file: string): User[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, `corrupt users file, not valid JSON (${(err as Error).message}); left untouched`);
  }
  if (!Array.isArray(data)) throw new ConfigError(file, 'corrupt users file: expected a JSON array of users; left untouched');
  const users: User[] = [];
  const names = new Set<string>();
  const keys = new Set<string>();
  data.forEach((u: unknown, i) => {
    const where = `${file}: users[${i}]`;
    const r = u as Record<string, unknown> | null;
    if (typeof r !== 'object' || r === null) throw new ConfigError(where, 'expected an object {name, key, created}');
    if (typeof r.name !== 'string' || !USER_NAME.test(r.name)) throw new ConfigError(where, `bad name ${JSON.stringify(r.name)}`);
    if (typeof r.created !== 'string') throw new ConfigError(where, "missing 'created'");
    if (names.has(r.name)) throw new ConfigError(where, `duplicate user name '${r.name}'`);
    const user = makeUser(r.name, r.key as string, r.created, `${where}.key`);
    if (keys.has(user.publicKey)) throw new ConfigError(where, `user '${r.name}' has the same key as another user`);
    names.add(user.name);
    keys.add(user.publicKey);
    users.push(user);
  });
  return users;
}

const serialize = (users: readonly User[]): string =>
  `${JSON.stringify(users.map((u) => ({ name: u.name, key: u.key, created: u.created })), null, 2)}\n`;

/** users.json-backed {@link UserStore}. Writes are serialized within this process. */
class JsonUserStore implements UserStore {
  readonly #byPublic = new Map<string, User>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: string,
    private users: User[],
  ) {
    for (const u of users) this.#byPublic.set(u.publicKey, u);
  }

  listUsers(): readonly User[] {
    return this.users;
  }

  findByPublicKey(pub: Buffer | string): User | undefined {
    return this.#byPublic.get(typeof pub === 'string' ? pub : pub.toString('base64url'));
  }

  addUser(name: string): Promise<User> {
    const run = async (): Promise<User> => {
      if (typeof name !== 'string' || !USER_NAME.test(name)) {
        throw new ConfigError('user name', `bad name ${JSON.stringify(name)} (letters, digits, '.', '_', '-'; at most 64)`);
      }
      if (this.users.some((u) => u.name === name)) throw new ConfigError('user name', `user '${name}' already exists`);
      const user = makeUser(name, encodeKey(generateKeyPair().privateKey), new Date().toISOString(), 'new key');
      const next = [...this.users, user];
      await writeAtomic(this.file, serialize(next));
      this.users = next;
      this.#byPublic.set(user.publicKey, user);
      return user;
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.then(
      () => undefined,
      () => undefined, // the caller gets the error through `p`; the queue only orders writes
    );
    return p;
  }
}

async function loadUsers(dir: string, defaultUser: string, log: Logger): Promise<JsonUserStore> {
  const file = join(dir, USERS_FILE);
  let text = await readIfExists(file);
  if (text === undefined) {
    const first = makeUser(defaultUser, encodeKey(generateKeyPair().privateKey), new Date().toISOString(), 'new key');
    if (await createExclusive(file, serialize([first]))) log.info({ file, user: defaultUser }, 'created the default user');
    text = await readIfExists(file);
    if (text === undefined) throw new ConfigError(file, 'the users file vanished while it was being created');
  } else await warnIfLoose(file, log);
  return new JsonUserStore(file, parseUsers(text, file));
}

/**
 * Opens (and on first start creates) a data directory: mode 0700, a server
 * key and a default user. Restarting with the same directory keeps the keys.
 * @throws ConfigError naming the file that cannot be read, written or parsed.
 */
export async function openDataDir(dir: string, init: OpenDataDirInit = {}): Promise<DataDir> {
  const log = init.logger ?? nullLogger;
  const abs = resolve(dir);
  if (init.existing === true) return openExisting(abs);
  try {
    const st = await stat(abs).catch(async (err: unknown) => {
      if (errnoCode(err) !== 'ENOENT') throw err;
      await mkdir(abs, { recursive: true, mode: 0o700 });
      return stat(abs);
    });
    if (!st.isDirectory()) throw new ConfigError(abs, 'data dir is not a directory');
    if ((st.mode & 0o077) !== 0) {
      // It holds private keys: nobody else should list or read it.
      await chmod(abs, 0o700);
      log.warn({ dir: abs, was: (st.mode & 0o777).toString(8) }, 'data dir was accessible to other users; changed its mode to 700');
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(abs, `cannot use as data dir: ${(err as Error).message}`);
  }
  const serverKeyPair = await wrapIo(join(abs, KEY_FILE), () => loadServerKey(abs, log));
  const users = await wrapIo(join(abs, USERS_FILE), () => loadUsers(abs, init.defaultUser ?? 'default', log));
  return { dir: abs, serverKeyPair, serverPublicKey: encodeKey(serverKeyPair.publicKey), users };
}

/** Turns a raw I/O failure into a ConfigError naming the file. */
async function wrapIo<T>(file: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(file, `cannot write: ${(err as Error).message}`);
  }
}

/** What a read-only command says about a directory that is not a data dir (a typo, usually). */
export function notADataDir(abs: string, why: string): ConfigError {
  return new ConfigError(abs, `${why}: not a polytun data dir (check the path; \`polytun server --data-dir ${abs}\` creates one on its first start)`);
}

/** {@link openDataDir} for read-only use: nothing is created, chmod-ed or imported. */
async function openExisting(abs: string): Promise<DataDir> {
  const st = await stat(abs).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') throw notADataDir(abs, 'no such directory');
    throw new ConfigError(abs, `cannot use as data dir: ${(err as Error).message}`);
  });
  if (!st.isDirectory()) throw new ConfigError(abs, 'data dir is not a directory');
  const keyFile = join(abs, KEY_FILE);
  const keyText = await readOnlyIo(keyFile);
  if (keyText === undefined) throw notADataDir(abs, `no ${KEY_FILE}`);
  const serverKeyPair = parseServerKey(keyText, keyFile);
  const usersFile = join(abs, USERS_FILE);
  const usersText = await readOnlyIo(usersFile);
  const users = new JsonUserStore(usersFile, usersText === undefined ? [] : parseUsers(usersText, usersFile));
  return { dir: abs, serverKeyPair, serverPublicKey: encodeKey(serverKeyPair.publicKey), users };
}

/** Reads `file` (undefined when missing); other failures are a ConfigError naming it. */
async function readOnlyIo(file: string): Promise<string | undefined> {
  try {
    return await readIfExists(file);
  } catch (err) {
    throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
  }
}
