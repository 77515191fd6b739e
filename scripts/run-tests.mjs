#!/usr/bin/env node
// Runs node:test over every *.test.ts below the given folders (default: test/).
// Node 20's `--test` takes no globs, so we find the files ourselves.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.ts')) files.push(p);
  }
}
for (const r of roots.length ? roots : ['test']) {
  if (statSync(r).isFile()) files.push(r);
  else walk(r);
}
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}
// Build dist/ once, before any test file runs: e2e and lab tests start the
// compiled CLI, and files rebuilding it concurrently would let one process
// import a module another is rewriting.
const tsc = join(process.cwd(), 'node_modules/typescript/bin/tsc');
const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.error('run-tests: the build (tsc -p tsconfig.build.json) failed');
  process.exit(1);
}
process.env.POLYTUN_DIST_BUILT = '1';
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...extra, ...files],
  { stdio: 'inherit' },
);
process.exit(res.status ?? 1);
