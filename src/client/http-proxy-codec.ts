/**
 * HTTP forward-proxy request codec: an I/O-free incremental parser for the
 * request head a browser or curl sends to an HTTP proxy (`CONNECT host:port`
 * or an absolute-form request such as `GET http://host/path`), the rewrite of
 * that head for the origin, and Basic `Proxy-Authorization` decoding.
 *
 * The parser is strict where leniency enables request smuggling or header
 * injection: CRLF line ends only, no bare CR/LF, no NUL, no obs-fold, no
 * whitespace before a header colon, one Host, one Content-Length value, never
 * Content-Length together with Transfer-Encoding.
 */
import { AddressError, parseHostPort } from '../core/address.js';
import type { Destination } from '../core/address.js';
import { ChunkList } from '../core/chunks.js';
import { ClosedError, ProtocolError } from '../core/errors.js';

/** HTTP status codes this codec may ask the front to answer with. */
export type HttpProxyErrorStatus = 400 | 431 | 505;

/** The request head is malformed (400), too large (431) or of an unsupported version (505). */
export class HttpProxyError extends ProtocolError {
  /** Status to answer with before closing. */
  readonly status: HttpProxyErrorStatus;
  constructor(status: HttpProxyErrorStatus, message: string, options?: { cause?: unknown }) {
    super(`http proxy request: ${message}`, options);
    this.status = status;
  }
}

/** A parsed proxy request head. */
export interface HttpProxyRequest {
  /** Request method as sent (methods are case-sensitive). */
  method: string;
  /** Where to connect: the CONNECT authority or the absolute URI's host (port 80 by default). */
  target: Destination;
  /** The authority text as the client wrote it (used for the origin's Host header). */
  authority: string;
  /** Origin-form path (`/p?q`) of an absolute-form request; null for CONNECT. */
  path: string | null;
  version: 'HTTP/1.0' | 'HTTP/1.1';
  /** Header fields in order, names as sent, values trimmed of surrounding whitespace. */
  headers: [string, string][];
  /**
   * Request body framing, so a front can find where the next request starts:
   * no body, `chunked`, or a byte count. Always 'none' for CONNECT (what
   * follows is tunnel data).
   */
  body: 'none' | 'chunked' | number;
  /** Bytes of the head consumed from the stream (leading blank lines and final CRLFCRLF included). */
  rawHeadBytes: number;
  /** Bytes received after the head: body or tunnel data. Never lost. */
  remainder: Buffer;
}

/** Options of `HttpProxyRequestParser`. */
export interface HttpProxyParserInit {
  /** Largest head, in bytes, before answering 431. @default 16384 */
  maxHeadBytes?: number;
  /** Most header fields before answering 431. @default 128 */
  maxHeaders?: number;
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * Incremental request-head parser. `push` returns the request once its head
 * is complete and null until then; it throws only `HttpProxyError` (and
 * `ClosedError` if fed after the head). The end of the head is found by
 * scanning each new chunk once, so feeding a byte at a time stays linear.
 */
export class HttpProxyRequestParser {
  private readonly buf = new ChunkList();
  private readonly maxHead: number;
  private readonly maxHeaders: number;
  private scanned = 0;
  private lineLen = 0;
  private lines = 0;
  private prev = -1;
  private done = false;
  private error: HttpProxyError | undefined;

  constructor(init: HttpProxyParserInit = {}) {
    this.maxHead = init.maxHeadBytes ?? 16384;
    this.maxHeaders = init.maxHeaders ?? 128;
  }

  /** Feeds bytes from the client; returns the request when its head completes. */
  push(chunk: Buffer): HttpProxyRequest | null {
    if (this.error) throw this.error;
    if (this.done) throw new ClosedError('http proxy parser (head already parsed)');
    this.buf.push(chunk);
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i] as number;
      if (++this.scanned > this.maxHead) this.fail(431, `head larger than ${this.maxHead} bytes`);
      if (c === 0) this.fail(400, 'NUL byte in head');
      if (this.prev === CR && c !== LF) this.fail(400, 'bare CR in head');
      if (c === LF) {
        if (this.prev !== CR) this.fail(400, 'bare LF in head');
        this.endLine();
      } else if (c !== CR) {
        this.lineLen++;
      }
      this.prev = c;
      if (this.done) {
        const head = this.buf.read(this.scanned);
        return this.finish(head, this.buf.readAll());
      }
    }
    return null;
  }

  private endLine(): void {
    if (this.lineLen > 0) this.lines++;
    // An empty line before the request line is ignored (RFC 9112 §2.2); after it, it ends the head.
    else if (this.lines > 0) this.done = true;
    this.lineLen = 0;
  }

  private fail(status: HttpProxyErrorStatus, msg: string, cause?: unknown): never {
    this.buf.clear();
    this.error = new HttpProxyError(status, msg, cause === undefined ? undefined : { cause });
    throw this.error;
  }

  private finish(head: Buffer, remainder: Buffer): HttpProxyRequest {
    try {
      return { ...parseHead(head.toString('latin1'), this.maxHeaders), rawHeadBytes: head.length, remainder };
    } catch (err) {
      if (err instanceof HttpProxyError) {
        this.error = err;
        this.buf.clear();
      }
      throw err;
    }
  }
}


type ParsedHead = Omit<HttpProxyRequest, 'rawHeadBytes' | 'remainder'>;

// RFC 9110 tchar: the characters of a method or header name.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: HTAB, visible ASCII, SP and obs-text; no other control bytes.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// Request targets: no whitespace or control bytes at all.
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;

function bad(msg: string, cause?: unknown): never {
  throw new HttpProxyError(400, msg, cause === undefined ? undefined : { cause });
}

/** Parses a complete head (latin1 text, CRLF-separated, ending in an empty line). */
function parseHead(text: string, maxHeaders: number): ParsedHead {
  const lines = text.split('\r\n');
  while (lines[0] === '') lines.shift(); // leading blank lines (RFC 9112 §2.2)
  const requestLine = lines.shift() ?? '';
  const parts = requestLine.split(' ');
  if (parts.length !== 3) bad('request line is not "METHOD target HTTP/x.y"');
  const [method = '', rawTarget = '', rawVersion = ''] = parts;
  if (!TOKEN.test(method)) bad('bad method');
  if (!TARGET.test(rawTarget)) bad('bad request target');
  if (!/^HTTP\/[0-9]\.[0-9]$/.test(rawVersion)) bad('bad HTTP version');
  if (rawVersion !== 'HTTP/1.1' && rawVersion !== 'HTTP/1.0') {
    throw new HttpProxyError(505, `${rawVersion} not supported`);
  }
  const version = rawVersion;

  const headers: [string, string][] = [];
  for (const line of lines) {
    if (line === '') continue; // the terminating empty line(s)
    if (line[0] === ' ' || line[0] === '\t') bad('obsolete line folding');
    const colon = line.indexOf(':');
    if (colon <= 0) bad('header line without a name and colon');
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: whitespace before the colon MUST be rejected (smuggling vector).
    if (!TOKEN.test(name)) bad(`bad header name ${JSON.stringify(name)}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) bad(`control character in header ${name}`);
    if (headers.length >= maxHeaders) throw new HttpProxyError(431, `more than ${maxHeaders} header fields`);
    headers.push([name, value]);
  }
  if (headers.filter(([n]) => n.toLowerCase() === 'host').length > 1) bad('more than one Host header');

  if (method === 'CONNECT') {
    const target = parseTarget(rawTarget);
    return { method, target, authority: rawTarget, path: null, version, headers, body: 'none' };
  }
  const { target, authority, path } = parseAbsoluteForm(rawTarget);
  return { method, target, authority, path, version, headers, body: bodyFraming(headers, version) };
}

function parseTarget(authority: string, defaultPort?: number): Destination {
  let dest: Destination;
  try {
    dest = parseHostPort(authority, defaultPort);
  } catch (err) {
    if (err instanceof AddressError) bad(`bad target ${JSON.stringify(authority)}: ${err.message}`, err);
    throw err;
  }
  if (dest.port === 0) bad('target port 0');
  return dest;
}

/** `http://authority[/path][?query][#fragment]` → target, authority and origin-form path. */
function parseAbsoluteForm(t: string): { target: Destination; authority: string; path: string } {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(t);
  if (!scheme) {
    if (t.startsWith('/') || t === '*') bad(`origin-form target ${JSON.stringify(t.slice(0, 64))} sent to a proxy; use an absolute URI or CONNECT`);
    bad('request target is not an absolute URI');
  }
  const name = (scheme[1] ?? '').toLowerCase();
  if (name === 'https') bad('https:// absolute-form is not supported; use CONNECT');
  if (name !== 'http') bad(`scheme ${name} is not supported`);
  const rest = t.slice(scheme[0].length);
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  let tail = end < 0 ? '' : rest.slice(end);
  // Credentials in the URI are deprecated (RFC 9110 §4.2.4) and a phishing vector.
  if (authority.includes('@')) bad('userinfo in URI is not supported');
  if (authority === '') bad('empty host in URI');
  // RFC 3986 allows an empty port ("host:"), meaning the default.
  const target = parseTarget(authority.endsWith(':') && !authority.endsWith('::') ? authority.slice(0, -1) : authority, 80);
  const hash = tail.indexOf('#');
  if (hash >= 0) tail = tail.slice(0, hash); // fragments are never sent to servers
  const path = tail === '' ? '/' : tail.startsWith('?') ? `/${tail}` : tail;
  return { target, authority, path };
}

/** Body framing per RFC 9112 §6.3, refusing the ambiguous cases smuggling relies on. */
function bodyFraming(headers: [string, string][], version: string): 'none' | 'chunked' | number {
  const te = headers.filter(([n]) => n.toLowerCase() === 'transfer-encoding').map(([, v]) => v);
  const cl = headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v);
  if (te.length > 0) {
    if (cl.length > 0) bad('both Transfer-Encoding and Content-Length');
    if (version === 'HTTP/1.0') bad('Transfer-Encoding in an HTTP/1.0 request');
    const codings = te.join(',').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
    if (codings[codings.length - 1] !== 'chunked') bad('request Transfer-Encoding does not end in chunked');
    return 'chunked';
  }
  if (cl.length === 0) return 'none';
  const values = new Set(cl.join(',').split(',').map((s) => s.trim()));
  if (values.size !== 1) bad('conflicting Content-Length values');
  const [v = ''] = values;
  if (!/^[0-9]{1,15}$/.test(v)) bad(`bad Content-Length ${JSON.stringify(v)}`);
  const n = Number(v);
  return n === 0 ? 'none' : n;
}

// Hop-by-hop fields never forwarded (RFC 9110 §7.6.1) plus the proxy's own.
const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade', 'host']);
// Fields a Connection header may not remove: the body is relayed byte for
// byte, so its framing must reach the origin exactly as the client sent it.
const PROTECTED = new Set(['content-length', 'transfer-encoding']);

/**
 * The head to send the origin for an absolute-form request:
 * - origin-form request line (`GET /path HTTP/1.1`);
 * - `Host` first, set to the URI's authority (RFC 9112 §3.2.2: a proxy
 *   replaces the received Host with the target's), so it can never disagree
 *   with where we connected;
 * - hop-by-hop fields dropped: Connection and the fields it lists (except
 *   Content-Length / Transfer-Encoding, which frame the relayed body),
 *   Proxy-Connection, Keep-Alive, Proxy-Authorization, TE, Trailer, Upgrade;
 * - `Upgrade: websocket` is kept with `Connection: Upgrade`, because after the
 *   head the front relays raw bytes both ways, so a 101 switch just works;
 *   other upgrades (h2c) are dropped and the origin answers in HTTP/1.1;
 * - otherwise `Connection: close`: one client request per origin connection,
 *   so the end of the response is the end of the stream and the client sees
 *   the origin's close and does not reuse the connection for another host.
 * @throws HttpProxyError (400) when called for a CONNECT request
 */
export function rewriteForOrigin(req: HttpProxyRequest): Buffer {
  if (req.path === null) bad('CONNECT has no origin request to rewrite');
  const listed = new Set<string>();
  let upgrade: string | undefined;
  for (const [n, v] of req.headers) {
    const name = n.toLowerCase();
    if (name === 'connection') for (const tok of v.split(',')) listed.add(tok.trim().toLowerCase());
    if (name === 'upgrade') upgrade = v;
  }
  const websocket = upgrade !== undefined && listed.has('upgrade') && /(^|,)\s*websocket\s*(,|$)/i.test(upgrade);
  const lines = [`${req.method} ${req.path} ${req.version}`, `Host: ${req.authority}`];
  for (const [n, v] of req.headers) {
    const name = n.toLowerCase();
    if (HOP_BY_HOP.has(name) || (listed.has(name) && !PROTECTED.has(name))) continue;
    lines.push(`${n}: ${v}`);
  }
  if (websocket) lines.push(`Upgrade: ${upgrade}`, 'Connection: Upgrade');
  else lines.push('Connection: close');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/**
 * Decodes `Proxy-Authorization: Basic base64(user:pass)` (RFC 7617). Returns
 * null for other schemes or malformed values (answer 407). Credentials are
 * UTF-8, falling back to latin1 for old clients.
 */
export function parseProxyAuthorization(header: string): { username: string; password: string } | null {
  const m = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header);
  if (!m) return null;
  const b64 = m[1] ?? '';
  if (b64.length % 4 !== 0) return null;
  const raw = Buffer.from(b64, 'base64');
  if (raw.toString('base64') !== b64) return null; // non-canonical padding bits
  let text: string;
  try {
    text = strictUtf8.decode(raw);
  } catch {
    text = raw.toString('latin1');
  }
  const colon = text.indexOf(':');
  if (colon < 0) return null;
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

const REASONS: Record<number, string> = {
  200: 'Connection Established',
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/**
 * A response head from the proxy itself: `200 Connection Established` for
 * CONNECT, or an error (which adds `Connection: close` and an empty body).
 * Extra header values must not contain CR/LF (checked).
 * @throws HttpProxyError (400) on a header value with CR/LF
 */
export function encodeProxyResponse(status: number, extraHeaders: [string, string][] = [], body?: string): Buffer {
  const lines = [`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`];
  for (const [n, v] of extraHeaders) {
    if (!TOKEN.test(n) || !FIELD_VALUE.test(v)) bad(`refusing to emit header ${JSON.stringify(n)}`);
    lines.push(`${n}: ${v}`);
  }
  // A refusal's body says why in a sentence (curl -v and browsers show it).
  const text = status !== 200 && body !== undefined ? Buffer.from(`${body}\n`, 'utf8') : Buffer.alloc(0);
  if (text.length > 0) lines.push('Content-Type: text/plain; charset=utf-8');
  if (status !== 200) lines.push(`Content-Length: ${text.length}`, 'Connection: close');
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), text]);
}
