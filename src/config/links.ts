/**
 * Client links for a server's users: one polytun:// link per user per
 * listen URL, carrying the user's key, the server's public key (pinned by the
 * client) and the carrier (tls/wss: SNI and certificate pin; ws/wss: the
 * user's own URL path, which selects it on a shared port, or for a token
 * user without one the shared token path, where the bearer value its client
 * derives from the token selects it). It lives in
 * config/ rather than beside the data dir in server/ because links are a
 * config-layer format and imports point down only (server/ may not import
 * config/).
 */
import { isIP } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { ConfigError } from '../core/errors.js';
import type { DataDir } from '../server/datadir.js';
import { encodeLink, type ClientLink, type CredentialKind, type LinkCarrier } from './link.js';
import { parseListenUrl, type ListenUrl } from './values.js';

/** Options of {@link linksFor}. */
export interface LinksForOptions {
  /** SHA-256 of the TLS certificate, base64url, pinned in tls:// and wss:// links. @default none */
  fingerprint?: string;
  /** Only the users with these names. @default every user */
  users?: readonly string[];
  /** Interface list (tests). @default os.networkInterfaces */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  /** The server's shared token path (`gateway.wsTokenPath`) for ws/wss endpoints; false = none. @default '/' */
  wsTokenPath?: string | false;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || (isIP(host) === 6 && /^[0:]+$/.test(host));
}

/**
 * The address a client should dial when the server listens on a wildcard.
 * We cannot know the public address from inside (NAT, load balancers), so
 * this is only a best guess: the first non-internal interface address,
 * IPv4 first (0.0.0.0 accepts IPv4 only; `::` usually accepts both, and IPv4
 * is the more widely reachable). IPv6 link-local addresses are skipped: they
 * need a zone id that means nothing on the client. Pass `publicHost` (the
 * `--host` flag) to state the real name.
 */
function guessAddress(listen: ListenUrl, interfaces: () => NodeJS.Dict<NetworkInterfaceInfo[]>): string {
  const all = Object.values(interfaces()).flatMap((l) => l ?? []).filter((i) => !i.internal);
  const v4 = all.find((i) => i.family === 'IPv4');
  const v6 = all.find((i) => i.family === 'IPv6' && !i.address.toLowerCase().startsWith('fe80'));
  const pick = listen.host === '0.0.0.0' ? v4 : (v4 ?? v6);
  if (pick === undefined) {
    throw new ConfigError(listen.url, 'listens on a wildcard address and this machine has no public interface address: pass --host PUBLIC_HOST');
  }
  return pick.address;
}

/** One way clients reach the server: what a link needs besides the user. The admin APIs use the same shape (GatewayEndpoint). */
export interface LinkEndpoint {
  readonly carrier: LinkCarrier;
  /** Public host name or IP clients dial. */
  readonly host: string;
  readonly port: number;
  /** TLS server name (tls/wss, when the host is a name). */
  readonly sni?: string;
  /** Certificate SHA-256, base64url (tls/wss), pinned by clients. */
  readonly fingerprint?: string;
  /** ws/wss: the shared token path, for token users without a path of their own; absent = no token path. */
  readonly path?: string;
}

/** A user as a link needs it. */
export interface LinkUser {
  readonly name: string;
  /** Private key (base64url) or token. */
  readonly credential: string;
  readonly credentialKind: CredentialKind;
  /** The user's WebSocket path; without one, ws/wss endpoints are skipped, except the token path for a token user. */
  readonly wssPath?: string | null;
}

/**
 * The endpoints of `listen` as clients dial them. The host is `publicHost`
 * when given (the name clients know the server by, which a server behind NAT
 * cannot see), else the listen host, else, for a wildcard listen host, a
 * guessed interface address.
 * @throws ConfigError for an unusable listen URL (port 0, bad syntax, no address).
 */
export function linkEndpoints(listen: readonly (string | ListenUrl)[], publicHost?: string, opts: Omit<LinksForOptions, 'users'> = {}): LinkEndpoint[] {
  return listen.map((l) => {
    const u = typeof l === 'string' ? parseListenUrl(l) : l;
    if (typeof u === 'string') throw new ConfigError(String(l), u);
    if (u.port === 0) throw new ConfigError(u.url, 'port 0 is chosen at start and cannot go into a link: listen on a fixed port');
    const host = publicHost ?? (isWildcard(u.host) ? guessAddress(u, opts.interfaces ?? networkInterfaces) : u.host);
    const tls = u.scheme === 'tls' || u.scheme === 'wss';
    const tokenPath = opts.wsTokenPath ?? '/';
    return {
      carrier: u.scheme,
      host,
      port: u.port,
      ...(tls && isIP(host) === 0 ? { sni: host } : {}),
      ...(tls && opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {}),
      ...((u.scheme === 'ws' || u.scheme === 'wss') && tokenPath !== false ? { path: tokenPath } : {}),
    };
  });
}

/**
 * The links of one user, one per endpoint. ws/wss: the user's own path; a
 * token user without one gets the endpoint's token path; other users
 * without one get no ws/wss link.
 */
export function userLinks(user: LinkUser, endpoints: readonly LinkEndpoint[], serverKey: string): string[] {
  const out: string[] = [];
  for (const e of endpoints) {
    const ws = e.carrier === 'ws' || e.carrier === 'wss';
    const path = user.wssPath ?? (user.credentialKind === 'token' ? e.path : undefined);
    if (ws && path === undefined) continue;
    const l: ClientLink = {
      credential: user.credential,
      credentialKind: user.credentialKind,
      host: e.host,
      port: e.port,
      serverKey,
      carrier: e.carrier,
      name: user.name,
    };
    if (e.sni !== undefined) l.sni = e.sni;
    if (ws) l.path = path as string;
    if (e.fingerprint !== undefined) l.fingerprint = e.fingerprint;
    out.push(encodeLink(l, `link for user '${user.name}' on ${e.carrier}://${e.host}:${e.port}`));
  }
  return out;
}

/**
 * One link per user of a data dir's users.json per listen URL, users in the
 * order they were added (see {@link linkEndpoints} for the host).
 * ws/wss URLs are refused: a WebSocket link carries the user's path, which
 * only the user store holds.
 * @throws ConfigError for an unusable listen URL.
 */
export function linksFor(
  dataDir: DataDir,
  listen: readonly (string | ListenUrl)[],
  publicHost?: string,
  opts: LinksForOptions = {},
): string[] {
  const endpoints = linkEndpoints(listen, publicHost, opts);
  const ws = endpoints.find((e) => e.carrier === 'ws' || e.carrier === 'wss');
  if (ws !== undefined) throw new ConfigError(`${ws.carrier}://…:${ws.port}`, "ws/wss links carry each user's WebSocket path, which lives in the user store: use `polytun link` or the admin API");
  const out: string[] = [];
  for (const user of dataDir.users.listUsers()) {
    if (opts.users !== undefined && !opts.users.includes(user.name)) continue;
    out.push(...userLinks({ name: user.name, credential: user.key, credentialKind: 'key' }, endpoints, dataDir.serverPublicKey));
  }
  return out;
}
