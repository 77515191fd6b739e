/**
 * `polytun link`: prints the client links of a server's users, one per line,
 * and a QR code under each when stdout is a terminal. Opening the data dir
 * creates it (and its keys) if it does not exist yet, exactly as the server
 * would, so the links printed are the ones the server will accept.
 */
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { openDataDir } from '../server/datadir.js';
import { linksFor } from '../config/links.js';
import { absPath, collect, resolveConfig, typedFlags, type FlagMapping } from './flags.js';
import type { CliIo } from './io.js';
import { renderQr } from './qr.js';

const FLAGS: readonly FlagMapping[] = [
  { attr: 'listen', flag: '--listen', path: ['listen'] },
  { attr: 'dataDir', flag: '--data-dir', path: ['dataDir'], map: absPath },
  { attr: 'host', flag: '--host', path: ['publicHost'] },
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
    .option('--host <public-host>', 'host name or address clients dial (default: the listen host; for 0.0.0.0/:: the first public interface address)')
    .option('--config <file>', "read listen, dataDir and publicHost from the server's YAML config; flags override it")
    .option('--user <name>', 'only this user (default: every user)')
    .option('--qr', 'always print QR codes (default: only when stdout is a terminal)')
    .option('--no-qr', 'never print QR codes')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.opts<LinkOpts>();
      const config = await resolveConfig('server', opts.config, typedFlags(cmd, FLAGS));
      const dataDir = await openDataDir(config.dataDir);
      const users = dataDir.users.listUsers();
      if (opts.user !== undefined && !users.some((u) => u.name === opts.user)) {
        throw new ConfigError('--user', `no user '${opts.user}' in ${dataDir.dir} (users: ${users.map((u) => u.name).join(', ') || 'none'})`);
      }
      const qr = opts.qr ?? io.stdout.isTTY === true;
      const only = opts.user === undefined ? {} : { users: [opts.user] };
      for (const link of linksFor(dataDir, config.listen, config.publicHost, only)) {
        io.stdout.write(`${link}\n`);
        if (qr) io.stdout.write(`${renderQr(link)}\n`);
      }
    });
}
