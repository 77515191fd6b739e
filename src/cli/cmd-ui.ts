/**
 * `polytun ui`: the setup wizard (and, once it applied a config, the
 * dashboard of the tunnel it started) without a client config: only the
 * dashboard API, on 127.0.0.1:7080 by default; it prints its URL. The run
 * function is wired in by the program's entry (run-ui.ts).
 */
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { parseHostPort } from '../core/address.js';
import { isLoopbackHost, type HostPort } from '../config/values.js';
import { LOG_LEVELS } from '../config/schema.js';
import { absPath } from './flags.js';

/** The default address of `polytun ui`. */
export const UI_DEFAULT_LISTEN = '127.0.0.1:7080';

/** What `polytun ui` runs with. */
export interface UiCommandOptions {
  listen: HostPort;
  /** Where the wizard's apply writes the client config. @default $XDG_CONFIG_HOME/polytun/client.yaml */
  configFile: string | undefined;
  passwordFile: string | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** Runs the wizard until SIGINT/SIGTERM. */
export type UiRun = (opts: UiCommandOptions) => Promise<void>;

/** Adds `polytun ui` to `program`. */
export function registerUiCommand(program: Command, run: UiRun): Command {
  return program
    .command('ui')
    .description('start the setup wizard and dashboard alone (no config needed), then open the printed address in a browser: paste a link, upload its QR code or provision from a server, check the connection, write the config (mode 600) and start the tunnel')
    .addOption(new Option('--listen <host:port>', 'where the dashboard (web page and API) listens (loopback unless --ui-password-file is given)').default(UI_DEFAULT_LISTEN))
    .option('--config <file>', 'where the wizard writes the client config (default: $XDG_CONFIG_HOME/polytun/client.yaml, i.e. ~/.config/polytun/client.yaml)')
    .option('--ui-password-file <file>', 'the dashboard\'s login password, on the first line of this file (required off loopback)')
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
    .addHelpText(
      'after',
      `
The page at / is the wizard (Setup: a link, its QR image or provisioning; the fronts; networks to
bond; checks of reach, UDP, NAT, first-hop MTU and speed per endpoint; apply) and, once a tunnel
runs, the dashboard: this machine → each path (state, RTT, loss, rate) → the server, throughput
per path live and over 90 days, the fronts and their counters, and recent events (reconnects,
failovers, paths up and down).
The API it uses (JSON under /api/, live status as Server-Sent Events at /api/events):
  GET  /api/session, POST /api/login, POST /api/logout
  GET  /api/status, /api/events, /api/fronts, /api/timeline, /api/paths, /api/history?path=ID&res=60|3600&from&to
  POST /api/wizard/link {link}, /api/wizard/provision {url | host,user,password,fp}, /api/wizard/check {config},
       /api/wizard/apply {config}, /api/wizard/start (the --config file as it is); GET /api/wizard/interfaces, /api/wizard/state
Every POST carries the X-Polytun-CSRF header (the token of GET /api/session, or of the login);
only loopback Host names are answered on a loopback address. Once applied, the tunnel runs in this
process; later start it with: polytun client --config FILE [--ui 127.0.0.1:7080]
`,
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const o = cmd.opts<{ listen: string; config?: string; uiPasswordFile?: string; logLevel: UiCommandOptions['logLevel'] }>();
      let listen: HostPort;
      try {
        const d = parseHostPort(o.listen);
        listen = { host: d.host, port: d.port };
      } catch {
        throw new ConfigError('--listen', `expected HOST:PORT, got ${JSON.stringify(o.listen)}`);
      }
      if (!isLoopbackHost(listen.host) && o.uiPasswordFile === undefined) {
        throw new ConfigError(`--listen ${o.listen}`, 'a dashboard off loopback needs a password: add --ui-password-file FILE, or listen on 127.0.0.1');
      }
      await run({ listen, configFile: absPath(o.config) as string | undefined, passwordFile: absPath(o.uiPasswordFile) as string | undefined, logLevel: o.logLevel });
    });
}
