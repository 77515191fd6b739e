/**
 * Client links for a server's users: one polytun:// link per user per
 * listen URL, carrying the user's key, the server's public key (pinned by the
 * client) and the carrier. It lives in config/ rather than beside the data
 * dir in server/ because links are a config-layer format and imports point
 * down only (server/ may not import config/).
 */
import { isIP } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { ConfigError } from '../core/errors.js';
import type { DataDir } from '../server/datadir.js';
import { encodeLink, type ClientLink } from './link.js';
import { parseListenUrl, type ListenUrl } from './values.js';

/** Options of {@link linksFor}. */
export interface LinksForOptions {
  /** SHA-256 of the TLS certificate, base64url, pinned in tls:// links. @default none */
  fingerprint?: string;
  /** Only the users with these names. @default every user */
  users?: readonly string[];
  /** Interface list (tests). @default os.networkInterfaces */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
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

/**
 * One link per user per listen URL, users in the order they were added.
 * The host in each link is `publicHost` when given (the name clients know the
 * server by, which a server behind NAT cannot see), else the listen host,
 * else, for a wildcard listen host, a guessed interface address.
 * @throws ConfigError for an unusable listen URL (port 0, bad syntax, no address).
 */
export function linksFor(
  dataDir: DataDir,
  listen: readonly (string | ListenUrl)[],
  publicHost?: string,
  opts: LinksForOptions = {},
): string[] {
  const urls = listen.map((l) => {
    const u = typeof l === 'string' ? parseListenUrl(l) : l;
    if (typeof u === 'string') throw new ConfigError(String(l), u);
    if (u.port === 0) throw new ConfigError(u.url, 'port 0 is chosen at start and cannot go into a link: listen on a fixed port');
    return u;
  });
  const out: string[] = [];
  for (const user of dataDir.users.listUsers()) {
    if (opts.users !== undefined && !opts.users.includes(user.name)) continue;
    for (const u of urls) {
      const host = publicHost ?? (isWildcard(u.host) ? guessAddress(u, opts.interfaces ?? networkInterfaces) : u.host);
      const l: ClientLink = {
        credential: user.key,
        credentialKind: 'key',
        host,
        port: u.port,
        serverKey: dataDir.serverPublicKey,
        carrier: u.scheme,
        name: user.name,
      };
      if (u.scheme === 'tls' && opts.fingerprint !== undefined) l.fingerprint = opts.fingerprint;
      if (u.scheme === 'tls' && isIP(host) === 0) l.sni = host;
      out.push(encodeLink(l, `link for user '${user.name}' on ${u.url}`));
    }
  }
  return out;
}
