/**
 * The multi-user parts of `polytun server` that sit above the server layer:
 * the management listeners (admin REST API with provisioning on one port,
 * the mtt controller on another), the GatewayView those APIs see, and the
 * users' links printed at start. run-server.ts calls in here; the gateway
 * itself is src/server/gateway.ts, its ws/wss listeners with their decoy
 * src/server/ws-listener.ts.
 *
 *   --admin  [http[s]://]HOST:PORT ─┬─ /token, /config ──▶ provisioning (user name + password → token → config)
 *                                   ├─ /, /assets/… ─────▶ web dashboard (login form → session cookie)
 *                                   └─ everything else ──▶ admin API (bearer token, or the dashboard's cookie)
 *   --controller HOST:PORT ─────────────────────────────▶ mtt-mu-server controller
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { TLS_HANDSHAKE_TIMEOUT_MS, boundHttpServer } from '../carriers/preauth.js';
import { buildAdminApi } from '../admin/api.js';
import { userLinks } from '../admin/client-config.js';
import { MttController } from '../admin/controller.js';
import { openPasswordVault } from '../admin/passwords.js';
import { buildProvisionApi } from '../admin/provision.js';
import { ensureAdminToken, ensureProvisionSecret } from '../admin/tokens.js';
import type { GatewayView, SessionInfo } from '../admin/types.js';
import { linkEndpoints } from '../config/links.js';
import { SERVED_FILE, writeServed } from '../config/served.js';
import type { ListenUrl, ServerConfig } from '../config/schema.js';
import type { ServerCert } from '../server/cert-store.js';
import type { DataDir } from '../server/datadir.js';
import type { Gateway, GatewaySession } from '../server/gateway.js';
import type { SessionServer } from '../server/session-server.js';
import type { User } from '../store/index.js';
import type { CliIo } from './io.js';
import { renderQr } from './qr.js';
import { gatewayStatus } from '../observe/status.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** What {@link startManagement} needs. */
export interface ManagementInit {
  cfg: ServerConfig;
  gw: Gateway;
  server: SessionServer<User>;
  dd: DataDir;
  /** The listen URLs with their real ports, in config order. */
  bound: readonly ListenUrl[];
  cert: ServerCert | undefined;
  io: CliIo;
  log: Logger;
}

/** The running management side. */
export interface Management {
  readonly view: GatewayView;
  /** Marks the gateway as draining in its status. */
  draining(): void;
  /** Stops the admin and controller listeners. */
  close(): Promise<void>;
}

/** Builds the GatewayView and starts the admin and controller listeners the config asks for. */
export async function startManagement(m: ManagementInit): Promise<Management> {
  const { cfg, gw, server, dd, bound, cert, io, log } = m;
  const startedAt = Date.now();
  const ver = version();
  let draining = false;
  const endpoints = linkEndpoints(bound, cfg.publicHost, { ...(cert ? { fingerprint: cert.fingerprint } : {}), wsTokenPath: cfg.gateway.wsTokenPath });
  try {
    // For `polytun link --data-dir DIR` and `polytun user add` without repeating the listen flags.
    await writeServed(dd.dir, endpoints, cfg.gateway.store);
  } catch (err) {
    log.warn({ file: join(dd.dir, SERVED_FILE), err: toError(err).message }, 'cannot record the listen URLs for `polytun link`: what it has may be out of date; pass it --listen');
  }
  const view: GatewayView = {
    sessions: () => gw.sessions().map((s) => withPaths(s, server)),
    kickSession: (id, reason) => gw.kickSession(id, reason),
    kickUser: (id, reason) => gw.kickUser(id, reason),
    status: () => gatewayStatus({ version: ver, startedAt, draining, server, listeners: bound.map((l) => ({ carrier: l.scheme, address: l.host, port: l.port })) }),
    serverPublicKey: () => dd.serverPublicKey,
    endpoints: () => endpoints,
  };
  const closers: (() => Promise<void>)[] = [];
  const g = cfg.gateway;
  try {
    if (g.admin !== undefined) {
      const { token, created } = await ensureAdminToken(dd.dir, { logger: log });
      // Printed this once; afterwards it is only in DIR/admin.token.
      if (created) io.stdout.write(`admin token (shown once, also in ${dd.dir}/admin.token): ${token}\n`);
      const passwords = await openPasswordVault({ dataDir: dd.dir, store: gw.store, logger: log });
      closers.push(async () => passwords.close());
      const secret = await ensureProvisionSecret(dd.dir, { logger: log });
      const admin = buildAdminApi({ store: gw.store, gateway: view, adminToken: token, passwords, history: gw.history, logger: log, secure: g.admin.tls && cert !== undefined });
      const provision = buildProvisionApi({ store: gw.store, gateway: view, passwords, secret, logger: log });
      await Promise.all([admin.ready(), provision.ready()]);
      closers.push(async () => {
        await Promise.all([admin.close(), provision.close()]);
      });
      const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        const path = (req.url ?? '/').split('?', 1)[0];
        (path === '/token' || path === '/config' ? provision : admin).routing(req, res);
      };
      // run-server loads the certificate whenever the admin API is https.
      const srv = g.admin.tls && cert ? https.createServer({ cert: cert.cert, key: cert.key, minVersion: 'TLSv1.2', handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS }, handler) : http.createServer(handler);
      boundHttpServer(srv, 'admin API', log);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(g.admin?.port, g.admin?.host, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      srv.on('error', (err) => log.warn({ err: err.message }, 'admin listener error'));
      closers.push(
        () =>
          new Promise<void>((resolve) => {
            srv.close(() => resolve());
            srv.closeAllConnections();
          }),
      );
      const a = srv.address() as AddressInfo;
      const url = `${g.admin.tls ? 'https' : 'http'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
      log.info({ admin: url, ...(g.admin.tls && cert ? { fp: cert.fingerprint } : {}) }, 'admin API and provisioning (/token, /config) listening');
      if (!g.admin.tls && !isLoopback(a.address)) log.warn({ admin: url }, 'the admin API is plain HTTP on a non-loopback address: tokens and passwords cross the network in clear; use https://');
    }
    if (g.controller !== undefined) {
      const ctl = new MttController({ store: gw.store, logger: log });
      const a = await ctl.listen(g.controller.port, g.controller.host);
      closers.push(() => ctl.close());
      log.info({ controller: `${a.address}:${a.port}` }, 'mtt controller listening');
      if (!isLoopback(a.address)) log.warn({ controller: `${a.address}:${a.port}` }, 'the mtt controller has no authentication and listens on a non-loopback address');
    }
  } catch (err) {
    await closeAll(closers, log);
    throw err;
  }
  return {
    view,
    draining: () => {
      draining = true;
    },
    close: () => closeAll(closers, log),
  };
}

/** A gateway session with its paths (carrier, RTT, rate) from the session server, for the dashboard and GET /api/sessions. */
function withPaths(s: GatewaySession, server: SessionServer<User>): SessionInfo {
  const paths = server.sessions.get(s.id)?.session.stats.paths;
  if (paths === undefined) return s;
  const pathList = paths.map((p) => ({
    carrier: p.carrier,
    remote: p.remote,
    role: p.role,
    state: p.state,
    rttMs: p.rttMs ?? null,
    rateBytesPerSec: p.rateBytesPerSec,
    bytesSent: p.bytesSent,
    bytesReceived: p.bytesReceived,
  }));
  return pathList[0] === undefined ? { ...s, pathList } : { ...s, carrier: pathList[0].carrier, pathList };
}

async function closeAll(closers: readonly (() => Promise<void>)[], log: Logger): Promise<void> {
  await Promise.all(
    closers.map(async (c) => {
      try {
        await c();
      } catch (err) {
        log.debug({ err: toError(err).message }, 'management listener close failed');
      }
    }),
  );
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** At most this many users' links are printed at start; the admin API has the rest. */
const PRINTED_USERS = 10;

/**
 * Prints the links of the users this start created (the default user on a
 * first start; a QR code under each on a terminal). A restart prints none:
 * stdout usually ends up in the journal, and links are secrets. It says
 * instead how to print them (`polytun link`).
 */
export async function printLinks(gw: Gateway, view: GatewayView, io: CliIo, log: Logger, dataDir: string): Promise<void> {
  const fresh = [...gw.cache.users()].filter((u) => gw.imported.includes(u.name));
  for (const u of fresh.slice(0, PRINTED_USERS)) {
    const full = await gw.store.getUser(u.id, { withSecret: true });
    if (full?.secret === undefined || full.secret === null) continue;
    let links: string[];
    try {
      links = userLinks(view, full);
    } catch (err) {
      // A token with characters a link cannot carry: that user's links are unusable, the others are not.
      log.warn({ user: full.name, err: toError(err).message }, 'cannot print this user\'s links');
      continue;
    }
    for (const link of links) {
      io.stdout.write(`${link}\n`);
      if (io.stdout.isTTY) io.stdout.write(`${renderQr(link)}\n`);
    }
  }
  if (fresh.length === 0) {
    const n = [...gw.cache.users()].length;
    io.stdout.write(`# ${n} user${n === 1 ? '' : 's'}; links are printed only when a user is created: polytun link --data-dir ${dataDir} [--user NAME]\n`);
  } else if (fresh.length > PRINTED_USERS) io.stdout.write(`# ${fresh.length - PRINTED_USERS} more users: polytun link --data-dir ${dataDir}\n`);
}
