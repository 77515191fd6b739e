/**
 * What `polytun link` and `polytun user` share: an existing data dir opened
 * without creating anything, where its server listens (DIR/links.json, or
 * --listen given again), its user store, and a user's links.
 *
 * These commands never create state: a mistyped --data-dir is an error
 * naming the directory, not a fresh server key and default user.
 */
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { linkEndpoints, userLinks, type LinkEndpoint } from '../config/links.js';
import { readServed } from '../config/served.js';
import type { ServerConfig } from '../config/schema.js';
import { existingCertPin } from '../server/cert-store.js';
import type { DataDir } from '../server/datadir.js';
import type { User, UserStore } from '../store/index.js';
import type { CliIo } from './io.js';
import { renderQr } from './qr.js';

/** Where clients reach the server: from --listen and friends when given, else from DIR/links.json. */
export async function endpointsOf(dataDir: string, cfg: ServerConfig | undefined, publicHost: string | undefined): Promise<{ endpoints: LinkEndpoint[]; store: string | undefined }> {
  if (cfg !== undefined) {
    const tls = cfg.listen.some((l) => l.scheme === 'tls' || l.scheme === 'wss');
    const fingerprint = tls ? await existingCertPin({ dataDir: cfg.dataDir, files: cfg.tls }) : undefined;
    return { endpoints: linkEndpoints(cfg.listen, cfg.publicHost, { ...(fingerprint ? { fingerprint } : {}), wsTokenPath: cfg.gateway.wsTokenPath }), store: undefined };
  }
  const served = await readServed(dataDir);
  let endpoints = [...served.endpoints];
  if (publicHost !== undefined) {
    endpoints = endpoints.map((e) => {
      const { sni: _sni, ...rest } = e;
      const tls = e.carrier === 'tls' || e.carrier === 'wss';
      return { ...rest, host: publicHost, ...(tls && isIP(publicHost) === 0 ? { sni: publicHost } : {}) };
    });
  }
  return { endpoints, store: served.store };
}

/** Opens the data dir read-only and its store (read-only for SQLite unless `write`). */
export async function openUsers(dir: string, storeUrl: string, write: boolean, log: Logger): Promise<{ dataDir: DataDir; store: UserStore }> {
  const [{ openDataDir }, { openStore }] = await Promise.all([import('../server/datadir.js'), import('../store/index.js')]);
  const dataDir = await openDataDir(dir, { existing: true });
  const sqlite = storeUrl === '' || storeUrl === 'sqlite:';
  if (sqlite && !existsSync(join(dataDir.dir, 'users.db'))) {
    throw new ConfigError(dataDir.dir, 'no users.db: start the server once with this data dir (it imports users.json into the store), or pass --store as the server has it');
  }
  const store = await openStore(storeUrl, { dataDir: dataDir.dir, logger: log, readOnly: !write });
  return { dataDir, store };
}

/** Every user of `store`, with secrets, in creation order. */
export async function allUsers(store: UserStore, withSecret: boolean): Promise<User[]> {
  const users: User[] = [];
  for (let page: User[] = []; ; ) {
    const last = page[page.length - 1];
    page = await store.listUsers({ limit: 1000, withSecret, ...(last ? { afterId: last.id } : {}) });
    users.push(...page);
    if (page.length < 1000) break;
  }
  return users;
}

/** Writes `user`'s links (and QR codes when `qr`); returns how many. A user whose key only its client holds has none. */
export function writeLinks(io: CliIo, user: User, endpoints: readonly LinkEndpoint[], serverKey: string, qr: boolean): number {
  if (typeof user.secret !== 'string') return 0;
  const links = userLinks({ name: user.name, credential: user.secret, credentialKind: user.kind, wssPath: user.wssPath }, endpoints, serverKey);
  for (const link of links) {
    io.stdout.write(`${link}\n`);
    if (qr) io.stdout.write(`${renderQr(link)}\n`);
  }
  return links.length;
}
