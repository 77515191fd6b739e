/**
 * `polytun status`: asks a running client's local status endpoint and prints
 * a readable summary (or the raw JSON with --json).
 */
import { request } from 'node:http';
import type { Command } from 'commander';
import { ConfigError, PolytunError } from '../core/errors.js';
import { formatHostPort, parseHostPort } from '../core/address.js';
import { DEFAULTS } from '../config/schema.js';
import type { HostPort } from '../config/values.js';
import type { CliIo } from './io.js';
import type { StatusReport } from '../observe/status.js';

/** Status answers are small; cap what we read from whoever listens there. */
const MAX_BODY = 1 << 20;

/** No status endpoint answered, or it answered nonsense. */
export class StatusUnavailableError extends PolytunError {
  constructor(message: string) {
    super('ERR_STATUS_UNAVAILABLE', message);
  }
}

/** GETs http://HOST:PORT/status and parses the JSON. */
export function fetchStatus(at: HostPort, timeoutMs: number): Promise<unknown> {
  const where = formatHostPort(at);
  return new Promise((resolve, reject) => {
    const req = request({ host: at.host, port: at.port, path: '/status', method: 'GET', timeout: timeoutMs, headers: { host: where } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) res.destroy(new StatusUnavailableError(`status answer from ${where} is larger than ${MAX_BODY} bytes`));
        else chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new StatusUnavailableError(`status endpoint ${where} answered HTTP ${res.statusCode ?? '?'}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new StatusUnavailableError(`status endpoint ${where} did not answer JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new StatusUnavailableError(`status endpoint ${where} did not answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof PolytunError) return reject(err);
      const why = err.code === 'ECONNREFUSED' ? 'nothing is listening there' : err.message;
      reject(new StatusUnavailableError(`no status from ${where}: ${why} (is \`polytun client\` running, with this --status address?)`));
    });
    req.end();
  });
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i] ?? ''}`;
}

/** 75_000 → "1 min 15 s"; 7_500_000 → "2 h 5 min". */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v.replace(/[\x00-\x1f\x7f]/g, '?') : undefined); // eslint-disable-line no-control-regex

/** A readable multi-line summary of a status answer; unknown or missing fields are skipped. */
export function formatStatus(raw: unknown, now = Date.now()): string {
  const s = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<keyof StatusReport, unknown>;
  const rows: [string, string][] = [];
  rows.push(['state', text(s.state) ?? 'unknown']);
  const server = text(s.server);
  if (server !== undefined) rows.push(['server', `${server}${text(s.carrier) ? ` (${text(s.carrier)})` : ''}`]);
  const cipher = text(s.cipher);
  if (cipher !== undefined) rows.push(['cipher', cipher]);
  const since = text(s.since);
  const t = since === undefined ? NaN : Date.parse(since);
  const age = num(s.sessionAgeMs);
  // The current session's age: the client's own count when it sent one (its clock), else from `since`.
  if (age !== undefined) rows.push(['session', `${formatAge(age)} old (since ${since ?? '?'})`]);
  else if (!Number.isNaN(t)) rows.push(['since', `${since} (${Math.max(0, Math.round((now - t) / 1000))} s ago)`]);
  const rtt = num(s.rttMs);
  rows.push(['rtt', rtt === undefined ? 'not measured yet' : `${rtt.toFixed(rtt < 10 ? 1 : 0)} ms`]);
  const sent = num(s.bytesSent);
  const received = num(s.bytesReceived);
  // Stream bytes and UDP payload together; the datagrams are also shown on their own.
  const udpOut = num(s.udpDatagramsSent);
  const udpIn = num(s.udpDatagramsReceived);
  const udpBytesOut = num(s.udpBytesSent) ?? 0;
  const udpBytesIn = num(s.udpBytesReceived) ?? 0;
  if (sent !== undefined || received !== undefined || udpOut !== undefined) {
    const udp = udpOut === undefined && udpIn === undefined ? '' : `; udp: sent ${udpOut ?? 0} datagrams (${formatBytes(udpBytesOut)}), received ${udpIn ?? 0} (${formatBytes(udpBytesIn)})`;
    rows.push(['traffic', `sent ${formatBytes((sent ?? 0) + udpBytesOut)}, received ${formatBytes((received ?? 0) + udpBytesIn)}${udp}`]);
  }
  const streams = num(s.streams);
  if (streams !== undefined) rows.push(['streams', `${streams} open`]);
  const reconnects = num(s.reconnects);
  const resumes = num(s.resumes);
  const fresh = num(s.newSessions);
  if (reconnects !== undefined) {
    const parts = resumes !== undefined && fresh !== undefined ? ` (${resumes} resumed, ${fresh} new session${fresh === 1 ? '' : 's'})` : '';
    rows.push(['reconnects', `${reconnects}${parts}`]);
  }
  if (Array.isArray(s.fronts) && s.fronts.length > 0) {
    const fronts = s.fronts.map((f: unknown) => {
      const r = (f ?? {}) as Record<string, unknown>;
      return `${text(r.kind) ?? '?'} ${text(r.listen) ?? '?'}`;
    });
    rows.push(['fronts', fronts.join(', ')]);
  }
  const paths = (s as Record<string, unknown>).paths;
  if (Array.isArray(paths) && paths.length > 0) {
    paths.forEach((p: unknown, i: number) => {
      const r = (p ?? {}) as Record<string, unknown>;
      const prtt = num(r.rttMs);
      const rate = num(r.rateBytesPerSec);
      rows.push([
        `path ${i + 1}`,
        `${text(r.label) ?? '?'} ${text(r.role) ?? ''} ${text(r.state) ?? ''}, rtt ${prtt === undefined ? '-' : `${prtt.toFixed(1)} ms`}, ` +
          `${rate === undefined ? '' : `${formatBytes(rate)}/s, `}sent ${formatBytes(num(r.bytesSent) ?? 0)}, received ${formatBytes(num(r.bytesReceived) ?? 0)}, missed pings ${num(r.pingsMissed) ?? 0}` +
          `${text(r.protection) === 'tls-bound' ? ', records in end-to-end TLS' : ''}`,
      ]);
      const t = r.transport as Record<string, unknown> | undefined;
      if (t !== undefined && t !== null && typeof t === 'object') rows.push([`  ${text(r.carrier) ?? 'transport'}`, transportLine(t)]);
    });
  }
  const last = text(s.lastError);
  if (last !== undefined) rows.push(['last error', last]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}\n`).join('');
}

/** A udp path's transport figures on one line: what a user tunes a lossy path by. */
function transportLine(t: Record<string, unknown>): string {
  const n = (k: string): number => num(t[k]) ?? 0;
  const pacing = num(t.pacingBytesPerSec);
  const pct = (x: number): string => `${(x * 100).toFixed(x < 0.1 ? 2 : 1)} %`;
  return (
    `${text(t.cc) ?? '?'}, rtt ${n('rttMs').toFixed(1)} ms (min ${n('minRttMs').toFixed(1)}), cwnd ${formatBytes(n('cwndBytes'))}, ` +
    `pacing ${pacing === undefined || !Number.isFinite(pacing) ? 'off' : `${formatBytes(pacing)}/s`}, ` +
    `loss ${pct(n('lossRate'))} (${n('packetsLost')} of ${n('packetsSent')} packets, ${n('spuriousLosses')} spurious), ` +
    `resent ${formatBytes(n('retransmittedBytes'))}, wire/useful ${n('wirePerUseful').toFixed(3)}, mtu ${n('mtu')}`
  );
}

/** Adds `polytun status` to `program`. */
export function registerStatusCommand(program: Command, io: CliIo): Command {
  return program
    .command('status')
    .description("show a running client's state: session, RTT, bytes, open streams")
    .option('--status <host:port>', "the client's status endpoint", DEFAULTS.status)
    .option('--json', 'print the raw JSON answer')
    .option('--timeout <ms>', 'give up after this long', '3000')
    .action(async (opts: { status: string; json?: boolean; timeout: string }) => {
      let at: HostPort;
      try {
        const d = parseHostPort(opts.status);
        at = { host: d.host, port: d.port };
      } catch {
        throw new ConfigError('--status', `expected HOST:PORT, got ${JSON.stringify(opts.status)}`);
      }
      const timeout = Number(opts.timeout);
      if (!Number.isInteger(timeout) || timeout < 1) throw new ConfigError('--timeout', `expected a positive number of ms, got ${JSON.stringify(opts.timeout)}`);
      const status = await fetchStatus(at, timeout);
      io.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
    });
}
