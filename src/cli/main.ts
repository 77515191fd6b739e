/**
 * The `polytun` program: one commander tree, each command registered from its
 * own file. `main(argv)` parses and runs, prints errors as one line
 * (`polytun: client.yaml:7: key 'socks': …`) and returns the exit code; it
 * never calls process.exit, so a command that owns sockets can close them.
 *
 * `server` and `client` are registered only when their run functions are
 * injected (see {@link CliDeps}); the entry point wires them.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { PolytunError } from '../core/errors.js';
import { registerClientCommand, type ClientRun } from './cmd-client.js';
import { registerConfigCommand } from './cmd-config.js';
import { registerKeygenCommand } from './cmd-keygen.js';
import { registerLinkCommand } from './cmd-link.js';
import { registerServerCommand, type ServerRun } from './cmd-server.js';
import { registerStatusCommand } from './cmd-status.js';
import { registerUiCommand, type UiRun } from './cmd-ui.js';
import { registerUserCommand } from './cmd-user.js';
import { processIo, type CliIo } from './io.js';

/** What the program is built from. */
export interface CliDeps {
  /** @default the process's stdout/stderr */
  io?: CliIo;
  /** Runs `polytun server` with its validated config; without it there is no `server` command. */
  runServer?: ServerRun;
  /** Runs `polytun client` with its validated config; without it there is no `client` command. */
  runClient?: ClientRun;
  /** Runs `polytun ui` (the setup wizard and dashboard); without it there is no `ui` command. */
  runUi?: UiRun;
  /** Registers further commands (the entry point adds `demo`). */
  extend?: (program: Command) => void;
}

function version(): string {
  // src/cli/main.ts and dist/cli/main.js are both two levels below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** Builds the command tree. Parsing errors throw CommanderError instead of exiting. */
export function createProgram(deps: CliDeps = {}): Command {
  const io = deps.io ?? processIo;
  const program = new Command('polytun')
    .description('polytun: an encrypted tunnel over TCP/TLS with SOCKS5, HTTP CONNECT and port forwards')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  // Subcommands made with .command() inherit the settings above.
  if (deps.runServer) registerServerCommand(program, deps.runServer);
  if (deps.runClient) registerClientCommand(program, deps.runClient);
  if (deps.runUi) registerUiCommand(program, deps.runUi);
  registerLinkCommand(program, io);
  registerUserCommand(program, io);
  registerKeygenCommand(program, io);
  registerConfigCommand(program, io);
  registerStatusCommand(program, io);
  deps.extend?.(program);
  return program;
}

/** Parses `argv` (without node and script), runs the command, returns the exit code. */
export async function main(argv: readonly string[], deps: CliDeps = {}): Promise<number> {
  const io = deps.io ?? processIo;
  const program = createProgram(deps);
  if (argv.length === 0) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode; // commander already printed it
    if (err instanceof PolytunError) {
      io.stderr.write(`polytun: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(`polytun: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}
