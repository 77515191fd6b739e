/**
 * `polytun server`: flags → typed ServerConfig → the injected `run`. The run
 * function (listeners, sessions, egress) is wired in by the program's entry;
 * this file only owns the command line.
 */
import { Option, type Command } from 'commander';
import { METRICS_DEFAULTS } from '../config/metrics-schema.js';
import { DEFAULTS, type ServerConfig } from '../config/schema.js';
import { absPath, collect, keysHelp, resolveConfig, setFlags, typedFlags, withCommonOptions, type FlagMapping } from './flags.js';
import { SERVER_VPN_FLAGS, withServerVpnOptions } from './vpn-flags.js';

/** Runs the server until it stops; the command resolves when this does. */
export type ServerRun = (config: ServerConfig) => Promise<void>;

const FLAGS: readonly FlagMapping[] = [
  { attr: 'listen', flag: '--listen', path: ['listen'] },
  { attr: 'dataDir', flag: '--data-dir', path: ['dataDir'], map: absPath },
  { attr: 'allow', flag: '--allow', path: ['policy', 'allow'] },
  { attr: 'deny', flag: '--deny', path: ['policy', 'deny'] },
  { attr: 'cert', flag: '--cert', path: ['tls', 'cert'], map: absPath },
  { attr: 'key', flag: '--key', path: ['tls', 'key'], map: absPath },
  { attr: 'host', flag: '--host', path: ['publicHost'] },
  { attr: 'reverse', flag: '--reverse', path: ['reverse', 'enabled'] },
  { attr: 'store', flag: '--store', path: ['gateway', 'store'] },
  { attr: 'admin', flag: '--admin', path: ['gateway', 'admin'] },
  { attr: 'controller', flag: '--controller', path: ['gateway', 'controller'] },
  { attr: 'decoy', flag: '--decoy', path: ['gateway', 'decoy'], map: (v) => (typeof v === 'string' && /^https?:\/\//i.test(v) ? v : absPath(v)) },
  { attr: 'wsTokenPath', flag: '--ws-token-path', path: ['gateway', 'wsTokenPath'] },
  { attr: 'cipher', flag: '--cipher', path: ['records', 'cipher'] },
  { attr: 'cc', flag: '--cc', path: ['udp', 'cc'] },
  { attr: 'udpMaxRate', flag: '--udp-max-rate', path: ['udp', 'maxRate'] },
  { attr: 'metrics', flag: '--metrics', path: ['metrics', 'listen'] },
  { attr: 'metricsAllowRemote', flag: '--metrics-allow-remote', path: ['metrics', 'allowRemote'] },
  { attr: 'logLevel', flag: '--log-level', path: ['log', 'level'] },
  { attr: 'logFormat', flag: '--log-format', path: ['log', 'format'] },
];

const L = DEFAULTS.limits;
const KEYS: readonly (readonly [string, string])[] = [
  ['limits.handshakeTimeoutMs', String(L.handshakeTimeoutMs)],
  ['limits.maxPendingHandshakes', `${L.maxPendingHandshakes} (more are dropped, not queued)`],
  ['limits.maxSessions', String(L.maxSessions)],
  ['limits.streamWindow', `${L.streamWindow} (bytes)`],
  ['limits.sessionWindow', `${L.sessionWindow} (bytes)`],
  ['limits.maxStreams', `${L.maxStreams} (per session)`],
  ['limits.graceMs', `${L.graceMs} (a session waits this long to be resumed)`],
  ['limits.idleTimeoutMs', `${L.idleTimeoutMs} (0 = never)`],
  ['liveness.intervalMs', String(DEFAULTS.liveness.intervalMs)],
  ['liveness.timeoutMs', String(DEFAULTS.liveness.timeoutMs)],
  ['liveness.misses', String(DEFAULTS.liveness.misses)],
  ['metrics.maxLabelValues', `${METRICS_DEFAULTS.maxLabelValues} (series per metric, e.g. users, beyond which the rest are left out)`],
  ['records.tlsBound', `${DEFAULTS.records.tlsBound} (over TLS proven end to end, records are not encrypted a second time)`],
  ['reverse.bindHosts', `[${DEFAULTS.reverse.bindHosts.join(', ')}] (addresses -R may bind)`],
  ['reverse.ports', `[${DEFAULTS.reverse.ports}] (ports -R may bind)`],
  ['gateway.trafficFlushMs', '10000 (per-user traffic counters go to the user store this often)'],
  ['gateway.mttTimeoutMs', "60000 (mtt-mode connections without a byte either way this long are closed, mtt's -timeout; 0 = never)"],
  ['gateway.history', 'true (per-user traffic over time in the user store: 1-minute points 7 days, 1-hour 90)'],
  ['gateway.historyNode', 'the host name (this server\'s name in a fleet\'s shared traffic history)'],
];

/**
 * Adds `polytun server` to `program`. After parsing, the merged and
 * validated config is passed to `run`; its promise is the command's.
 */
export function registerServerCommand(program: Command, run: ServerRun): Command {
  return withServerVpnOptions(withCommonOptions(program
    .command('server')
    .description('run a polytun server: accept clients and dial their destinations')
    .addOption(new Option('--listen <url>', 'accept clients here: tcp://, tls://, ws://, wss:// or udp://HOST:PORT (repeatable; required, here or in --config); udp carries sessions over our own reliable transport with congestion control (for lossy, long paths); ws/wss pick the user by URL path, or by token on --ws-token-path; tcp://IP:PORT?mptcp listens with kernel MPTCP (clients with --mptcp)').argParser(collect))
    .option('--data-dir <dir>', 'keys and users; created with a server key and a "default" user on first start (required, here or in --config)')
    .option('--config <file>', 'YAML config file; flags override its keys')
    .addOption(new Option('--allow <entry>', 'let clients reach CIDR|HOST[:PORTS] even if it is private or loopback (repeatable)').argParser(collect))
    .addOption(new Option('--deny <entry>', 'never dial CIDR|HOST|*.suffix[:PORTS]; beats --allow (repeatable)').argParser(collect))
    .option('--cert <file>', 'TLS certificate (PEM) for tls:// and wss:// listeners and an https:// admin API (default: self-signed, pinned via the links)')
    .option('--key <file>', 'TLS private key (PEM) matching --cert')
    .option('--store <url>', "user store: postgres://USER@HOST/DB to share users with other servers (default: SQLite users.db in the data dir)")
    .option('--admin <[http[s]://]host:port>', 'admin REST API (bearer token printed on first start) and client provisioning (/token, /config) (default: off)')
    .option(
      '--controller <host:port>',
      'mos-tls-tunnel mtt-mu-server compatible controller (no authentication: keep it on loopback) (default: off). ' +
        'Users it adds also accept stock mtt-clients on ws/wss (-wss, with or without -mux): for those connections the URL path is the ONLY secret, as with mtt — ' +
        'no polytun authentication, no forward secrecy beyond TLS, no probe resistance on that path. ' +
        'A restart makes ping answer 0 until the panel pushes its users again (they stay stored and keep working meanwhile)',
    )
    .option('--decoy <dir|url>', 'what ws/wss listeners show to anything that is not a user: a static site folder or an http(s):// backend (default: nginx 404)')
    .option('--ws-token-path <path>', 'ws/wss URL path shared by token users: the bearer value their client sends in the upgrade request picks the user; a missing or wrong one gets the decoy (default: /)')
    .option('--host <public-host>', 'host name or address put in client links (default: the listen host; for 0.0.0.0/:: the first public interface address)')
    .option('--reverse', 'let clients open -R listeners on this server (default: off)')
    .option('--cc <controller>', 'udp listeners: congestion control of what the server sends when the client asks for none: bbr, cubic or fixed:RATE (default: bbr)')
    .option('--udp-max-rate <rate>', 'udp listeners: the highest fixed:RATE a client may make the server send at, e.g. 200mbit (default: no cap)'), 'limits.maxSessions=500'))
    .addHelpText('after', keysHelp('Other config keys (YAML or --set) and their defaults:', KEYS))
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.opts<{ config?: string; set?: string[] }>();
      const flags = [...typedFlags(cmd, [...FLAGS, ...SERVER_VPN_FLAGS]), ...setFlags(opts.set)];
      const config = await resolveConfig('server', opts.config, flags);
      await run(config);
    });
}
