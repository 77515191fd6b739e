/**
 * The real `polytun` program: the command tree with the server, client and
 * demo commands wired in. bin/polytun.js runs this from dist/.
 */
import { registerDemoCommand } from './cmd-demo.js';
import { processIo, quietOnClosedReader } from './io.js';
import { main } from './main.js';

export function run(argv: readonly string[]): Promise<number> {
  quietOnClosedReader(process.stdout);
  quietOnClosedReader(process.stderr);
  return main(argv, {
    // Each loads its side only when it runs: a client (on a router, say)
    // never loads the server's store, admin API and their dependencies.
    runServer: async (cfg) => (await import('./run-server.js')).runServer(cfg, processIo),
    runClient: async (cfg, configFile) => (await import('./run-client.js')).runClient(cfg, processIo, { configFile }),
    runUi: async (opts) => (await import('./run-ui.js')).runUi(opts, processIo),
    extend: (program) => registerDemoCommand(program, processIo),
  });
}
