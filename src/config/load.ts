/**
 * Reading config files and merging command-line flags over them.
 *
 * The YAML is parsed with the `yaml` package's Document API so every node
 * keeps its source range: a bad value is reported at its own line
 * (`client.yaml:7: key 'socks': …`), an unknown key at the key's line, a
 * missing key at its parent mapping's line. Flags are laid over the file's
 * tree before validation, and issues on a value a flag set name the flag.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError } from '../core/errors.js';
import { ConfigValidationError, formatPath, type ConfigIssue, type ConfigPath, type SourceMap } from './check.js';
import { validateConfig, type ConfigFor, type Role } from './schema.js';

/** Config files are a few hundred bytes; anything near this is a wrong file. */
const MAX_CONFIG_BYTES = 1 << 20;
/** Keys holding file paths, resolved against the config file's folder. */
const PATH_KEYS: readonly ConfigPath[] = [['dataDir'], ['tls', 'cert'], ['tls', 'key'], ['ui', 'passwordFile'], ['ui', 'history']];

/** A parsed config file: its raw tree and where each value sits in it. */
export interface ConfigSource {
  /** The file name as given (used in messages). */
  readonly file: string;
  /** The parsed tree (plain objects, arrays, scalars), path keys resolved. */
  readonly raw: unknown;
  readonly sourceMap: SourceMap;
}

/** One value set on the command line, at its config path. */
export interface FlagValue {
  readonly path: ConfigPath;
  readonly value: unknown;
  /** How issues name it: `--socks`, `--set limits.maxSessions`. */
  readonly flag: string;
}

/** Maps config paths to `file:line: key '…'` through the YAML document's node ranges. */
class YamlSourceMap implements SourceMap {
  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  locate(path: ConfigPath, onKey: boolean): string {
    const key = path.length === 0 ? '' : ` key '${formatPath(path)}'`;
    const line = this.lineOf(path, onKey);
    const at = line === undefined ? this.file : `${this.file}:${line}`;
    return key === '' ? at : `${at}:${key}`;
  }

  /** Line of the node at `path`, or of the deepest mapping/list on the way (a missing key's parent). */
  private lineOf(path: ConfigPath, onKey: boolean): number | undefined {
    let node: unknown = this.doc.contents;
    let lastRange: [number, number, number] | undefined;
    for (const [i, seg] of path.entries()) {
      if (isAlias(node)) node = node.resolve(this.doc);
      const range = (node as Node | null)?.range;
      if (range) lastRange = range;
      let next: unknown;
      if (isMap(node) && typeof seg === 'string') {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === seg);
        if (pair && onKey && i === path.length - 1) next = pair.key;
        else next = pair?.value;
      } else if (isSeq(node) && typeof seg === 'number') next = node.items[seg];
      // A missing key: point at its parent mapping (no line for a missing top-level key).
      if (next === undefined || next === null) return i === 0 ? undefined : this.line(lastRange);
      node = next;
    }
    if (isAlias(node)) node = node.resolve(this.doc);
    return this.line((node as Node | null)?.range ?? lastRange);
  }

  private line(range: [number, number, number] | undefined): number | undefined {
    return range === undefined ? undefined : this.lines.linePos(range[0]).line;
  }
}

function getIn(obj: unknown, path: ConfigPath): unknown {
  let cur = obj;
  for (const seg of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Resolves the relative file paths of a tree against `baseDir` (in place). */
function resolvePaths(raw: unknown, baseDir: string): void {
  for (const path of PATH_KEYS) {
    const parent = getIn(raw, path.slice(0, -1));
    const key = path[path.length - 1] as string;
    if (isRecord(parent) && typeof parent[key] === 'string' && parent[key] !== '' && !isAbsolute(parent[key])) {
      parent[key] = resolve(baseDir, parent[key]);
    }
  }
}

/**
 * Parses config text. `file` names the source in messages; relative paths in
 * the tree are resolved against `baseDir` when given.
 * @throws ConfigValidationError for YAML syntax errors (with line numbers).
 */
export function parseConfigText(text: string, file: string, baseDir?: string): ConfigSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    const issues: ConfigIssue[] = problems.map((e) => {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      return { where: `${file}:${pos.line}`, message: `YAML: ${e.message.split('\n')[0] ?? e.message}` };
    });
    throw new ConfigValidationError(issues);
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (baseDir !== undefined) resolvePaths(raw, baseDir);
  return { file, raw: raw ?? {}, sourceMap: new YamlSourceMap(file, doc, lines) };
}

/**
 * Reads and parses a config file (no validation yet: merge flags, then call
 * {@link validateConfig}). Relative paths inside resolve against the file's folder.
 * @throws ConfigError naming the file when it cannot be read or parsed.
 */
export async function readConfigFile(file: string): Promise<ConfigSource> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > MAX_CONFIG_BYTES) throw new ConfigError(file, `config file is larger than ${MAX_CONFIG_BYTES} bytes`);
    text = buf.toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new ConfigError(file, `cannot read config file: ${why}`);
  }
  return parseConfigText(text, file, dirname(resolve(file)));
}

/**
 * Reads, parses and validates a config file for `role`.
 * @throws ConfigError / ConfigValidationError naming the file, line and key.
 */
export async function loadConfig<R extends Role>(file: string, role: R): Promise<ConfigFor<R>> {
  const src = await readConfigFile(file);
  return validateConfig(src.raw, role, src.sourceMap);
}

function setIn(root: Record<string, unknown>, path: ConfigPath, value: unknown): void {
  let cur: Record<string, unknown> = root;
  for (const seg of path.slice(0, -1)) {
    const k = String(seg);
    if (!isRecord(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[String(path[path.length - 1])] = value;
}

function startsWith(path: ConfigPath, prefix: ConfigPath): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => path[i] === p);
}

/**
 * Lays `flags` over the file's tree (a flag replaces the value at its path,
 * lists included) and returns the merged tree with a source map that names
 * the flag for the values flags set and the file for the rest.
 */
export function mergeFlags(source: ConfigSource | undefined, flags: readonly FlagValue[]): { raw: unknown; sourceMap: SourceMap } {
  const base: unknown = source === undefined ? {} : structuredClone(source.raw);
  const root: Record<string, unknown> = isRecord(base) ? base : {};
  for (const f of flags) setIn(root, f.path, f.value);
  const sourceMap: SourceMap = {
    locate(path, onKey) {
      let best: FlagValue | undefined;
      for (const f of flags) if (startsWith(path, f.path) && (best === undefined || f.path.length > best.path.length)) best = f;
      if (best !== undefined) return best.flag;
      // A key the file does not have was created by a flag below it (`--set lmits.x=1` → 'lmits').
      if (source === undefined || getIn(source.raw, path) === undefined) {
        const creator = flags.find((f) => startsWith(f.path, path));
        if (creator !== undefined) return creator.flag;
      }
      return source?.sourceMap.locate(path, onKey);
    },
  };
  // A non-mapping file root is reported by validation when no flag replaced it.
  return { raw: isRecord(base) || flags.length > 0 ? root : base, sourceMap };
}
