#!/usr/bin/env node
// The `polytun` command: runs the compiled program from dist/.
/* global process, console, URL */
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/entry.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('polytun: not built yet: run `npm run build` in the polytun folder first');
  process.exit(1);
}
const { run } = await import(entry.href);
process.exitCode = await run(process.argv.slice(2));
