/**
 * `polytun keygen`: prints a fresh X25519 key pair, base64url. The private
 * key goes into a client link or a server's data dir; the public key is what
 * the other side pins.
 */
import type { Command } from 'commander';
import { encodeKey, generateKeyPair } from '../secure/keys.js';
import type { CliIo } from './io.js';

/** Adds `polytun keygen` to `program`. */
export function registerKeygenCommand(program: Command, io: CliIo): Command {
  return program
    .command('keygen')
    .description('print a new key pair (private and public key, base64url)')
    .option('--json', 'print {"privateKey", "publicKey"} as JSON (default: two labelled lines)')
    .action((opts: { json?: boolean }) => {
      const pair = generateKeyPair();
      const privateKey = encodeKey(pair.privateKey);
      const publicKey = encodeKey(pair.publicKey);
      if (opts.json) io.stdout.write(`${JSON.stringify({ privateKey, publicKey })}\n`);
      else io.stdout.write(`private key: ${privateKey}\npublic key:  ${publicKey}\n`);
    });
}
