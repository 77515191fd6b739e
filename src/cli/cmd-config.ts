/**
 * `polytun config check FILE`: validates a config file and says `ok`, or
 * lists every problem as `FILE:LINE: key 'k': …` and exits 1.
 */
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { readConfigFile } from '../config/load.js';
import { validateConfig, type Role } from '../config/schema.js';
import type { CliIo } from './io.js';

// Keys only one role has; used to tell which role a file is for.
const SERVER_KEYS = ['listen', 'dataDir', 'publicHost', 'tls', 'policy'];
const CLIENT_KEYS = ['link', 'socks', 'socksAuth', 'http', 'forwards', 'status'];

/** The role a raw config tree is for, judged by its role-only keys; undefined when unclear. */
export function guessRole(raw: unknown): Role | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const keys = Object.keys(raw);
  const server = keys.some((k) => SERVER_KEYS.includes(k));
  const client = keys.some((k) => CLIENT_KEYS.includes(k));
  return server === client ? undefined : server ? 'server' : 'client';
}

/** Adds `polytun config` (with `check`) to `program`. */
export function registerConfigCommand(program: Command, io: CliIo): Command {
  const config = program.command('config').description('work with config files');
  config
    .command('check')
    .description('validate a YAML config file: prints "ok" and exits 0, or prints FILE:LINE: key: problem lines and exits 1')
    .argument('<file>', 'the YAML config file')
    .addOption(new Option('--role <role>', 'which program the file is for (default: guessed from its keys)').choices(['server', 'client']))
    .action(async (file: string, opts: { role?: Role }) => {
      const src = await readConfigFile(file);
      const role = opts.role ?? guessRole(src.raw);
      if (role === undefined) {
        throw new ConfigError(file, 'cannot tell whether this is a server or a client config: pass --role server|client');
      }
      validateConfig(src.raw, role, src.sourceMap);
      io.stdout.write(`ok: ${file} is a valid ${role} config\n`);
    });
  return config;
}
