/**
 * `polytun client --provision URL [--save FILE]`: the flags' side of
 * provisioning; the requests and the saved file are config/provision-client.ts.
 */
import { ConfigError } from '../core/errors.js';
import type { LogFormat, LogLevel } from '../config/schema.js';
import { provisionClient } from '../config/provision-client.js';
import { createLogger } from './log.js';

/** The command-line options of `polytun client` that provisioning reads. */
export interface ProvisionFlags {
  provision?: string;
  save?: string;
  config?: string;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
}

/**
 * `polytun client --provision URL [--save FILE]`: provisions and returns the
 * saved file, which the client then reads as its --config.
 * @throws ConfigError when --provision is combined with LINK or --config, or --save is given alone.
 */
export async function provisionedConfigFile(flags: ProvisionFlags, link: string | undefined): Promise<string> {
  if (flags.provision === undefined) throw new ConfigError('--save', 'only goes with --provision');
  if (link !== undefined || flags.config !== undefined) throw new ConfigError('--provision', 'takes the place of LINK and --config: give only one of them');
  const logger = createLogger({ ...(flags.logLevel ? { level: flags.logLevel } : {}), ...(flags.logFormat ? { format: flags.logFormat } : {}) });
  const r = await provisionClient(flags.provision, { ...(flags.save === undefined ? {} : { save: flags.save }), logger });
  return r.file;
}
