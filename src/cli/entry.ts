/**
 * The real `polytun` program: the command tree with the server, client and
 * demo commands wired in. bin/polytun.js runs this from dist/.
 */
import { registerDemoCommand } from './cmd-demo.js';
import { processIo } from './io.js';
import { main } from './main.js';
import { runClient } from './run-client.js';
import { runServer } from './run-server.js';

export function run(argv: readonly string[]): Promise<number> {
  return main(argv, {
    runServer: (cfg) => runServer(cfg, processIo),
    runClient: (cfg) => runClient(cfg, processIo),
    extend: (program) => registerDemoCommand(program, processIo),
  });
}
