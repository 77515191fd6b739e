/**
 * Provisioning, the client's side (`polytun client --provision
 * https://USER:PASS@HOST:PORT[/?fp=PIN]`, and the setup wizard): logs in
 * to a server's provisioning API (src/admin/provision.ts), fetches the
 * user's whole client config, saves it as a client YAML file (0600) and
 * returns its path; the client then starts from that file.
 *
 *   POST /token   username=USER&password=PASS   → { access_token }
 *   GET  /config  Authorization: Bearer <token>  → { links: [polytun://…, …], … }
 *   save          link: <first link>, backupServers: [<the others>]
 *
 * https is verified against the system CAs, or, with `?fp=` (the server's
 * certificate SHA-256, base64url, as in its wss/tls links), pinned to that
 * certificate: a self-signed server needs the pin. Nothing is sent before
 * the server is verified. The requests go through our own carriers rather
 * than `fetch`, which cannot pin a certificate without an extra dependency.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { formatHostPort } from '../core/address.js';
import { AuthError, ConfigError, PolytunError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { writeAtomic } from '../core/files.js';
import { TcpCarrier } from '../carriers/tcp.js';
import { TlsCarrier } from '../carriers/tls.js';
import type { StreamCarrier } from '../carriers/types.js';
import { decodeLink } from './link.js';

/** Options of {@link provisionClient}. */
export interface ProvisionOptions {
  /** Where to save the config. @default $XDG_CONFIG_HOME/polytun/provisioned/USER@HOST_PORT.yaml */
  readonly save?: string;
  /** Deadline of each request, ms. @default 15000 */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
}

/** What {@link provisionClient} did. */
export interface ProvisionResult {
  /** Absolute path of the saved client config. */
  readonly file: string;
  /** The user's name as the server reported it. */
  readonly user: string;
  /** How many links the config holds. */
  readonly links: number;
}

/** The provisioning server refused or answered something unusable. */
export class ProvisionError extends PolytunError {
  /** HTTP status, when the server answered. */
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super('ERR_PROVISION', `provisioning: ${message}`);
    this.status = status;
  }
}

interface Target {
  tls: boolean;
  host: string;
  port: number;
  username: string;
  password: string;
  pin: string | undefined;
  /** The URL without credentials, for messages. */
  shown: string;
}

function parseTarget(text: string): Target {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ConfigError('--provision', 'expected https://USER:PASSWORD@HOST:PORT');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ConfigError('--provision', `expected an http:// or https:// URL, got ${u.protocol}`);
  if (u.username === '' || u.password === '') throw new ConfigError('--provision', 'the URL needs the user name and password: https://USER:PASSWORD@HOST:PORT');
  const extra = [...u.searchParams.keys()].filter((k) => k !== 'fp');
  if (extra.length > 0) throw new ConfigError('--provision', `unknown URL parameter '${extra[0] ?? ''}' (only fp=)`);
  const pin = u.searchParams.get('fp') ?? undefined;
  if (pin !== undefined && u.protocol !== 'https:') throw new ConfigError('--provision', 'fp= pins a TLS certificate: use https://');
  const tls = u.protocol === 'https:';
  return {
    tls,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? (tls ? 443 : 80) : Number(u.port),
    username: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    pin,
    shown: `${u.protocol}//${u.host}`,
  };
}

interface Reply {
  status: number;
  body: unknown;
}

/** One HTTP/1.1 request over a freshly dialled (and, for https, verified) connection. */
async function request(t: Target, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<Reply> {
  const carrier: StreamCarrier = t.tls
    ? new TlsCarrier({ alpn: ['http/1.1'], minVersion: 'TLSv1.2', ...(t.pin === undefined ? {} : { pinSha256: t.pin }) })
    : new TcpCarrier();
  const conn = await carrier.dial({ host: t.host, port: t.port }, { timeoutMs });
  const hostHeader = formatHostPort(t);
  return new Promise<Reply>((resolvePromise, reject) => {
    const req = http.request(
      {
        method,
        path,
        headers: { host: hostHeader, accept: 'application/json', connection: 'close', ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) },
        // The connection is made and verified: the HTTP client only writes to it.
        createConnection: () => conn.stream as Socket,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 1 << 20) req.destroy(new ProvisionError('the reply is larger than 1 MiB'));
          else chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined; // not JSON (a decoy page, a proxy's error): reported by status below
          }
          resolvePromise({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new ProvisionError(`${t.shown} did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

function detail(r: Reply): string {
  const d = (r.body as { detail?: unknown } | undefined)?.detail;
  return typeof d === 'string' ? d : `HTTP ${r.status}`;
}

/** The default file for a provisioned config. */
export function defaultProvisionFile(user: string, host: string, port: number): string {
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');
  return join(base, 'polytun', 'provisioned', `${safe(user)}@${safe(host)}_${port}.yaml`);
}

/** Writes `text` to `file` atomically with mode 0600 (the links inside are secrets). */
async function saveSecretFile(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeAtomic(file, text);
}

/**
 * Logs in, fetches the user's config, saves it. Rejects with ConfigError
 * (bad URL), AuthError (wrong user or password), ProvisionError (refused,
 * unusable reply) or a carrier error (unreachable, certificate mismatch).
 */
export async function provisionClient(url: string, opts: ProvisionOptions = {}): Promise<ProvisionResult> {
  const t = parseTarget(url);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  if (!t.tls) opts.logger?.warn({ server: t.shown }, 'provisioning over plain http: the password and the config cross the network in clear');
  const form = new URLSearchParams({ grant_type: 'password', username: t.username, password: t.password }).toString();
  const tok = await request(t, 'POST', '/token', { 'content-type': 'application/x-www-form-urlencoded' }, form, timeoutMs);
  if (tok.status === 401) throw new AuthError(`provisioning: ${t.shown} refused the user name or password`);
  if (tok.status !== 200) throw new ProvisionError(`${t.shown} /token: ${detail(tok)}`, tok.status);
  const token = (tok.body as { access_token?: unknown } | undefined)?.access_token;
  if (typeof token !== 'string' || token === '') throw new ProvisionError(`${t.shown} /token answered without an access_token`);

  const cfg = await request(t, 'GET', '/config', { authorization: `Bearer ${token}` }, undefined, timeoutMs);
  if (cfg.status !== 200) throw new ProvisionError(`${t.shown} /config: ${detail(cfg)}`, cfg.status);
  const body = cfg.body as { links?: unknown; user?: { name?: unknown } } | undefined;
  const links = Array.isArray(body?.links) ? body.links.filter((l): l is string => typeof l === 'string') : [];
  if (links.length === 0) throw new ProvisionError(`${t.shown} /config holds no usable link (does the server keep this user's secret?)`);
  links.forEach((l, i) => decodeLink(l, `provisioned links[${i}]`)); // refuse to save what the client cannot use
  const user = typeof body?.user?.name === 'string' ? body.user.name : t.username;

  const file = resolve(opts.save ?? defaultProvisionFile(t.username, t.host, t.port));
  const [first, ...rest] = links;
  const header = `# polytun client config for user '${user}', provisioned from ${t.shown} on ${new Date().toISOString()}.\n# Holds the user's secret: keep it private (mode 0600). Run: polytun client --config ${file}\n`;
  await saveSecretFile(file, header + stringify(rest.length > 0 ? { link: first, backupServers: rest } : { link: first }));
  opts.logger?.info({ server: t.shown, user, file, links: links.length }, 'provisioned: client config saved');
  return { file, user, links: links.length };
}
