/**
 * Decoys: what a WebSocket listener answers to everything that is not a
 * routed tunnel upgrade. A prober must see an ordinary nginx: nginx's
 * status lines, header order and error pages, and no byte that names us.
 *
 * - `nginxNotFound()`: nginx's default 404 page for every request;
 * - `staticSite(dir)`: a small static site (index.html, content types,
 *   ETag/Last-Modified, 304), no way out of `dir`;
 * - `reverseProxy(url)`: forwards to an HTTP backend (loopback), streaming
 *   both bodies, hop-by-hop headers stripped, backend Server/Date replaced
 *   (as nginx's proxy_hide_header defaults do).
 */
import { createReadStream, type Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { pipeline } from 'node:stream';
import { ConfigError, TimeoutError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';

/** A request handler that answers like an ordinary web server. */
export type Decoy = (req: IncomingMessage, res: ServerResponse) => void;

/** How the decoy presents itself. */
export interface NginxLookInit {
  /** `Server` header and error-page footer. @default 'nginx' (server_tokens off) */
  serverName?: string;
  /** Where decoy failures (unreadable file, backend down) are logged at debug. @default nullLogger */
  logger?: Logger;
}

/** nginx's reason phrases (they differ from Node's for 405 and 504). */
const REASON: Record<number, string> = {
  301: 'Moved Permanently',
  304: 'Not Modified',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Not Allowed',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  504: 'Gateway Time-out',
};

/** nginx's built-in error page for `status`, byte for byte. */
export function nginxErrorBody(status: number, serverName = 'nginx'): string {
  const title = `${status} ${REASON[status] ?? ''}`;
  return `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>${serverName}</center>\r\n</body>\r\n</html>\r\n`;
}

/** A complete raw `Connection: close` error response, for sockets with no ServerResponse (bad request, CONNECT). */
export function rawNginxError(status: number, serverName = 'nginx'): string {
  const body = nginxErrorBody(status, serverName);
  return (
    `HTTP/1.1 ${status} ${REASON[status] ?? ''}\r\nServer: ${serverName}\r\nDate: ${new Date().toUTCString()}\r\n` +
    `Content-Type: text/html\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

/**
 * True when nginx would answer this request 400 Bad Request before any
 * location runs (ngx_http_parse_request_line, ngx_http_parse_complex_uri):
 * a target that is neither `/…` nor an absolute http(s) URL (`OPTIONS *`),
 * a bad or NUL percent escape, or a path whose `..` climbs above the root
 * once `%XX` is decoded (`/../x`, `/a/%2e%2e/..`).
 */
export function nginxRejectsTarget(req: IncomingMessage): boolean {
  const url = req.url ?? '';
  let p: string;
  if (url.startsWith('/')) p = url;
  else if (/^https?:\/\/[^/?#]+/i.test(url)) p = url.replace(/^https?:\/\/[^/?#]+/i, '') || '/';
  else return true;
  const rawPath = p.split('?', 1)[0] as string;
  let path = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i] as string;
    if (c !== '%') {
      path += c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return true;
    const code = parseInt(hex, 16);
    if (code === 0) return true;
    path += String.fromCharCode(code);
    i += 2;
  }
  let depth = 0;
  for (const seg of path.split('/').slice(1)) {
    if (seg === '..') {
      if (depth === 0) return true;
      depth--;
    } else if (seg !== '.' && seg !== '') depth++;
  }
  return false;
}

/** Headers nginx writes itself, before Connection; everything else (ETag, app headers) follows it. */
const BEFORE_CONNECTION = new Set(['content-type', 'content-length', 'last-modified', 'location']);

/**
 * Writes the head in nginx's header order: Server, Date, Content-Type,
 * Content-Length, Last-Modified, Location, Connection, then the rest. Node
 * appends Date and Connection (plus a `Keep-Alive: timeout=5` nginx never
 * sends) unless they are set, so both are set here.
 */
function head(res: ServerResponse, status: number, serverName: string, headers: OutgoingHttpHeaders): void {
  res.setHeader('Server', serverName);
  res.setHeader('Date', new Date().toUTCString());
  const entries = Object.entries(headers).filter((e): e is [string, NonNullable<(typeof e)[1]>] => e[1] !== undefined);
  for (const [k, v] of entries) if (BEFORE_CONNECTION.has(k.toLowerCase())) res.setHeader(k, v);
  res.setHeader('Connection', res.shouldKeepAlive ? 'keep-alive' : 'close');
  for (const [k, v] of entries) if (!BEFORE_CONNECTION.has(k.toLowerCase())) res.setHeader(k, v);
  res.writeHead(status, REASON[status] ?? http.STATUS_CODES[status] ?? '');
}

/** Sends nginx's error page for `status` (no body for HEAD, as nginx). */
export function sendNginxError(res: ServerResponse, status: number, serverName = 'nginx', extra: OutgoingHttpHeaders = {}): void {
  const body = nginxErrorBody(status, serverName);
  // nginx drops keep-alive after a 400 (the request may be unparsable).
  if (status === 400) res.shouldKeepAlive = false;
  head(res, status, serverName, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/** nginx's default 404 page for every request. */
export function nginxNotFound(init: NginxLookInit = {}): Decoy {
  const name = init.serverName ?? 'nginx';
  return (_req, res) => sendNginxError(res, 404, name);
}

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.htm': 'text/html',
  '.css': 'text/css',
  '.js': 'application/javascript',
  '.mjs': 'application/javascript',
  '.json': 'application/json',
  '.txt': 'text/plain',
  '.xml': 'text/xml',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.pdf': 'application/pdf',
  '.wasm': 'application/wasm',
};

/** nginx's mime.types value for a file name; `application/octet-stream` (its default_type) otherwise. */
export function contentTypeOf(file: string): string {
  return TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** Options of {@link staticSite}. */
export interface StaticSiteInit extends NginxLookInit {
  /** Unknown paths: nginx's 404 page, or the site's index.html with 200 (a single-page app). @default 'not-found' */
  unknownPath?: 'not-found' | 'index';
}

type Lookup = { kind: 'file'; file: string; st: Stats } | { kind: 'redirect'; location: string } | { kind: 'status'; status: number };

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root + path.sep);
}

/**
 * Maps a request path to a file under `root`, or to the status nginx would
 * give. Traversal in any spelling (`..`, `%2e%2e`, `%2f`, backslashes, NUL)
 * is a 404; so are dotfiles and symlinks that lead outside the root.
 */
async function lookup(root: string, rawPath: string): Promise<Lookup> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return { kind: 'status', status: 400 };
  }
  if (!decoded.startsWith('/') || /[\0\\]/.test(decoded)) return { kind: 'status', status: 404 };
  const segments = decoded.split('/');
  if (segments.some((s) => s === '..' || s.startsWith('.'))) return { kind: 'status', status: 404 };
  let file = path.join(root, ...segments);
  if (!isInside(root, file)) return { kind: 'status', status: 404 };
  let st: Stats;
  try {
    st = await stat(file);
    if (st.isDirectory()) {
      if (!rawPath.endsWith('/')) return { kind: 'redirect', location: `${rawPath}/` };
      file = path.join(file, 'index.html');
      st = await stat(file);
    }
    if (!st.isFile() || !isInside(root, await realpath(file))) return { kind: 'status', status: 404 };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') return { kind: 'status', status: 404 };
    if (code === 'EACCES' || code === 'EPERM') return { kind: 'status', status: 403 };
    throw err;
  }
  return { kind: 'file', file, st };
}

/** Serves the files of `dir` the way a default nginx `root` does. */
export function staticSite(dir: string, init: StaticSiteInit = {}): Decoy {
  const name = init.serverName ?? 'nginx';
  const logger = init.logger ?? nullLogger;
  let rootP: Promise<string> | undefined;
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    rootP ??= realpath(path.resolve(dir));
    const root = await rootP;
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendNginxError(res, 405, name);
    const url = req.url ?? '/';
    const rawPath = url.startsWith('/') ? (url.split('?', 1)[0] as string) : '';
    let found = await lookup(root, rawPath);
    if (found.kind === 'status' && found.status === 404 && init.unknownPath === 'index') found = await lookup(root, '/');
    if (found.kind === 'status') return sendNginxError(res, found.status, name);
    if (found.kind === 'redirect') return sendNginxError(res, 301, name, { Location: found.location });
    const { file, st } = found;
    const etag = `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${st.size.toString(16)}"`;
    const lastModified = st.mtime.toUTCString();
    const fresh = req.headers['if-none-match'] === etag || (req.headers['if-none-match'] === undefined && req.headers['if-modified-since'] === lastModified);
    if (fresh) {
      head(res, 304, name, { 'Last-Modified': lastModified, ETag: etag });
      return void res.end();
    }
    head(res, 200, name, { 'Content-Type': contentTypeOf(file), 'Content-Length': st.size, 'Last-Modified': lastModified, ETag: etag });
    if (req.method === 'HEAD') return void res.end();
    pipeline(createReadStream(file), res, (err) => {
      if (err) logger.debug({ err, file }, 'decoy file stream failed');
    });
  };
  return (req, res) => {
    serve(req, res).catch((err: unknown) => {
      logger.debug({ err }, 'decoy static site failed');
      if (!res.headersSent) sendNginxError(res, 500, name);
      else res.destroy();
    });
  };
}

/** Options of {@link reverseProxy}. */
export interface ReverseProxyInit extends NginxLookInit {
  /** Give up on a silent backend after this long (→ 504), ms. @default 60000 (nginx proxy_read_timeout) */
  timeoutMs?: number;
  /** Forward the client's Host header (else the backend's host, nginx's default $proxy_host). @default true */
  preserveHost?: boolean;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** Copies headers without the hop-by-hop ones (RFC 9110 §7.6.1), including those the Connection header names. */
export function stripHopByHop(headers: http.IncomingHttpHeaders, drop: readonly string[] = []): OutgoingHttpHeaders {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const skip = new Set([...HOP_BY_HOP, ...named, ...drop]);
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !skip.has(k)) out[k] = v;
  return out;
}

/** Forwards every request to `backendUrl` (http: or https:), like nginx `proxy_pass`. */
export function reverseProxy(backendUrl: string, init: ReverseProxyInit = {}): Decoy {
  const base = new URL(backendUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new ConfigError('decoy', `reverse proxy backend must be http(s), got ${base.protocol}`);
  const name = init.serverName ?? 'nginx';
  const logger = init.logger ?? nullLogger;
  const prefix = base.pathname.replace(/\/$/, '');
  const client = base.protocol === 'https:' ? https : http;
  return (req, res) => {
    const headers = stripHopByHop(req.headers);
    if (init.preserveHost === false) headers.host = base.host;
    const upstream = client.request({
      hostname: base.hostname.replace(/^\[|\]$/g, ''),
      port: base.port || undefined,
      method: req.method,
      path: `${prefix}${req.url ?? '/'}`,
      headers,
      agent: false,
      timeout: init.timeoutMs ?? 60_000,
    });
    let answered = false;
    let clientGone = false;
    upstream.on('timeout', () => upstream.destroy(new TimeoutError('decoy backend')));
    upstream.on('error', (err) => {
      logger.debug({ err }, 'decoy backend failed');
      if (clientGone) return;
      if (!answered && !res.headersSent) sendNginxError(res, err instanceof TimeoutError ? 504 : 502, name);
      else res.destroy();
    });
    upstream.on('response', (up) => {
      answered = true;
      const headers = stripHopByHop(up.headers, ['server', 'date', 'x-pad']);
      for (const k of Object.keys(headers)) if (k.startsWith('x-accel-')) delete headers[k];
      head(res, up.statusCode ?? 502, name, headers);
      pipeline(up, res, (err) => {
        if (err) logger.debug({ err }, 'decoy response stream failed');
      });
    });
    res.on('close', () => {
      clientGone = true;
      if (!res.writableFinished) upstream.destroy();
    });
    // An upgrade request's body is not parsed by Node (the socket was handed
    // over), and a bodiless request must not wait for one.
    const upgrade = (req as IncomingMessage & { upgrade?: boolean }).upgrade === true;
    const hasBody = !upgrade && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined);
    if (!hasBody) upstream.end();
    else
      pipeline(req, upstream, (err) => {
        if (err) logger.debug({ err }, 'decoy request stream failed');
      });
  };
}
