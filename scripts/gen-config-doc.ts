/**
 * Writes docs/config.md, the YAML key reference, from the config schema itself:
 *
 * - keys, their order and their descriptions come from the typed config
 *   interfaces (ServerConfig, ClientConfig and the interfaces they use, in
 *   src/config/schema.ts, gateway-schema.ts, vpn-schema.ts) and their doc
 *   comments, read with the TypeScript compiler API;
 * - each key's accepted form and its default come from the validator
 *   (`validateConfig`): a probe value shows what the check expects, and a
 *   minimal config shows every default. So the reference cannot claim a
 *   default or a form that the program does not have.
 *
 *   node --import tsx scripts/gen-config-doc.ts          # rewrite docs/config.md
 *   node --import tsx scripts/gen-config-doc.ts --check  # exit 1 when it is stale
 *
 * test/unit/config/config-doc.test.ts fails when the committed file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { ConfigValidationError, validateConfig, type ConfigIssue, type Role } from '../src/config/schema.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CONFIG_DOC_PATH = join(ROOT, 'docs', 'config.md');
const SCHEMA_FILE = join(ROOT, 'src', 'config', 'schema.ts');

/** A well-formed link for the client's minimal config (keys made up; nothing dials it). */
const EXAMPLE_LINK = 'polytun://BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc@vps.example:4433?pk=CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg#default';

/**
 * The smallest config of each role that also switches every optional
 * section on (so their keys show their defaults): only required keys are set.
 */
const MINIMAL: Record<Role, Record<string, unknown>> = {
  server: {
    listen: ['tcp://0.0.0.0:4433'],
    dataDir: '/var/lib/polytun',
    tls: { cert: 'cert.pem', key: 'key.pem' },
    vpn: { pool: '10.8.0.0/24' },
  },
  client: {
    link: EXAMPLE_LINK,
    socksAuth: { username: 'user', password: 'secret' },
    vpn: { enabled: true },
  },
};

/** The interface that describes a section as written in the file, where it differs from the typed config. */
const FILE_FORM: Record<string, string> = { 'client.vpn': 'ClientVpnFile' };

/** Keys of the typed config that are not YAML keys. */
const NOT_KEYS = new Set(['role']);

interface Row {
  key: string;
  form: string;
  dflt: string;
  text: string;
}

/** Validates `raw` for `role` and returns the issues (none when it is valid). */
function issuesOf(raw: unknown, role: Role): readonly ConfigIssue[] {
  try {
    validateConfig(raw, role);
    return [];
  } catch (err) {
    if (err instanceof ConfigValidationError) return err.issues;
    throw err;
  }
}

const clone = <T>(v: T): T => structuredClone(v);

/** `raw` with `value` at `path` (intermediate mappings created); `undefined` deletes the key. */
function withValue(raw: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> {
  const out = clone(raw);
  let node = out;
  for (const p of path.slice(0, -1)) {
    const next = node[p];
    node[p] = typeof next === 'object' && next !== null && !Array.isArray(next) ? next : {};
    node = node[p] as Record<string, unknown>;
  }
  const last = path[path.length - 1] as string;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return out;
}

const whereOf = (path: readonly (string | number)[]): string =>
  `key '${path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('')}'`;

/** What the check at `path` expects, shown by a value that fails every check (a mapping). */
function expectedAt(role: Role, path: readonly string[], probe: unknown, at: readonly (string | number)[]): string | undefined {
  const issue = issuesOf(withValue(MINIMAL[role], path, probe), role).find((i) => i.where === whereOf(at));
  const m = issue === undefined ? undefined : /^expected (.*), got /.exec(issue.message);
  return m?.[1];
}

/** True when `value` at `path` passes the check (no issue at or below the key). */
function accepts(role: Role, path: readonly string[], value: unknown): boolean {
  const where = whereOf(path);
  return !issuesOf(withValue(MINIMAL[role], path, value), role).some((i) => i.where === where || i.where.startsWith(where.slice(0, -1)));
}

/** The accepted form of a leaf key, from the validator. */
function formOf(role: Role, path: readonly string[]): string {
  const what = expectedAt(role, path, {}, path) ?? '?';
  let form = what;
  if (what === 'a list') {
    const item = expectedAt(role, path, [{}], [...path, 0]);
    form = item === undefined ? 'a list' : `a list, each ${item}`;
  }
  if (!/false/.test(form) && accepts(role, path, false)) form += ', or `false` (off)';
  return form;
}

function valueAt(obj: unknown, path: readonly string[]): unknown {
  let v = obj;
  for (const p of path) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[p] : undefined;
  return v;
}

/** A default as one would write it in YAML. */
function yamlOf(v: unknown): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v === '' ? "`''`" : `\`${v}\``;
  if (typeof v === 'number' || typeof v === 'boolean') return `\`${String(v)}\``;
  if (Array.isArray(v)) {
    if (v.length === 0) return '`[]`';
    // A port range list: [[lo, hi], …] is written `lo-hi, …`.
    if (v.every((x) => Array.isArray(x) && x.length === 2 && x.every((n) => typeof n === 'number'))) {
      return `\`${v.map(([lo, hi]: [number, number]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(', ')}\``;
    }
    return `\`[${v.map((x) => yamlOf(x).replace(/`/g, '')).join(', ')}]\``;
  }
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.host === 'string' && typeof o.port === 'number') return `\`${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}\``;
  }
  return `\`${JSON.stringify(v)}\``;
}

/** One paragraph from a doc comment, without its @tags. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|').trim();
}

class SchemaReader {
  private readonly checker: ts.TypeChecker;
  private readonly files: readonly ts.SourceFile[];

  constructor() {
    const program = ts.createProgram([SCHEMA_FILE], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      types: [],
    });
    this.checker = program.getTypeChecker();
    this.files = program.getSourceFiles().filter((f) => f.fileName.includes('/src/config/'));
  }

  /** The declared type of the interface `name` in src/config/. */
  interfaceType(name: string): ts.Type {
    for (const f of this.files) {
      for (const st of f.statements) {
        if (ts.isInterfaceDeclaration(st) && st.name.text === name) return this.checker.getTypeAtLocation(st.name);
      }
    }
    throw new Error(`gen-config-doc: no interface ${name} in src/config/`);
  }

  /** The properties of `type` (undefined removed), in declaration order, bases first. */
  props(type: ts.Type): ts.Symbol[] {
    const t = this.checker.getNonNullableType(type);
    const all = this.checker.getPropertiesOfType(t);
    const pos = (s: ts.Symbol): [string, number] => {
      const d = s.declarations?.[0];
      return d === undefined ? ['', 0] : [d.getSourceFile().fileName, d.getStart()];
    };
    const bases = new Set<ts.Symbol>();
    if (t.isClassOrInterface()) for (const b of this.checker.getBaseTypes(t)) for (const p of this.checker.getPropertiesOfType(b)) bases.add(p);
    const own = all.filter((s) => ![...bases].some((b) => b.name === s.name));
    const inherited = all.filter((s) => !own.includes(s));
    const byPos = (a: ts.Symbol, b: ts.Symbol): number => {
      const [fa, pa] = pos(a);
      const [fb, pb] = pos(b);
      return fa === fb ? pa - pb : fa < fb ? -1 : 1;
    };
    return [...inherited.sort(byPos), ...own.sort(byPos)];
  }

  typeOf(sym: ts.Symbol): ts.Type {
    const decl = sym.valueDeclaration ?? sym.declarations?.[0];
    if (decl === undefined) throw new Error(`gen-config-doc: ${sym.name} has no declaration`);
    return this.checker.getTypeOfSymbolAtLocation(sym, decl);
  }

  doc(sym: ts.Symbol): { text: string; dflt: string | undefined } {
    const text = oneLine(ts.displayPartsToString(sym.getDocumentationComment(this.checker)));
    const tag = sym.getJsDocTags(this.checker).find((t) => t.name === 'default');
    const dflt = tag?.text === undefined ? undefined : oneLine(ts.displayPartsToString(tag.text));
    return { text, dflt };
  }
}

/** Every key of `role`'s config, depth first, in the order of the interfaces. */
function rowsOf(reader: SchemaReader, role: Role, undocumented: string[]): Row[] {
  const defaults = validateConfig(MINIMAL[role], role) as unknown;
  const rows: Row[] = [];
  const walk = (type: ts.Type, path: string[]): void => {
    for (const sym of reader.props(type)) {
      if (path.length === 0 && NOT_KEYS.has(sym.name)) continue;
      const keyPath = [...path, sym.name];
      const key = keyPath.join('.');
      const { text, dflt: docDefault } = reader.doc(sym);
      const isLeaf = expectedAt(role, keyPath, {}, keyPath) !== undefined;
      const required = valueAt(MINIMAL[role], keyPath) !== undefined
        && issuesOf(withValue(MINIMAL[role], keyPath, undefined), role).some((i) => i.where === whereOf(keyPath) && i.message.startsWith('is required'));
      if (!isLeaf) {
        const fileForm = FILE_FORM[`${role}.${key}`];
        // A section without a comment of its own takes its interface's (`reverse: ReverseConfig`).
        const typeSym = reader.typeOf(sym).getNonNullableType().aliasSymbol ?? reader.typeOf(sym).getNonNullableType().getSymbol();
        const own = text !== '' || typeSym === undefined ? text : reader.doc(typeSym).text;
        // "Server `limits:`." / "`log:` — where…": the key is in the row already.
        const sectionText = own.replace(/^(Server |Client )?`[A-Za-z]+:`(\.\s*| — )/, '').replace(/^./, (c) => c.toUpperCase());
        rows.push({ key, form: 'a mapping', dflt: required ? 'required' : '', text: sectionText });
        walk(fileForm === undefined ? reader.typeOf(sym) : reader.interfaceType(fileForm), keyPath);
        continue;
      }
      const runtime = required ? undefined : valueAt(defaults, keyPath);
      const dflt = required ? 'required' : runtime !== undefined ? yamlOf(runtime) : docDefault !== undefined ? docDefault : 'none';
      if (text === '') undocumented.push(`${role} ${key}`);
      rows.push({ key, form: formOf(role, keyPath), dflt, text });
    }
  };
  walk(reader.interfaceType(role === 'server' ? 'ServerConfig' : 'ClientConfig'), []);
  return rows;
}

function table(rows: readonly Row[]): string {
  const lines = ['| key | accepts | default | what it does |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| \`${r.key}\` | ${r.form.replace(/\|/g, '\\|')} | ${r.dflt} | ${r.text} |`);
  return lines.join('\n');
}

/** The whole of docs/config.md. */
export function renderConfigDoc(): string {
  const reader = new SchemaReader();
  const undocumented: string[] = [];
  const server = table(rowsOf(reader, 'server', undocumented));
  const client = table(rowsOf(reader, 'client', undocumented));
  if (undocumented.length > 0) {
    throw new Error(`gen-config-doc: keys without a description (add a doc comment to the property in src/config/): ${undocumented.join(', ')}`);
  }
  return [
    '# Config file reference',
    '',
    '<!-- Generated by `node --import tsx scripts/gen-config-doc.ts` from src/config/ (descriptions: the',
    '     doc comments of the config interfaces; forms and defaults: the validator). Do not edit by hand. -->',
    '',
    'A config file is YAML, one file per role, flat at the top level. Every flag has a key and',
    'flags override the file (`--config FILE`); any key can also be set with `--set key.path=VALUE`.',
    '`polytun config check FILE` validates a file and names the file, line and key of each problem.',
    'Unknown keys are errors, with a suggestion when one is close.',
    '',
    '```yaml',
    '# server.yaml                              # client.yaml',
    'listen: [tcp://0.0.0.0:4433]               # link: polytun://…@vps.example:4433?pk=…',
    'dataDir: /var/lib/polytun                  # socks: 127.0.0.1:1080',
    'policy: { allow: [10.0.0.5:22] }           # forwards: [2222:10.0.0.5:22]',
    '```',
    '',
    '"none" means the key is off or unset when absent. Durations are in milliseconds, sizes in bytes.',
    '',
    '## Server (`polytun server --config FILE`)',
    '',
    server,
    '',
    '## Client (`polytun client --config FILE`)',
    '',
    client,
    '',
  ].join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = renderConfigDoc();
  if (process.argv.includes('--check')) {
    let old = '';
    try {
      old = readFileSync(CONFIG_DOC_PATH, 'utf8');
    } catch {
      // a missing file is stale too
    }
    if (old !== text) {
      console.error('docs/config.md is stale: run node --import tsx scripts/gen-config-doc.ts');
      process.exit(1);
    }
    console.log('docs/config.md is up to date');
  } else {
    writeFileSync(CONFIG_DOC_PATH, text);
    console.log(`wrote ${CONFIG_DOC_PATH}`);
  }
}
