/**
 * `polytun link`: prints the client links of a server's users, one per line,
 * and a QR code under each when stdout is a terminal. Read-only: the data
 * dir must exist (a mistyped one is an error, not a new key), and nothing is
 * created in it. Where the server listens comes from DIR/links.json, which
 * the server writes at every start, unless --listen (or --config) says it
 * again. ws/wss links carry each user's own WebSocket path, or for a token
 * user without one the shared token path (its client then sends a bearer
 * value); a key user without a path has no ws/wss link.
 */
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { nullLogger } from '../core/logger.js';
import type { ServerConfig } from '../config/schema.js';
import { allUsers, endpointsOf, openUsers, writeLinks } from './data-dir-users.js';
import { absPath, collect, resolveConfig, typedFlags, type FlagMapping } from './flags.js';
import type { CliIo } from './io.js';

const FLAGS: readonly FlagMapping[] = [
  { attr: 'listen', flag: '--listen', path: ['listen'] },
  { attr: 'dataDir', flag: '--data-dir', path: ['dataDir'], map: absPath },
  { attr: 'host', flag: '--host', path: ['publicHost'] },
  { attr: 'store', flag: '--store', path: ['gateway', 'store'] },
  { attr: 'wsTokenPath', flag: '--ws-token-path', path: ['gateway', 'wsTokenPath'] },
];

interface LinkOpts {
  config?: string;
  dataDir?: string;
  listen?: string[];
  store?: string;
  host?: string;
  user?: string;
  qr?: boolean;
}

/** Adds `polytun link` to `program`. */
export function registerLinkCommand(program: Command, io: CliIo): Command {
  return program
    .command('link')
    .description("print every user's polytun:// link for each listen URL (QR codes too when stdout is a terminal)")
    .option('--data-dir <dir>', "the server's data dir (must exist: nothing is created)")
    .addOption(new Option('--listen <url>', 'a listen URL of the server, tcp|tls|ws|wss|udp://HOST:PORT (repeatable; default: the URLs the server recorded in DATA_DIR/links.json at its last start)').argParser(collect))
    .option('--store <url>', "the server's user store (default: the one it recorded, else SQLite users.db in the data dir)")
    .option('--ws-token-path <path>', "the server's --ws-token-path: ws/wss links of token users without a path of their own use it (default: /)")
    .option('--host <public-host>', 'host name or address clients dial (default: the listen host; for 0.0.0.0/:: the first public interface address)')
    .option('--config <file>', "read listen, dataDir and publicHost from the server's YAML config; flags override it")
    .option('--user <name>', 'only this user (default: every user)')
    .option('--qr', 'always print QR codes (default: only when stdout is a terminal)')
    .option('--no-qr', 'never print QR codes')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.opts<LinkOpts>();
      // Without --listen or --config, everything but the data dir comes from DIR/links.json.
      const fromFlags = opts.listen !== undefined || opts.config !== undefined;
      const config: ServerConfig | undefined = fromFlags ? await resolveConfig('server', opts.config, typedFlags(cmd, FLAGS)) : undefined;
      const dir = config?.dataDir ?? (opts.dataDir === undefined ? undefined : (absPath(opts.dataDir) as string));
      if (dir === undefined) throw new ConfigError('--data-dir', "is required: the server's data dir");
      // The directory first: a typo must be named as such, not as a missing links.json.
      await (await import('../server/datadir.js')).openDataDir(dir, { existing: true });
      const { endpoints, store: recorded } = await endpointsOf(dir, config, config === undefined ? opts.host : undefined);
      const { dataDir, store } = await openUsers(dir, opts.store ?? config?.gateway.store ?? recorded ?? '', false, nullLogger);
      let users;
      try {
        users = await allUsers(store, true);
      } finally {
        await store.close();
      }
      if (opts.user !== undefined && !users.some((u) => u.name === opts.user)) {
        throw new ConfigError('--user', `no user '${opts.user}' in ${dataDir.dir} (users: ${users.map((u) => u.name).join(', ') || 'none'})`);
      }
      if (opts.user !== undefined) users = users.filter((u) => u.name === opts.user);
      const qr = opts.qr ?? io.stdout.isTTY === true;
      const keyOnly: string[] = [];
      for (const u of users) {
        // Users whose private key only the client holds have no link here.
        if (writeLinks(io, u, endpoints, dataDir.serverPublicKey, qr) === 0 && u.secret === null) keyOnly.push(u.name);
      }
      if (keyOnly.length > 0) io.stderr.write(`polytun: no link for ${keyOnly.join(', ')}: only the public key is stored; the client builds its link from its own private key\n`);
    });
}
