/**
 * The built web pages for browser tests: `npm run build` makes them, but a
 * test run after editing web/ (or before any build) rebuilds what is stale.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

const newest = (dir: string): number =>
  Math.max(...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));

/** Builds dist/web/admin (the server's dashboard) and dist/web/client (the client's) when missing or older than web/. */
export function ensureWebBuilt(): void {
  const source = newest(join(ROOT, 'web'));
  for (const [mode, out] of [['production', 'admin'], ['client', 'client']] as const) {
    const index = join(ROOT, 'dist/web', out, 'index.html');
    if (existsSync(index) && statSync(index).mtimeMs >= source) continue;
    execFileSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--config', join(ROOT, 'web/vite.config.ts'), '--mode', mode], { stdio: 'inherit', cwd: ROOT });
  }
}
