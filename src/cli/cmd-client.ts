/**
 * `polytun client`: flags → typed ClientConfig → the injected `run`. The run
 * function (session, SOCKS/HTTP fronts, forwards, status endpoint) is wired in
 * by the program's entry; this file only owns the command line.
 */
import { DEFAULT_UDP_MODE, UDP_MODES } from '../arq/cc-choice.js';
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { METRICS_DEFAULTS } from '../config/metrics-schema.js';
import { DEFAULTS, type ClientConfig } from '../config/schema.js';
import type { FlagValue } from '../config/load.js';
import { absPath, collect, keysHelp, resolveConfig, setFlags, typedFlags, withCommonOptions, type FlagMapping } from './flags.js';
import { CLIENT_VPN_FLAGS, withClientVpnOptions } from './vpn-flags.js';
import { provisionedConfigFile, type ProvisionFlags } from './provision.js';

/** Runs the client until it stops; the command resolves when this does. `configFile`: the --config (or provisioned) file it came from. */
export type ClientRun = (config: ClientConfig, configFile?: string) => Promise<void>;

/** `USER:PASS` → `{username, password}`; the password may contain ':'. */
function socksAuth(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const colon = v.indexOf(':');
  if (colon < 0) throw new ConfigError('--socks-auth', 'expected USER:PASS');
  return { username: v.slice(0, colon), password: v.slice(colon + 1) };
}

const FLAGS: readonly FlagMapping[] = [
  { attr: 'socks', flag: '--socks', path: ['socks'] },
  { attr: 'socksAuth', flag: '--socks-auth', path: ['socksAuth'], map: socksAuth },
  { attr: 'http', flag: '--http', path: ['http'] },
  { attr: 'forward', flag: '-L', path: ['forwards'] },
  { attr: 'reverse', flag: '-R', path: ['reverse'] },
  { attr: 'status', flag: '--status', path: ['status'] },
  { attr: 'path', flag: '--path', path: ['paths'] },
  { attr: 'mptcp', flag: '--mptcp', path: ['mptcp'] },
  { attr: 'pathUpAfter', flag: '--path-up-after', path: ['bonding', 'upAfterMs'], map: (v) => (typeof v === 'string' ? Number(v) : v) },
  { attr: 'onPathUp', flag: '--on-path-up', path: ['bonding', 'onUp'] },
  { attr: 'onPathDown', flag: '--on-path-down', path: ['bonding', 'onDown'] },
  { attr: 'backupServer', flag: '--backup-server', path: ['backupServers'] },
  { attr: 'failoverAfter', flag: '--failover-after', path: ['failover', 'afterMs'], map: (v) => (typeof v === 'string' ? Number(v) : v) },
  { attr: 'failbackAfter', flag: '--failback-after', path: ['failover', 'failbackAfterMs'], map: (v) => (typeof v === 'string' ? Number(v) : v) },
  { attr: 'retry', flag: '--retry', path: ['reconnect', 'retry'], map: (v) => (typeof v === 'string' ? Number(v) : v) },
  { attr: 'refusedRetry', flag: '--refused-retry', path: ['reconnect', 'refusedRetryMs'], map: (v) => (typeof v === 'string' ? Number(v) : v) },
  { attr: 'cipher', flag: '--cipher', path: ['records', 'cipher'] },
  { attr: 'cc', flag: '--cc', path: ['udp', 'cc'] },
  { attr: 'udpMode', flag: '--udp-mode', path: ['udp', 'mode'] },
  { attr: 'metrics', flag: '--metrics', path: ['metrics', 'listen'] },
  { attr: 'metricsAllowRemote', flag: '--metrics-allow-remote', path: ['metrics', 'allowRemote'] },
  { attr: 'ui', flag: '--ui', path: ['ui', 'listen'] },
  { attr: 'uiPasswordFile', flag: '--ui-password-file', path: ['ui', 'passwordFile'], map: absPath },
  { attr: 'logLevel', flag: '--log-level', path: ['log', 'level'] },
  { attr: 'logFormat', flag: '--log-format', path: ['log', 'format'] },
];

const L = DEFAULTS.limits;
const KEYS: readonly (readonly [string, string])[] = [
  ['limits.handshakeTimeoutMs', String(L.handshakeTimeoutMs)],
  ['limits.streamWindow', `${L.streamWindow} (bytes)`],
  ['limits.sessionWindow', `${L.sessionWindow} (bytes)`],
  ['limits.maxStreams', String(L.maxStreams)],
  ['limits.graceMs', String(L.graceMs)],
  ['limits.idleTimeoutMs', `${L.idleTimeoutMs} (0 = never)`],
  ['liveness.intervalMs', String(DEFAULTS.liveness.intervalMs)],
  ['liveness.timeoutMs', String(DEFAULTS.liveness.timeoutMs)],
  ['liveness.misses', String(DEFAULTS.liveness.misses)],
  ['metrics.maxLabelValues', `${METRICS_DEFAULTS.maxLabelValues} (series per metric, e.g. users, beyond which the rest are left out)`],
  ['records.tlsBound', `${DEFAULTS.records.tlsBound} (over TLS proven end to end, records are not encrypted a second time)`],
  ['ui.history', '$XDG_STATE_HOME/polytun/client-history.db (per-path traffic for the dashboard; false = none)'],
  ['ui.wizard', 'true (the wizard routes can rewrite the config; false = dashboard only)'],
];

/**
 * Adds `polytun client` to `program`. After parsing, the merged and
 * validated config is passed to `run`; its promise is the command's.
 */
export function registerClientCommand(program: Command, run: ClientRun): Command {
  return withClientVpnOptions(withCommonOptions(program
    .command('client')
    .description('connect to a polytun server and open local proxies and forwards through it')
    .argument('[link]', 'polytun:// link from `polytun link` (or `link:` in --config; a config file with mode 600 keeps it out of `ps`)')
    .addOption(new Option('--socks <host:port>', 'SOCKS5 proxy listen address').default(DEFAULTS.socks))
    .option('--no-socks', 'do not open the SOCKS5 proxy')
    .option('--socks-auth <user:pass>', 'require this SOCKS5 username/password (default: none; prefer socksAuth in --config: command lines are visible to other users)')
    .option('--http <host:port>', 'HTTP CONNECT proxy listen address (default: off)')
    .addOption(new Option('-L, --forward <spec>', 'local forward [BIND:]PORT:HOST:PORT[/udp]: listen on BIND:PORT (default bind 127.0.0.1), connect to HOST:PORT from the server (repeatable)').argParser(collect))
    .addOption(new Option('-R, --reverse <spec>', 'reverse forward [BIND:]PORT:HOST:PORT: the server listens on BIND:PORT, we connect to HOST:PORT (repeatable; the server must allow it)').argParser(collect))
    .addOption(new Option('--status <host:port>', 'local status endpoint for `polytun status` (loopback only)').default(DEFAULTS.status))
    .option('--no-status', 'do not open the status endpoint')
    .addOption(new Option('--path <spec>', 'bond another network path into the session: URL[,bind=IFACE|ADDR][,role=primary|backup][,weight=N][,mptcp], URL = tcp://, tls:// or udp://HOST:PORT of the same server (repeatable)').argParser(collect))
    .option('--cc <controller>', 'udp paths: congestion control of both directions: bbr (random loss is not congestion), cubic (fair to TCP) or fixed:RATE (send at RATE whatever is lost, e.g. fixed:40mbit; the server may cap it) (default: bbr)')
    .addOption(
      new Option('--udp-mode <mode>', "udp paths: ACK knobs named after kcptun's modes — normal holds an ACK up to 25 ms, fast 10 ms, fast2 5 ms, fast3 2 ms; a flow under way is acknowledged every 10th packet in normal and fast, every 4th in fast2, every packet in fast3 (faster: a lost tail is repaired sooner, more ACKs are sent; congestion control stays on)")
        .choices(UDP_MODES)
        .default(DEFAULT_UDP_MODE),
    )
    .option('--mptcp', 'use a kernel MPTCP socket for the link\'s own TCP path (needs the native addon and net.mptcp.enabled=1)')
    .option('--path-up-after <ms>', 'a (re)joined path carries traffic only after answering pings for this long (default: 0)')
    .option('--on-path-up <command>', 'run this shell command when a path comes up (env POLYTUN_PATH, POLYTUN_PATH_STATE)')
    .option('--on-path-down <command>', 'run this shell command when a path goes down')
    .addOption(new Option('--backup-server <link>', 'a backup server (same fleet key or its own link), used in order when the link\'s server stops answering (repeatable)').argParser(collect))
    .option('--failover-after <ms>', 'move to the next server after the session has had no path this long (default: 5000)')
    .option('--failback-after <ms>', 'move back to the first server once it has answered for this long (default: 30000)')
    .option('--retry <n>', 'when the server cannot be reached (at start, or for a new session after an outage longer than limits.graceMs): try again up to N times in a row, waiting 1 s doubling to 10 s (jittered), then exit with status 1; 0 = exit at the first failure (default: never give up)')
    .option('--refused-retry <ms>', `when the server refuses this user (unknown key, disabled, expired, over quota) or kicks it: log why once, then try again this often, so a router comes back by itself when the user is re-enabled; 0 = exit with status 1 instead (default: ${DEFAULTS.reconnect.refusedRetryMs})`)
    .option('--ui <host:port>', 'serve the dashboard here: a web page with the live topology, throughput per path, fronts and events, and the setup wizard (API under /api/; default: off; loopback unless --ui-password-file is given)')
    .option('--ui-password-file <file>', 'the dashboard\'s login password, on the first line of this file (required when --ui is not a loopback address)')
    .option('--config <file>', 'YAML config file; flags override its keys')
    .option('--provision <url>', "instead of LINK: log in to a server's provisioning API, https://USER:PASSWORD@HOST:PORT[/?fp=CERT_SHA256], save the user's config and connect")
    .option('--save <file>', 'with --provision: where the config is saved, mode 600 (default: ~/.config/polytun/provisioned/USER@HOST_PORT.yaml)'), 'limits.maxStreams=256'))
    .addHelpText('after', keysHelp('Other config keys (YAML or --set) and their defaults:', KEYS))
    .action(async (link: string | undefined, _opts: unknown, cmd: Command) => {
      const opts = cmd.opts<{ config?: string; set?: string[] } & ProvisionFlags>();
      const flags: FlagValue[] = [];
      if (link !== undefined) flags.push({ path: ['link'], value: link, flag: 'LINK' });
      flags.push(...typedFlags(cmd, [...FLAGS, ...CLIENT_VPN_FLAGS]), ...setFlags(opts.set));
      // --provision fetches and saves a config file; flags are laid over it like over --config.
      const configFile = opts.provision === undefined && opts.save === undefined ? opts.config : await provisionedConfigFile(opts, link);
      const config = await resolveConfig('client', configFile, flags);
      await run(config, configFile);
    });
}
