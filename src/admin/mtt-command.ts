/**
 * The command format of mos-tls-tunnel's `mtt-mu-server` controller, decoded
 * the way its Go server does (encoding/json into a struct):
 *
 *   request   { "opt": 1|2|3|9, "args_bunch": [ { "path": "/p", "dst": "host:port" }, … ] }
 *   reply     { "res": 1|2, "err_string": "…", "current_users": N }
 *
 * Go details kept: keys match case-insensitively ("OPT" is opt), unknown keys
 * are ignored, `null` anywhere leaves the zero value (so a `null` body is
 * opt 0, an invalid opt), a duplicate key's last value wins. Where mtt stores
 * whatever it got, polytun checks `path` and `dst` first and refuses the
 * whole command (res 2, nothing applied) naming the first bad entry.
 */
import { formatHostPort, parseHostPort } from '../core/address.js';
import { AdminInputError } from './types.js';

/** mtt's opt values. */
export const Opt = { add: 1, del: 2, reset: 3, ping: 9 } as const;
/** mtt's res values. */
export const Res = { ok: 1, err: 2 } as const;

/** A controller reply, field names and order as mtt writes them. */
export interface MuResult {
  readonly res: 1 | 2;
  readonly err_string: string;
  readonly current_users: number;
}

/** One checked `args_bunch` entry; `dst` normalized (`host:port`, IPv6 bracketed), absent for deletes. */
export interface MuArg {
  readonly path: string;
  readonly dst?: string;
}

/** A decoded, checked command. For add and del, `args` has one entry per path (the last one given wins). */
export type MuCommand = { readonly opt: 1 | 2; readonly args: readonly MuArg[] } | { readonly opt: 3 | 9 };

// The user store's rule for a WSS path: RFC 3986 unreserved and sub-delims plus '/', ':', '@', '%'.
const PATH_RE = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;
const MAX_PATH = 256;

/** `obj[name]` with Go's case-insensitive key match (an exact match is preferred). */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name];
  let found: unknown;
  for (const k of Object.keys(obj)) if (k.toLowerCase() === name) found = obj[k];
  return found;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalString(v: unknown, where: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new AdminInputError(where, 'expected a string');
  return v;
}

function checkPath(path: string, where: string): string {
  if (path === '') throw new AdminInputError(where, 'path is required');
  if (path.length > MAX_PATH || !PATH_RE.test(path)) {
    throw new AdminInputError(where, `bad path (starts with '/', at most ${MAX_PATH} URL path characters, no query or fragment)`);
  }
  return path;
}

function checkDst(dst: string, where: string): string {
  if (dst === '') throw new AdminInputError(where, 'dst is required');
  try {
    return formatHostPort(parseHostPort(dst));
  } catch (err) {
    throw new AdminInputError(where, `bad dst: ${(err as Error).message}`);
  }
}

/**
 * Decodes and checks a controller request body.
 * @throws AdminInputError naming what is wrong (its message goes to `err_string`).
 */
export function decodeCommand(body: string): MuCommand {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch (err) {
    throw new AdminInputError('body', `invalid json: ${(err as Error).message}`);
  }
  if (data !== null && !isObject(data)) throw new AdminInputError('body', 'invalid json: expected an object');
  const root = data ?? {};
  const optRaw = field(root, 'opt');
  let opt = 0;
  if (optRaw !== undefined && optRaw !== null) {
    if (typeof optRaw !== 'number' || !Number.isSafeInteger(optRaw)) throw new AdminInputError('opt', 'expected an integer');
    opt = optRaw;
  }
  if (opt === Opt.reset || opt === Opt.ping) return { opt };
  if (opt !== Opt.add && opt !== Opt.del) throw new AdminInputError('opt', 'invalid opt');

  const bunch = field(root, 'args_bunch');
  if (bunch !== undefined && bunch !== null && !Array.isArray(bunch)) throw new AdminInputError('args_bunch', 'expected an array');
  const list: unknown[] = bunch ?? [];
  if (list.length === 0) throw new AdminInputError('args_bunch', 'empty args');
  const byPath = new Map<string, MuArg>();
  list.forEach((entry, i) => {
    const where = `args_bunch[${i}]`;
    if (entry !== null && !isObject(entry)) throw new AdminInputError(where, 'expected an object');
    const e = entry ?? {};
    const path = checkPath(optionalString(field(e, 'path'), `${where}.path`), `${where}.path`);
    byPath.delete(path); // re-inserted below: the last occurrence decides the order too
    if (opt === Opt.del) byPath.set(path, { path });
    else byPath.set(path, { path, dst: checkDst(optionalString(field(e, 'dst'), `${where}.dst`), `${where}.dst`) });
  });
  return { opt, args: [...byPath.values()] };
}
