/**
 * The CLI's logger: pino, writing to stderr (stdout is for command output
 * such as links). Two formats:
 *
 *   text (default)  2025-01-02T03:04:05.678Z INFO  session open remote=203.0.113.7:4433 rttMs=41
 *   json            pino's own JSON lines, for log shippers
 *
 * Secrets are never meant to be logged; as a second line of defence, fields
 * named like one (`key`, `password`, `link`, …, top level or one level deep)
 * are replaced with "[redacted]". The text formatter escapes control
 * characters so a peer-supplied string cannot forge extra log lines.
 */
import pino from 'pino';
import type { LogFormat, LogLevel } from '../config/schema.js';

/** Options of {@link createLogger}. */
export interface CreateLoggerInit {
  /** @default 'info' */
  level?: LogLevel;
  /** @default 'text' */
  format?: LogFormat;
  /** Where lines go. @default stderr */
  destination?: { write(line: string): unknown };
}

const SECRET_FIELDS = ['key', 'privateKey', 'credential', 'password', 'token', 'link', 'secret', 'socksAuth'];
/** pino redact paths: the secret names at the top level and one level down. */
export const REDACT_PATHS = [...SECRET_FIELDS, ...SECRET_FIELDS.map((f) => `*.${f}`)];

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** Escapes C0 controls and DEL so one event stays on one line. */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[\x21-\x7e]+$/.test(v) && !v.includes('"') && !v.includes('=') ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v) ?? 'undefined';
}

/** Formats one pino JSON record as a single readable line (with a trailing newline). */
export function formatTextLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`; // not ours: pass it through unchanged
  }
  const time = typeof rec.time === 'number' ? new Date(rec.time).toISOString() : '';
  const level = LEVEL_NAMES[rec.level as number] ?? String(rec.level);
  let line = `${time} ${level} ${clean(typeof rec.msg === 'string' ? rec.msg : '')}`;
  for (const [k, v] of Object.entries(rec)) {
    if (SKIP.has(k)) continue;
    if (k === 'err' && typeof v === 'object' && v !== null) {
      const e = v as { message?: unknown; code?: unknown; type?: unknown };
      line += ` err=${value(String(e.message ?? e.type ?? 'error'))}`;
      if (typeof e.code === 'string') line += ` code=${e.code}`;
      continue;
    }
    line += ` ${clean(k)}=${value(v)}`;
  }
  return `${line}\n`;
}

/** A destination that turns pino's JSON lines into text lines for `out`. */
function textDestination(out: { write(line: string): unknown }): pino.DestinationStream {
  return {
    write(chunk: string) {
      // pino writes one record per call, ending in '\n'.
      for (const rec of chunk.split('\n')) if (rec !== '') out.write(formatTextLine(rec));
    },
  };
}

/**
 * Creates the program's logger. It satisfies src/core/logger.ts's `Logger`,
 * so it is passed down to every layer as is.
 */
export function createLogger(init: CreateLoggerInit = {}): pino.Logger {
  const format = init.format ?? 'text';
  const options: pino.LoggerOptions = {
    level: init.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  // pid and hostname are noise in a terminal; JSON keeps them for aggregation.
  if (format === 'text') options.base = null;
  const out = init.destination ?? process.stderr;
  if (format === 'json') {
    const dest: pino.DestinationStream =
      init.destination === undefined ? pino.destination({ dest: 2, sync: true }) : { write: (s: string) => out.write(s) };
    return pino(options, dest);
  }
  return pino(options, textDestination(out));
}
