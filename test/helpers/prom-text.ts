/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests:
 * it throws on any line Prometheus would reject (and on a few things it
 * tolerates but a well-behaved exporter never writes: a family split in two,
 * a duplicate series, a histogram whose buckets are not cumulative or whose
 * `+Inf` bucket differs from `_count`), so a test that reads a value through
 * it has also checked the whole scrape's syntax.
 */

export type PromType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: PromType;
  help: string | undefined;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<PromType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

class ParseError extends Error {
  constructor(line: number, text: string, why: string) {
    super(`line ${line}: ${why}: ${JSON.stringify(text)}`);
  }
}

/** Go's strconv.ParseFloat as Prometheus uses it: decimal/exponent, ±Inf, NaN. */
function parseValue(s: string): number | undefined {
  if (/^[+-]?inf$/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return NaN;
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/** Reads `{a="x",b="y"}` starting at `s[i] === '{'`; returns the labels and the index after `}`. */
function parseLabels(s: string, i: number, fail: (why: string) => never): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // '{'
  for (;;) {
    if (s[i] === '}') return [labels, i + 1];
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) fail('bad label name');
    const name = m[0];
    i += name.length;
    if (s[i] !== '=' || s[i + 1] !== '"') fail(`label ${name} without ="…"`);
    i += 2;
    let value = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) fail('unterminated label value');
      if (c === '"') break;
      if (c === '\n') fail('raw newline in a label value');
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else fail(`bad escape \\${e ?? ''} in a label value`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++; // closing quote
    if (!LABEL_NAME.test(name) || name.startsWith('__')) fail(`reserved or bad label name ${name}`);
    if (name in labels) fail(`label ${name} twice`);
    labels[name] = value;
    if (s[i] === ',') i++;
    else if (s[i] !== '}') fail('expected , or } after a label');
  }
}

function unescapeHelp(t: string, fail: (why: string) => never): string {
  return t.replace(/\\(.?)/g, (_, e: string) => {
    if (e === '\\') return '\\';
    if (e === 'n') return '\n';
    return fail(`bad escape \\${e} in HELP`);
  });
}

/** The family a sample name belongs to, given the declared types. */
function familyOf(name: string, types: ReadonlyMap<string, PromType>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const t = types.get(base);
    if (t === 'histogram' || (t === 'summary' && suffix !== '_bucket')) return base;
  }
  return name;
}

/** Parses a whole scrape. @throws Error naming the first bad line. */
export function parsePromText(text: string): Map<string, PromFamily> {
  if (text !== '' && !text.endsWith('\n')) throw new Error('the text does not end with a newline');
  const families = new Map<string, PromFamily>();
  const types = new Map<string, PromType>();
  const seen = new Set<string>();
  let current: string | undefined;
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, idx) => {
    const fail = (why: string): never => {
      throw new ParseError(idx + 1, line, why);
    };
    if (line.trim() === '') return;
    const family = (name: string): PromFamily => {
      let f = families.get(name);
      if (!f) {
        f = { name, type: types.get(name) ?? 'untyped', help: undefined, samples: [] };
        families.set(name, f);
      }
      return f;
    };
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name = '', rest = ''] = m;
      if (!METRIC_NAME.test(name)) fail('bad metric name');
      if (kind === 'TYPE') {
        const t = rest.trim() as PromType;
        if (!TYPES.has(t)) fail('unknown type');
        if (types.has(name)) fail('second TYPE line');
        if (families.get(name)?.samples.length) fail('TYPE after samples');
        types.set(name, t);
        family(name).type = t;
      } else {
        const f = family(name);
        if (f.help !== undefined) fail('second HELP line');
        f.help = unescapeHelp(rest, fail);
      }
      return;
    }
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) fail('bad metric name');
    const name = (nm as RegExpExecArray)[0];
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, fail);
    const tail = line.slice(i);
    const vm = /^ +(\S+)(?: +(-?\d+))?$/.exec(tail);
    if (!vm) fail('expected a value (and an optional timestamp) after the name');
    const value = parseValue((vm as RegExpExecArray)[1] as string);
    if (value === undefined) fail('bad value');
    const fam = familyOf(name, types);
    if (fam !== current && families.get(fam)?.samples.length) fail(`samples of ${fam} are not together`);
    current = fam;
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) fail('duplicate series');
    seen.add(key);
    const f = family(fam);
    if (f.type === 'histogram' && name === `${fam}_bucket` && (labels.le === undefined || parseValue(labels.le) === undefined)) fail('a bucket without a numeric le');
    if (f.type === 'counter' && (value as number) < 0) fail('a negative counter');
    f.samples.push({ name, labels, value: value as number });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** Buckets cumulative in `le` order, `+Inf` present and equal to `_count`, per label set. */
function checkHistogram(f: PromFamily): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(k) ?? { buckets: [] };
    groups.set(k, g);
    if (s.name === `${f.name}_bucket`) g.buckets.push([parseValue(le as string) as number, s.value]);
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else if (s.name === `${f.name}_sum`) g.sum = s.value;
  }
  for (const [k, g] of groups) {
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i] as [number, number])[1] < (sorted[i - 1] as [number, number])[1]) throw new Error(`${f.name}${k}: buckets are not cumulative`);
    }
    const inf = sorted.at(-1);
    if (!inf || inf[0] !== Infinity) throw new Error(`${f.name}${k}: no le="+Inf" bucket`);
    if (g.count === undefined || g.sum === undefined) throw new Error(`${f.name}${k}: no _count or _sum`);
    if (inf[1] !== g.count) throw new Error(`${f.name}${k}: +Inf bucket ${inf[1]} differs from _count ${g.count}`);
  }
}

/** The value of `name` whose labels include `labels` (exactly one such series), or undefined. */
export function promValue(families: ReadonlyMap<string, PromFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const fam = families.get(familyOf(name, new Map([...families].map(([n, f]) => [n, f.type]))));
  const hits = (fam?.samples ?? []).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${hits.length} series match`);
  return hits[0]?.value;
}
