/**
 * The command format of mos-tls-tunnel's `mtt-mu-server` controller, decoded
 * exactly as its Go server decodes it (`json.Unmarshal` into
 * `struct { Opt int; ArgsBunch []struct{ Path, Dst string } }`) and answered
 * as it answers (`json.Marshal` of a struct whose three fields are all
 * `omitempty`):
 *
 *   request   { "opt": 1|2|3|9, "args_bunch": [ { "path": "/p", "dst": "host:port" }, … ] }
 *   reply     {"res":1}  {"res":1,"current_users":2}  {"res":2,"err_string":"invalid opt"}
 *
 * Go details kept, because a panel could tell them apart: keys match
 * case-insensitively ("OPT" is opt), unknown keys are ignored, `null`
 * leaves the zero value (a `null` body is opt 0, an invalid opt), the last
 * of duplicate keys wins. A value of the wrong type — `"opt":"1"`, and also
 * `"opt":3.0` or `1e0` (Go's int decoding refuses a fraction or exponent),
 * or an opt outside int64 — makes the whole body fail to decode, and so
 * does any syntax error or trailing garbage: mtt then answers nothing (an
 * empty 200). That is {@link Undecodable}.
 *
 * Nothing else is checked here: mtt stores any path and any dst it is given
 * (mtt-apply.ts decides what polytun can serve).
 */

/** mtt's opt values. */
export const Opt = { add: 1, del: 2, reset: 3, ping: 9 } as const;
/** mtt's res values. */
export const Res = { ok: 1, err: 2 } as const;

/** A controller reply; zero fields are left out on the wire (omitempty). */
export interface MuResult {
  readonly res: 1 | 2;
  readonly err_string?: string;
  readonly current_users?: number;
}

/** One `args_bunch` entry as Go decodes it: absent or null strings are ''. */
export interface MuArg {
  readonly path: string;
  readonly dst: string;
}

/** A decoded command. `opt` is any int64 (as a JS number; only the four known values matter). */
export interface MuCommand {
  readonly opt: number;
  readonly args: readonly MuArg[];
}

/** The body did not unmarshal: mtt logs it and answers an empty 200. */
export class Undecodable extends Error {
  readonly code = 'ERR_MTT_UNDECODABLE';
}

/**
 * `json.Marshal` of mtt's MURes: fields in declaration order, each left out
 * when zero. err_string values are fixed ASCII phrases, but escaped as Go
 * escapes strings anyway (`<`, `>`, `&`, U+2028/9 as \u escapes).
 */
export function encodeResult(r: MuResult): string {
  let out = `{"res":${r.res}`;
  if (r.err_string !== undefined && r.err_string !== '') out += `,"err_string":${goString(r.err_string)}`;
  if (r.current_users !== undefined && r.current_users !== 0) out += `,"current_users":${r.current_users}`;
  return `${out}}`;
}

function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// ---- a JSON reader that keeps numbers as their source text ----

type JVal =
  | { readonly t: 'null' | 'bool' }
  | { readonly t: 'num'; readonly raw: string }
  | { readonly t: 'str'; readonly v: string }
  | { readonly t: 'arr'; readonly items: JVal[] }
  | { readonly t: 'obj'; readonly entries: [string, JVal][] };

/** Go's json nesting limit. */
const MAX_DEPTH = 10000;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings
const STRING = /"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

class Reader {
  private i = 0;
  constructor(private readonly s: string) {}

  fail(): never {
    throw new Undecodable(`invalid json at offset ${this.i}`);
  }

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.i++;
    }
  }

  end(): void {
    this.ws();
    if (this.i !== this.s.length) this.fail();
  }

  private match(re: RegExp): string {
    re.lastIndex = this.i;
    const m = re.exec(this.s);
    if (m === null) this.fail();
    this.i = re.lastIndex;
    return m[0];
  }

  private word(w: string): void {
    if (!this.s.startsWith(w, this.i)) this.fail();
    this.i += w.length;
  }

  value(depth: number): JVal {
    if (depth > MAX_DEPTH) this.fail();
    this.ws();
    const c = this.s[this.i];
    switch (c) {
      case '{': {
        this.i++;
        const entries: [string, JVal][] = [];
        this.ws();
        if (this.s[this.i] === '}') {
          this.i++;
          return { t: 'obj', entries };
        }
        for (;;) {
          this.ws();
          const key = JSON.parse(this.match(STRING)) as string;
          this.ws();
          if (this.s[this.i++] !== ':') this.fail();
          entries.push([key, this.value(depth + 1)]);
          this.ws();
          const sep = this.s[this.i++];
          if (sep === '}') return { t: 'obj', entries };
          if (sep !== ',') this.fail();
        }
      }
      case '[': {
        this.i++;
        const items: JVal[] = [];
        this.ws();
        if (this.s[this.i] === ']') {
          this.i++;
          return { t: 'arr', items };
        }
        for (;;) {
          items.push(this.value(depth + 1));
          this.ws();
          const sep = this.s[this.i++];
          if (sep === ']') return { t: 'arr', items };
          if (sep !== ',') this.fail();
        }
      }
      case '"':
        return { t: 'str', v: JSON.parse(this.match(STRING)) as string };
      case 't':
        this.word('true');
        return { t: 'bool' };
      case 'f':
        this.word('false');
        return { t: 'bool' };
      case 'n':
        this.word('null');
        return { t: 'null' };
      default:
        return { t: 'num', raw: this.match(NUMBER) };
    }
  }
}

/** Go's case folding of field names: ASCII case, plus the Kelvin sign and long s that fold to k and s. */
function fold(k: string): string {
  return k.replace(/\u212a/g, 'k').replace(/\u017f/g, 's').toLowerCase();
}

/** Which struct field a key lands in, as Go picks it (an exact name first, else a case-insensitive one). */
function fieldOf(key: string, fields: readonly string[]): string | undefined {
  if (fields.includes(key)) return key;
  const f = fold(key);
  return fields.find((name) => name === f);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Decoding into `int`: null keeps the old value; only an integer literal in int64 range fits. */
function intInto(v: JVal, old: number): number {
  if (v.t === 'null') return old;
  if (v.t !== 'num' || !/^-?\d+$/.test(v.raw)) throw new Undecodable('opt: cannot unmarshal into int');
  const n = BigInt(v.raw);
  if (n < INT64_MIN || n > INT64_MAX) throw new Undecodable('opt: out of int range');
  return Number(n);
}

function stringInto(v: JVal, old: string): string {
  if (v.t === 'null') return old;
  if (v.t !== 'str') throw new Undecodable('cannot unmarshal into string');
  return v.v;
}

function argInto(v: JVal): MuArg {
  let path = '';
  let dst = '';
  if (v.t === 'null') return { path, dst };
  if (v.t !== 'obj') throw new Undecodable('args_bunch entry: cannot unmarshal into Args');
  for (const [k, x] of v.entries) {
    const f = fieldOf(k, ['path', 'dst']);
    if (f === 'path') path = stringInto(x, path);
    else if (f === 'dst') dst = stringInto(x, dst);
  }
  return { path, dst };
}

/**
 * Decodes a controller request body as mtt's Go server does.
 * @throws Undecodable when Go's json.Unmarshal would fail (mtt: empty 200).
 */
export function decodeCommand(body: string): MuCommand {
  const r = new Reader(body);
  const root = r.value(0);
  r.end();
  let opt = 0;
  let args: MuArg[] = [];
  if (root.t === 'null') return { opt, args };
  if (root.t !== 'obj') throw new Undecodable('cannot unmarshal into MUCmd');
  // Go goes on after a type error and reports it at the end; the outcome is the same failure.
  for (const [k, v] of root.entries) {
    const f = fieldOf(k, ['opt', 'args_bunch']);
    if (f === 'opt') opt = intInto(v, opt);
    else if (f === 'args_bunch') {
      if (v.t === 'null') args = [];
      else if (v.t === 'arr') args = v.items.map(argInto);
      else throw new Undecodable('args_bunch: cannot unmarshal into []Args');
    }
  }
  return { opt, args };
}
