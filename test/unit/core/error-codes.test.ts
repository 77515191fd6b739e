import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CODE_FAMILY_CLASSES, ERROR_CODES } from '../../../src/core/error-codes.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every `class X extends …Error` (or extends PolytunError) in the tree, with the codes its own constructor passes up. */
function errorClasses(): Map<string, { file: string; codes: string[] }> {
  const out = new Map<string, { file: string; codes: string[] }>();
  for (const file of [...sources('src'), ...sources('bench'), ...sources('test/lab')]) {
    const text = readFileSync(file, 'utf8');
    const re = /class (\w+) extends (\w+)\b[^{]*\{/g;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const [, name, base] = m as unknown as [string, string, string];
      if (!/Error$/.test(base) && base !== 'Undecodable') continue;
      // The class body up to the next top-level class or export: enough to find its super('ERR_…') or code field.
      const body = text.slice(m.index, text.indexOf('\n}\n', m.index) + 2);
      const codes = [...body.matchAll(/super\(\s*'(ERR_[A-Z0-9_]+)'|readonly code = '(ERR_[A-Z0-9_]+)'/g)].map((c) => (c[1] ?? c[2]) as string);
      assert.ok(!out.has(name), `two error classes named ${name} (${out.get(name)?.file} and ${file})`);
      out.set(name, { file: file.slice(root.length), codes });
    }
  }
  return out;
}

describe('the error catalogue (core/error-codes.ts)', () => {
  const classes = errorClasses();
  const catalogued = new Map<string, string[]>();
  for (const [code, entry] of Object.entries(ERROR_CODES)) for (const c of entry.classes) catalogued.set(c, [...(catalogued.get(c) ?? []), code]);

  it('finds the error classes (the scan itself works)', () => {
    assert.ok(classes.size >= 30, `only ${classes.size} error classes found`);
    assert.deepEqual(classes.get('DialError')?.codes, ['ERR_DIAL']);
  });

  it('lists every error class in src/, bench/ and test/lab/', () => {
    const missing = [...classes.keys()].filter((c) => !catalogued.has(c) && !(CODE_FAMILY_CLASSES as readonly string[]).includes(c));
    assert.deepEqual(missing, [], 'add these classes to ERROR_CODES');
  });

  it('every code a class passes up is the one the catalogue gives it', () => {
    for (const [name, { file, codes }] of classes) {
      for (const code of codes) assert.ok(catalogued.get(name)?.includes(code), `${name} (${file}) uses ${code}, catalogued as ${catalogued.get(name)?.join(', ')}`);
    }
  });

  it('no two classes pass up the same code (a code names one kind of failure)', () => {
    const owner = new Map<string, string>();
    for (const [name, { codes }] of classes) {
      for (const code of codes) {
        assert.ok(!owner.has(code) || owner.get(code) === name, `${code} is used by both ${owner.get(code)} and ${name}`);
        owner.set(code, name);
      }
    }
  });

  it('names no class that does not exist', () => {
    const gone = [...catalogued.keys()].filter((c) => !classes.has(c));
    assert.deepEqual(gone, []);
  });
});
