/**
 * `polytun link`: prints the client links of a server's users, one per line,
 * and a QR code under each when stdout is a terminal. Opening the data dir
 * and the user store creates them (keys, a default user, the self-signed
 * certificate for tls/wss) if they do not exist yet, exactly as the server
 * would, so the links printed are the ones the server will accept. ws/wss
 * links carry each user's own WebSocket path, or for a token user without
 * one the shared --ws-token-path (its client then sends a bearer value).
 */
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import type { User } from '../store/index.js';
import { nullLogger } from '../core/logger.js';
import { linkEndpoints, userLinks } from '../config/links.js';
import { absPath, collect, resolveConfig, typedFlags, type FlagMapping } from './flags.js';
import type { CliIo } from './io.js';
import { renderQr } from './qr.js';

const FLAGS: readonly FlagMapping[] = [
  { attr: 'listen', flag: '--listen', path: ['listen'] },
  { attr: 'dataDir', flag: '--data-dir', path: ['dataDir'], map: absPath },
  { attr: 'host', flag: '--host', path: ['publicHost'] },
  { attr: 'store', flag: '--store', path: ['gateway', 'store'] },
  { attr: 'wsTokenPath', flag: '--ws-token-path', path: ['gateway', 'wsTokenPath'] },
];

interface LinkOpts {
  config?: string;
  user?: string;
  qr?: boolean;
}

/** Adds `polytun link` to `program`. */
export function registerLinkCommand(program: Command, io: CliIo): Command {
  return program
    .command('link')
    .description("print every user's polytun:// link for each listen URL (QR codes too when stdout is a terminal)")
    .option('--data-dir <dir>', "the server's data dir (created with keys and a default user if missing)")
    .addOption(new Option('--listen <url>', 'a listen URL of the server, tcp://HOST:PORT or tls://HOST:PORT (repeatable)').argParser(collect))
    .option('--store <url>', "the server's user store (default: SQLite users.db in the data dir)")
    .option('--ws-token-path <path>', "the server's --ws-token-path: ws/wss links of token users without a path of their own use it (default: /)")
    .option('--host <public-host>', 'host name or address clients dial (default: the listen host; for 0.0.0.0/:: the first public interface address)')
    .option('--config <file>', "read listen, dataDir and publicHost from the server's YAML config; flags override it")
    .option('--user <name>', 'only this user (default: every user)')
    .option('--qr', 'always print QR codes (default: only when stdout is a terminal)')
    .option('--no-qr', 'never print QR codes')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.opts<LinkOpts>();
      const config = await resolveConfig('server', opts.config, typedFlags(cmd, FLAGS));
      // Loaded here, not at start: the store and the server's modules (fastify, SQLite…) cost every other command 0.3 s.
      const [{ openDataDir }, { importJsonUsers }, { openStore }, { loadOrCreateCert }] = await Promise.all([
        import('../server/datadir.js'),
        import('../server/gateway.js'),
        import('../store/index.js'),
        import('./run-server.js'),
      ]);
      const dataDir = await openDataDir(config.dataDir);
      const store = await openStore(config.gateway.store, { dataDir: dataDir.dir });
      let users: User[] = [];
      try {
        await importJsonUsers(store, dataDir, nullLogger);
        for (let page: User[] = []; ; ) {
          const last = page[page.length - 1];
          page = await store.listUsers({ limit: 1000, withSecret: true, ...(last ? { afterId: last.id } : {}) });
          users.push(...page);
          if (page.length < 1000) break;
        }
      } finally {
        await store.close();
      }
      if (opts.user !== undefined && !users.some((u) => u.name === opts.user)) {
        throw new ConfigError('--user', `no user '${opts.user}' in ${dataDir.dir} (users: ${users.map((u) => u.name).join(', ') || 'none'})`);
      }
      if (opts.user !== undefined) users = users.filter((u) => u.name === opts.user);
      const tls = config.listen.some((l) => l.scheme === 'tls' || l.scheme === 'wss');
      const cert = tls ? await loadOrCreateCert(config, nullLogger) : undefined;
      const endpoints = linkEndpoints(config.listen, config.publicHost, { ...(cert ? { fingerprint: cert.fingerprint } : {}), wsTokenPath: config.gateway.wsTokenPath });
      const qr = opts.qr ?? io.stdout.isTTY === true;
      for (const u of users) {
        // Users whose private key only the client holds have no link here.
        if (typeof u.secret !== 'string') continue;
        for (const link of userLinks({ name: u.name, credential: u.secret, credentialKind: u.kind, wssPath: u.wssPath }, endpoints, dataDir.serverPublicKey)) {
          io.stdout.write(`${link}\n`);
          if (qr) io.stdout.write(`${renderQr(link)}\n`);
        }
      }
    });
}
