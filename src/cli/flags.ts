/**
 * From command-line flags to config: each flag names the config path it sets,
 * only flags the user actually typed are taken (commander's value source is
 * 'cli'; defaults shown in --help are the schema's own, applied by the
 * validator), and they are laid over the --config file before validation.
 */
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../core/errors.js';
import { mergeFlags, readConfigFile, type FlagValue } from '../config/load.js';
import { DEFAULTS, LOG_FORMATS, LOG_LEVELS, validateConfig, type ConfigFor, type ConfigPath, type Role } from '../config/schema.js';
import { CIPHER_CHOICES } from '../secure/cipher.js';

/** How one commander option maps onto the config. */
export interface FlagMapping {
  /** Commander's attribute name (`dataDir` for `--data-dir`). */
  readonly attr: string;
  /** The flag as users type it, for messages (`--data-dir`). */
  readonly flag: string;
  readonly path: ConfigPath;
  /** Converts the option value (e.g. resolves a path, splits USER:PASS). */
  readonly map?: (value: unknown) => unknown;
}

/** Commander collector for repeatable options: each use appends. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A path flag: relative to the working directory. */
export const absPath = (v: unknown): unknown => (typeof v === 'string' && v !== '' ? resolve(v) : v);

/**
 * Parses `--set key.path=VALUE` items. VALUE is read as YAML, so `false`,
 * `500`, `[a, b]` and `{x: 1}` have their types; text that is not valid YAML
 * stays a string.
 */
export function setFlags(items: readonly string[] | undefined): FlagValue[] {
  return (items ?? []).map((item) => {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError('--set', `expected KEY.PATH=VALUE, got ${JSON.stringify(item)}`);
    const key = item.slice(0, eq).trim();
    const text = item.slice(eq + 1);
    const path = key.split('.').map((seg) => (/^[0-9]+$/.test(seg) ? Number(seg) : seg));
    if (path.some((seg) => seg === '')) throw new ConfigError('--set', `bad key path ${JSON.stringify(key)}`);
    let value: unknown;
    try {
      value = text === '' ? '' : (parseYaml(text) as unknown);
    } catch {
      value = text; // not YAML: take it as plain text
    }
    return { path, value, flag: `--set ${key}` };
  });
}

/** The values of the options the user typed, at their config paths. */
export function typedFlags(cmd: Command, table: readonly FlagMapping[]): FlagValue[] {
  const opts = cmd.opts<Record<string, unknown>>();
  const out: FlagValue[] = [];
  for (const m of table) {
    if (cmd.getOptionValueSource(m.attr) !== 'cli') continue;
    const v = opts[m.attr];
    out.push({ path: m.path, value: m.map ? m.map(v) : v, flag: m.flag });
  }
  return out;
}

/**
 * Reads `configFile` (if any), lays `flags` over it (later flags win, `--set`
 * after the typed flags) and validates the result for `role`.
 */
export async function resolveConfig<R extends Role>(role: R, configFile: string | undefined, flags: readonly FlagValue[]): Promise<ConfigFor<R>> {
  const source = configFile === undefined ? undefined : await readConfigFile(configFile);
  const { raw, sourceMap } = mergeFlags(source, flags);
  return validateConfig(raw, role, sourceMap);
}

/** Help text listing config keys and defaults, for the end of a command's --help. */
export function keysHelp(title: string, rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return `\n${title}\n${rows.map(([k, d]) => `  ${k.padEnd(width)}  ${d}`).join('\n')}\n`;
}

/** The options `polytun client` and `polytun server` share, last before their help text: the record cipher, metrics, logging, and --set. */
export function withCommonOptions(cmd: Command, setExample: string): Command {
  return cmd
    .addOption(
      new Option('--cipher <cipher>', 'record cipher: auto = AES-256-GCM when both ends have AES acceleration, else ChaCha20-Poly1305; or force one (a peer that cannot use it is refused)')
        .choices(CIPHER_CHOICES)
        .default(DEFAULTS.records.cipher),
    )
    .option('--metrics <host:port>', 'serve GET /metrics in the Prometheus text format here (default: off; loopback only: the metrics name users)')
    .option('--metrics-allow-remote', 'let --metrics listen on a non-loopback address (protect it: a firewall, or a scraper on a private network)')
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default(DEFAULTS.logLevel))
    .addOption(new Option('--log-format <format>', 'log line format on stderr').choices(LOG_FORMATS).default(DEFAULTS.logFormat))
    .addOption(new Option('--set <key=value>', `set any config key, e.g. --set ${setExample} (repeatable)`).argParser(collect));
}
