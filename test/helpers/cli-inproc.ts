/**
 * The command line in-process: `main` with run functions that only record
 * the typed config they were handed, and captured stdout/stderr.
 */
import { main, type CliDeps } from '../../src/cli/main.js';
import type { ClientConfig, ServerConfig } from '../../src/config/schema.js';
import { encodeKey, generateKeyPair } from '../../src/secure/keys.js';

/** A well-formed client link to a host no test dials. */
export const SAMPLE_LINK = `polytun://${encodeKey(generateKeyPair().privateKey)}@vps.example:4433?pk=${encodeKey(generateKeyPair().publicKey)}`;

export interface Captured {
  code: number;
  out: string;
  err: string;
  server?: ServerConfig;
  client?: ClientConfig;
}

/** Runs `polytun ARGV` in this process; the server or client config lands in the result instead of running. */
export async function cliInProcess(argv: string[], isTTY = false): Promise<Captured> {
  const c: Captured = { code: -1, out: '', err: '' };
  const deps: CliDeps = {
    io: { stdout: { write: (s: string) => (c.out += s), isTTY }, stderr: { write: (s: string) => (c.err += s) } },
    runServer: async (cfg) => {
      c.server = cfg;
    },
    runClient: async (cfg) => {
      c.client = cfg;
    },
  };
  c.code = await main(argv, deps);
  return c;
}
