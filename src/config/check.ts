/**
 * A small validator toolkit for config trees (parsed YAML merged with flags).
 *
 * A `Check<T>` looks at one value, reports what is wrong through the context
 * and returns the typed value. Checks never throw for bad input: they collect
 * every issue so that `polytun config check` can list them all at once, and
 * `ValidationContext.finish()` throws one ConfigValidationError at the end.
 * What a failed check returns is never used (the caller throws first).
 *
 * Locations come from a {@link SourceMap}: the YAML loader maps a key path to
 * `file:line`, the CLI maps paths it set to the flag that set them. Messages
 * read `client.yaml:7: key 'socks': expected HOST:PORT, got "abc"`.
 */
import { ConfigError } from '../core/errors.js';

/** A key path inside the config tree: `['limits', 'maxSessions']`, `['forwards', 2]`. */
export type ConfigPath = readonly (string | number)[];

/** Where a config value came from, for error messages. */
export interface SourceMap {
  /**
   * The location prefix for an issue at `path`, e.g. `client.yaml:7: key 'socks'`
   * or `--socks`. `onKey` is true when the key itself is at fault (an unknown
   * key), so the map can point at the key's line rather than its value's.
   * Return undefined to fall back to the default (`key 'socks'`).
   */
  locate(path: ConfigPath, onKey: boolean): string | undefined;
}

/** One problem found in a config. */
export interface ConfigIssue {
  /** Location prefix (file:line and key, or the flag). */
  readonly where: string;
  readonly message: string;
}

/**
 * All the problems of one config. `message` lists every issue, one per line;
 * `where` is the first one's (ConfigError's contract).
 */
export class ConfigValidationError extends ConfigError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    const [first, ...rest] = issues;
    const head = first ?? { where: 'config', message: 'invalid' };
    super(head.where, [head.message, ...rest.map((i) => `${i.where}: ${i.message}`)].join('\n'));
    this.issues = issues;
  }
}

/** `limits.maxSessions`, `forwards[2]`, `policy.allow[0]`. */
export function formatPath(path: ConfigPath): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

/** Collects issues while a config tree is checked. */
export class ValidationContext {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly sourceMap?: SourceMap) {}

  /** The location prefix for `path`. */
  where(path: ConfigPath, onKey = false): string {
    const mapped = this.sourceMap?.locate(path, onKey);
    if (mapped !== undefined) return mapped;
    return path.length === 0 ? 'config' : `key '${formatPath(path)}'`;
  }

  /** Records a problem at `path`. */
  issue(path: ConfigPath, message: string, onKey = false): void {
    this.issues.push({ where: this.where(path, onKey), message });
  }

  /** Throws ConfigValidationError when any issue was recorded. */
  finish(): void {
    if (this.issues.length > 0) throw new ConfigValidationError(this.issues);
  }
}

/** Validates one value at `path`; reports problems to `ctx` and returns the typed value. */
export type Check<T> = (value: unknown, path: ConfigPath, ctx: ValidationContext) => T;

/**
 * A short, safe rendering of a bad value for messages. Secrets pass
 * `secret: true` and are never echoed.
 */
export function describe(value: unknown, secret = false): string {
  if (secret) return '<hidden>';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Reports `expected <what>, got <value>` and returns an invalid placeholder. */
export function expected<T>(ctx: ValidationContext, path: ConfigPath, what: string, value: unknown, secret = false): T {
  ctx.issue(path, `expected ${what}, got ${describe(value, secret)}`);
  return undefined as T;
}

/** An integer in [min, max]. */
export function int(min: number, max: number): Check<number> {
  return (v, path, ctx) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return expected(ctx, path, `an integer from ${min} to ${max}`, v);
    }
    return v;
  };
}

/** A boolean (YAML `true`/`false`). */
export const bool: Check<boolean> = (v, path, ctx) => (typeof v === 'boolean' ? v : expected(ctx, path, 'true or false', v));

/** A non-empty string, optionally checked by `test` (which returns an error message or undefined). */
export function str(what = 'a non-empty string', test?: (s: string) => string | undefined, secret = false): Check<string> {
  return (v, path, ctx) => {
    if (typeof v !== 'string' || v === '') return expected(ctx, path, what, v, secret);
    const why = test?.(v);
    if (why !== undefined) ctx.issue(path, why);
    return v;
  };
}

/** One of a fixed set of strings. */
export function oneOf<const T extends string>(values: readonly T[]): Check<T> {
  return (v, path, ctx) =>
    typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : expected(ctx, path, `one of ${values.join(', ')}`, v);
}

/** A list whose items all pass `item`. `min` is the smallest allowed length. */
export function listOf<T>(item: Check<T>, min = 0): Check<T[]> {
  return (v, path, ctx) => {
    if (!Array.isArray(v)) return expected(ctx, path, 'a list', v);
    if (v.length < min) ctx.issue(path, `expected at least ${min} item${min === 1 ? '' : 's'}, got ${v.length}`);
    return v.map((x, i) => item(x, [...path, i], ctx));
  };
}

/** `false`, or a value that passes `check`. */
export function orFalse<T>(check: Check<T>): Check<T | false> {
  return (v, path, ctx) => (v === false ? false : check(v, path, ctx));
}

/** How an object key behaves when it is missing. */
export interface Prop<T> {
  readonly check: Check<unknown>;
  /** Produces the value for a missing key; throws nothing. */
  readonly missing: (path: ConfigPath, ctx: ValidationContext) => T;
}

/** A key that must be present. `hint` says where else it may come from. */
export function required<T>(check: Check<T>, hint = ''): Prop<T> {
  return {
    check,
    missing: (path, ctx) => {
      ctx.issue(path, `is required${hint}`);
      return undefined as T;
    },
  };
}

/** A key with a default. `value` is called per config so defaults are never shared objects. */
export function withDefault<T>(check: Check<T>, value: () => T): Prop<T> {
  return { check, missing: () => value() };
}

/** A key that may be absent (undefined in the typed config). */
export function optional<T>(check: Check<T>): Prop<T | undefined> {
  return { check, missing: () => undefined };
}

type Shape = Record<string, Prop<unknown>>;
/** The typed object a shape describes (every key present; optional ones may be undefined). */
export type ShapeType<S extends Shape> = { -readonly [K in keyof S]: S[K] extends Prop<infer T> ? T : never };

/** Options of {@link object}. */
export interface ObjectOptions {
  /** Keys that belong elsewhere (the other role): key → why, e.g. "is a server setting". */
  readonly misplaced?: Readonly<Record<string, string>>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A mapping with exactly the keys of `shape`; unknown keys are errors with a suggestion. */
export function object<S extends Shape>(shape: S, opts: ObjectOptions = {}): Check<ShapeType<S>> {
  const known = Object.keys(shape);
  return (v, path, ctx) => {
    if (!isPlainObject(v)) return expected(ctx, path, 'a mapping', v);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(v)) {
      if (Object.hasOwn(shape, key)) continue;
      const keyPath = [...path, key];
      const elsewhere = opts.misplaced?.[key];
      if (elsewhere !== undefined) ctx.issue(keyPath, elsewhere, true);
      else {
        const guess = suggest(key, known);
        ctx.issue(keyPath, `unknown key${guess === undefined ? '' : ` (did you mean '${guess}'?)`}`, true);
      }
    }
    for (const key of known) {
      const prop = shape[key] as Prop<unknown>;
      const keyPath = [...path, key];
      out[key] = v[key] === undefined ? prop.missing(keyPath, ctx) : prop.check(v[key], keyPath, ctx);
    }
    return out as ShapeType<S>;
  };
}

/** Edit distance (insert, delete, substitute), two rows of memory. */
export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, sub));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/**
 * The known key closest to `key`, if it is close enough to be a typo.
 * `data-dir`, `data_dir` and `DataDir` all find `dataDir` (separators and
 * case are ignored first); otherwise at most ~a third of the letters may differ.
 */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const norm = (s: string): string => s.replace(/[-_]/g, '').toLowerCase();
  const k = norm(key);
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const cand of known) {
    const d = levenshtein(k, norm(cand));
    if (d < bestD) {
      best = cand;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(k.length / 3)) ? best : undefined;
}
