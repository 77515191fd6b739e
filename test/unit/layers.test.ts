/**
 * Imports point down only (ARCHITECTURE.md "Layers"). This walks every
 * source file's relative imports and fails on an upward or sideways one,
 * and on any import circle between files (even inside one folder).
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
  secure: ['core', 'native'],
  arq: ['core', 'secure'],
  session: ['core', 'secure'],
  paths: ['core', 'carriers', 'secure', 'arq', 'session'],
  proxy: ['core', 'session'],
  tun: ['core', 'native'],
  store: ['core', 'secure'],
  client: ['core', 'native', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'tun'],
  server: ['core', 'native', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'tun', 'store'],
  observe: ['core', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'client', 'server', 'store'],
  config: ['core', 'native', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server'],
  admin: ['core', 'carriers', 'secure', 'session', 'proxy', 'store', 'server', 'config', 'observe'],
  // The client's dashboard API: everything the CLI may use, except the CLI (which starts it).
  ui: ['core', 'native', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server', 'config', 'observe', 'admin'],
  cli: ['core', 'native', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server', 'config', 'observe', 'admin', 'ui'],
  '.': ['core', 'native', 'carriers', 'secure', 'arq', 'session', 'paths', 'proxy', 'tun', 'store', 'client', 'server', 'config', 'observe', 'admin'],
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


/**
 * Static imports and re-exports of `text`, type-only ones included (a type
 * circle still ties the two files' designs together); `import()` is left
 * out: loading on demand is how a file reaches up without a circle at load.
 */
function staticImports(text: string): string[] {
  return [...text.matchAll(/^\s*(?:import|export)\s[^'";]*?\sfrom\s*'(\.[^']+)'/gm)].map((m) => m[1] as string);
}

/** The files of each import circle (strongly connected component of more than one file), each sorted. */
function circles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v) as number);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    for (let w = stack.pop(); w !== undefined; w = w === v ? undefined : stack.pop()) {
      onStack.delete(w);
      scc.push(w);
    }
    if (scc.length > 1) found.push(scc.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('import circles', () => {
  it('no two files in src/ import each other, directly or round a loop', () => {
    const graph = new Map<string, string[]>();
    for (const f of files(SRC)) {
      const deps = staticImports(readFileSync(f, 'utf8')).map((m) => relative(SRC, resolve(dirname(f), m.replace(/\.js$/, '.ts'))));
      graph.set(relative(SRC, f), deps);
    }
    assert.deepEqual(
      circles(graph).map((c) => c.join(' ↔ ')),
      [],
    );
  });

  it('the checker itself finds a circle, type-only and multi-line imports included', () => {
    const a = "import type { B } from './b.js';\nimport {\n  x,\n} from './c.js';\nconst late = await import('./d.js');";
    assert.deepEqual(staticImports(a), ['./b.js', './c.js']);
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts', 'd.ts']],
      ['d.ts', []],
    ]);
    assert.deepEqual(circles(graph), [['a.ts', 'b.ts', 'c.ts']]);
  });
});
