/**
 * Imports point down only (ARCHITECTURE.md "Layers"). This walks every
 * source file's relative imports and fails on an upward or sideways one.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';
import { describe, it } from 'node:test';

const SRC = resolve(import.meta.dirname, '../../src');

/** What each top-level folder of src/ may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  core: [],
  native: ['core'],
  carriers: ['core', 'native'],
  secure: ['core', 'native', 'carriers'],
  session: ['core', 'secure'],
  paths: ['core', 'carriers', 'secure', 'session'],
  proxy: ['core', 'session'],
  tun: ['core', 'native'],
  store: ['core', 'secure'],
  client: ['core', 'native', 'carriers', 'secure', 'session', 'paths', 'proxy', 'tun'],
  server: ['core', 'native', 'carriers', 'secure', 'session', 'paths', 'proxy', 'tun', 'store'],
  observe: ['core', 'carriers', 'secure', 'session', 'paths', 'proxy', 'client', 'server', 'store'],
  config: ['core', 'native', 'carriers', 'secure', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server'],
  admin: ['core', 'carriers', 'secure', 'session', 'proxy', 'store', 'server', 'config', 'observe'],
  cli: ['core', 'native', 'carriers', 'secure', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server', 'config', 'observe', 'admin'],
  '.': ['core', 'native', 'carriers', 'secure', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server', 'config', 'observe', 'admin'],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const layerOf = (file: string): string => {
  const rel = relative(SRC, file);
  return rel.includes(sep) ? (rel.split(sep)[0] as string) : '.';
};

describe('layering', () => {
  it('every import points down the layer stack', () => {
    const violations: string[] = [];
    for (const f of files(SRC)) {
      const from = layerOf(f);
      const allowed = ALLOWED[from];
      if (!allowed) {
        violations.push(`${relative(SRC, f)}: folder '${from}' has no entry in the layer table`);
        continue;
      }
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
        const to = layerOf(resolve(dirname(f), m[1] as string));
        if (to !== from && !allowed.includes(to)) violations.push(`${relative(SRC, f)} imports ${m[1]} (${from} -> ${to})`);
      }
    }
    assert.deepEqual(violations, []);
  });

  it('the checker itself catches an upward import', () => {
    // Guard against a regex that silently matches nothing.
    const sample = "import { Session } from '../session/session.js';";
    const m = [...sample.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)];
    assert.equal(m.length, 1);
    assert.equal(ALLOWED.carriers?.includes('session'), false);
  });
});
