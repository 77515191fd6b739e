/**
 * Client links: the one string a user pastes to configure a client.
 *
 *   polytun://<credential>@<host>:<port>[/]?pk=<key>[&t=…][&sni=…][&path=…][&fp=…][&cred=k|t]#<name>
 *   └scheme─┘└─secret───┘ └─server─────┘   └─query, any order; each key at most once──────────┘└label┘
 *
 * | part  | meaning                                                   | rule                          |
 * |-------|-----------------------------------------------------------|-------------------------------|
 * | cred. | the user's secret: X25519 private key or token            | base64url; a key is 32 bytes  |
 * | host  | server name or IP; IPv6 in brackets                        | required                      |
 * | port  | server port                                               | 1–65535, required             |
 * | pk    | server static public key (pinned: no CA involved)          | base64url, 32 bytes, REQUIRED |
 * | t     | carrier: tcp, tls, ws, wss, udp                            | default tcp                   |
 * | sni   | TLS server name                                           | tls/wss only                  |
 * | path  | WebSocket request path, percent-encoded                    | ws/wss only, starts with '/'  |
 * | fp    | SHA-256 of the server certificate (pinning)                | tls/wss only, 32 bytes        |
 * | cred  | `k` (credential is a key) or `t` (a token)                  | default k                     |
 * | #name | display name, percent-encoded                              | optional                      |
 *
 * Token links on ws/wss: the client sends `Authorization: Bearer <value
 * derived from the token>` in the upgrade request, so `path` may be the
 * server's shared token path (`gateway.wsTokenPath`), where that value
 * selects the user, instead of a path of the user's own. The token already
 * travels as the credential, so no parameter was added: links written
 * before token paths existed decode, and mean, the same.
 *
 * Decoding is strict (unknown or repeated parameters are errors) so that a
 * mistyped security parameter is never silently ignored. Every failure is a
 * ConfigError naming what is wrong; messages never contain the credential.
 * `encodeLink` writes a canonical form: defaults omitted, parameters in the
 * table's order, so `encodeLink(decodeLink(encodeLink(x))) === encodeLink(x)`.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatHost, normalizeHostName } from '../core/address.js';
import { ConfigError } from '../core/errors.js';

/** The link scheme, without `://`. */
export const LINK_SCHEME = 'polytun';
/** Carriers a link can name. */
export const LINK_CARRIERS = ['tcp', 'tls', 'ws', 'wss', 'udp'] as const;
/** A carrier a link can name. */
export type LinkCarrier = (typeof LINK_CARRIERS)[number];
/** What the credential is. */
export type CredentialKind = 'key' | 'token';

/** Everything a link carries. Binary values stay base64url text (unpadded). */
export interface ClientLink {
  /** The user's secret, base64url. A `key` is 32 bytes (43 characters); a `token` is opaque. */
  credential: string;
  /** @default 'key' */
  credentialKind: CredentialKind;
  /** Server host name or IP literal; IPv6 without brackets. */
  host: string;
  port: number;
  /** Server static X25519 public key, base64url (32 bytes). */
  serverKey: string;
  /** @default 'tcp' */
  carrier: LinkCarrier;
  /** TLS server name (tls/wss). */
  sni?: string;
  /** WebSocket path (ws/wss), starting with '/'. */
  path?: string;
  /** Server certificate SHA-256, base64url (tls/wss). */
  fingerprint?: string;
  /** Display name. */
  name?: string;
}

const MAX_LINK = 4096;
const MAX_TOKEN = 512;
const MAX_NAME = 256;
const B64URL = /^[A-Za-z0-9_-]+$/;
const PATH = /^\/[\x21-\x7e]*$/;
/** C0 controls and DEL: a name is shown in UIs and logs, where these could forge lines. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
const PARAMS = ['pk', 't', 'sni', 'path', 'fp', 'cred'] as const;
type Param = (typeof PARAMS)[number];

function isHostName(h: string): boolean {
  return normalizeHostName(h) !== undefined;
}

/** 32 bytes as canonical unpadded base64url (43 chars, unused low bits zero). */
function isKey32(s: string): boolean {
  return s.length === 43 && B64URL.test(s) && Buffer.from(s, 'base64url').toString('base64url') === s;
}

function b64Hint(s: string): string {
  return /[+/=]/.test(s) ? ' (looks like standard base64: use base64url, without padding)' : '';
}

/** Validates a link object's fields; shared by encode and decode so both accept exactly the same set. */
function validate(l: ClientLink, where: string): void {
  const fail = (msg: string): never => {
    throw new ConfigError(where, msg);
  };
  if (l.credentialKind !== 'key' && l.credentialKind !== 'token') fail(`unknown credential kind '${String(l.credentialKind)}'`);
  if (typeof l.credential !== 'string' || l.credential === '') fail('missing credential');
  if (l.credentialKind === 'key' && !isKey32(l.credential)) {
    fail(`credential is not a 32-byte base64url key${b64Hint(l.credential)}`);
  }
  if (l.credentialKind === 'token' && (l.credential.length > MAX_TOKEN || !B64URL.test(l.credential))) {
    fail(`token credential is not base64url (at most ${MAX_TOKEN} characters)${b64Hint(l.credential)}`);
  }
  if (typeof l.host !== 'string' || l.host === '') fail('missing host');
  if (!isIPv4(l.host) && !(isIPv6(l.host) && !l.host.includes('%')) && !isHostName(l.host)) fail(`bad host '${l.host}'`);
  if (!Number.isInteger(l.port) || l.port < 1 || l.port > 65535) fail(`bad port '${String(l.port)}' (1-65535)`);
  if (typeof l.serverKey !== 'string' || l.serverKey === '') fail('missing pk (the server public key)');
  if (!isKey32(l.serverKey)) fail(`pk is not a 32-byte base64url key${b64Hint(l.serverKey)}`);
  if (!(LINK_CARRIERS as readonly string[]).includes(l.carrier)) fail(`unknown carrier '${String(l.carrier)}' (${LINK_CARRIERS.join(', ')})`);
  const tls = l.carrier === 'tls' || l.carrier === 'wss';
  const ws = l.carrier === 'ws' || l.carrier === 'wss';
  if (l.sni !== undefined) {
    if (!tls) fail(`sni needs a tls or wss carrier, not ${l.carrier}`);
    if (!isHostName(l.sni) || isIPv4(l.sni)) fail(`bad sni '${l.sni}' (a host name)`);
  }
  if (l.path !== undefined) {
    if (!ws) fail(`path needs a ws or wss carrier, not ${l.carrier}`);
    if (l.path.length > 1024 || !PATH.test(l.path)) fail(`bad path '${l.path}' (starts with '/', printable ASCII)`);
  }
  if (l.fingerprint !== undefined) {
    if (!tls) fail(`fp needs a tls or wss carrier, not ${l.carrier}`);
    if (!isKey32(l.fingerprint)) fail(`fp is not a base64url SHA-256 (32 bytes)${b64Hint(l.fingerprint)}`);
  }
  if (l.name !== undefined && (l.name === '' || l.name.length > MAX_NAME || hasControl(l.name))) {
    fail(`bad name (1 to ${MAX_NAME} characters, no control characters)`);
  }
}

function pct(s: string, what: string, where: string): string {
  try {
    return encodeURIComponent(s);
  } catch (err) {
    // Lone UTF-16 surrogates cannot be percent-encoded.
    throw new ConfigError(where, `${what} is not well-formed text (${(err as Error).message})`);
  }
}

/** Builds the canonical link text for `link`. Throws ConfigError for an invalid field. */
export function encodeLink(link: ClientLink, where = 'link'): string {
  validate(link, where);
  const host = formatHost(link.host);
  let q = `pk=${link.serverKey}`;
  if (link.carrier !== 'tcp') q += `&t=${link.carrier}`;
  if (link.sni !== undefined) q += `&sni=${pct(link.sni, 'sni', where)}`;
  if (link.path !== undefined) q += `&path=${pct(link.path, 'path', where)}`;
  if (link.fingerprint !== undefined) q += `&fp=${link.fingerprint}`;
  if (link.credentialKind === 'token') q += '&cred=t';
  const frag = link.name === undefined ? '' : `#${pct(link.name, 'name', where)}`;
  return `${LINK_SCHEME}://${link.credential}@${host}:${link.port}?${q}${frag}`;
}

/**
 * Parses a link. Leading/trailing whitespace (a pasted newline) is ignored;
 * anything else wrong throws ConfigError, and nothing else is ever thrown.
 * `where` prefixes the error location, e.g. `'config.yaml:3:link'`.
 */
export function decodeLink(text: string, where = 'link'): ClientLink {
  const fail = (msg: string): never => {
    throw new ConfigError(where, msg);
  };
  if (typeof text !== 'string') return fail('a link must be a string');
  const s = text.trim();
  if (s.length > MAX_LINK) fail(`link is longer than ${MAX_LINK} characters`);
  const prefix = `${LINK_SCHEME}://`;
  if (s.slice(0, prefix.length).toLowerCase() !== prefix) fail(`not a ${prefix} link`);
  let rest = s.slice(prefix.length);

  let name: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    name = unpct(rest.slice(hash + 1), 'name', fail);
    rest = rest.slice(0, hash);
    if (name === '') name = undefined;
  }
  let query = '';
  const qm = rest.indexOf('?');
  if (qm >= 0) {
    query = rest.slice(qm + 1);
    rest = rest.slice(0, qm);
  }
  if (rest.endsWith('/')) rest = rest.slice(0, -1); // tolerate polytun://…:443/?pk=…
  if (rest.includes('/')) fail("unexpected path after the port (the WebSocket path goes in '?path=')");

  const at = rest.indexOf('@');
  if (at < 0) fail("link is missing the credential ('<credential>@' before the host)");
  const credential = rest.slice(0, at);
  const hostPort = rest.slice(at + 1);
  let host: string;
  let portText: string;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) return fail("bad host: missing ']'");
    host = hostPort.slice(1, close);
    if (!isIPv6(host) || host.includes('%')) fail(`bad host '[${host}]' (brackets are for IPv6 addresses)`);
    const after = hostPort.slice(close + 1);
    if (!after.startsWith(':')) fail('missing port');
    portText = after.slice(1);
  } else {
    const colon = hostPort.lastIndexOf(':');
    if (colon < 0) fail('missing port');
    host = hostPort.slice(0, colon);
    portText = hostPort.slice(colon + 1);
    if (host.includes(':')) fail(`bad host '${host}' (put IPv6 addresses in brackets)`);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) fail(`bad port '${portText}'`);

  const params = new Map<Param, string>();
  if (query !== '') {
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? pair : pair.slice(0, eq);
      if (!(PARAMS as readonly string[]).includes(key)) fail(`unknown link parameter '${key}'`);
      if (params.has(key as Param)) fail(`duplicate link parameter '${key}'`);
      const value = eq < 0 ? '' : unpct(pair.slice(eq + 1), key, fail);
      if (value === '') fail(`empty link parameter '${key}'`);
      params.set(key as Param, value);
    }
  }
  const pk = params.get('pk');
  if (pk === undefined) return fail('link is missing pk (the server public key)');
  const cred = params.get('cred') ?? 'k';
  if (cred !== 'k' && cred !== 't') fail(`unknown credential kind '${cred}' (k or t)`);
  const carrier = params.get('t') ?? 'tcp';
  if (!(LINK_CARRIERS as readonly string[]).includes(carrier)) fail(`unknown carrier '${carrier}' (${LINK_CARRIERS.join(', ')})`);

  const link: ClientLink = {
    credential,
    credentialKind: cred === 't' ? 'token' : 'key',
    host,
    port: Number(portText),
    serverKey: pk,
    carrier: carrier as LinkCarrier,
  };
  const sni = params.get('sni');
  if (sni !== undefined) link.sni = sni;
  const path = params.get('path');
  if (path !== undefined) link.path = path;
  const fp = params.get('fp');
  if (fp !== undefined) link.fingerprint = fp;
  if (name !== undefined) link.name = name;
  validate(link, where);
  return link;
}

function unpct(s: string, what: string, fail: (msg: string) => never): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return fail(`bad percent-encoding in ${what}`);
  }
}
