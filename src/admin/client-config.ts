/**
 * A user's client configuration and links, built from the gateway's
 * endpoints and the user's stored credential. Shared by the admin API
 * (`/api/users/:id/links`, the reply to a create) and provisioning (`/config`).
 */
import type { LinkCarrier } from '../config/link.js';
import { userLinks as linksOf } from '../config/links.js';
import { ConfigError } from '../core/errors.js';
import type { User } from '../store/types.js';
import type { GatewayEndpoint, GatewayView } from './types.js';

/** One endpoint as a client should use it (the user's path already applied to `path`). */
export type ClientEndpoint = GatewayEndpoint;

/** Everything a client needs to connect as `user`. */
export interface ClientConfig {
  /** Format version of this object. */
  readonly version: 1;
  readonly user: { readonly id: string; readonly name: string };
  /** The secret the client authenticates with; null when the server does not hold it (the client kept its private key). */
  readonly credential: { readonly kind: 'key' | 'token'; readonly secret: string | null };
  readonly server: { readonly publicKey: string; readonly endpoints: readonly ClientEndpoint[] };
  /** The user's WSS path on shared ports; null when unused. */
  readonly wssPath: string | null;
  /** Fixed destination of the user's traffic; null when the client chooses. */
  readonly dst: string | null;
  /** Ready `polytun://` links, one per endpoint (empty without a secret). */
  readonly links: readonly string[];
}

const WS: readonly LinkCarrier[] = ['ws', 'wss'];
const TLS: readonly LinkCarrier[] = ['tls', 'wss'];

/**
 * `e` as `user` dials it, or undefined when `user` cannot use it: on ws/wss
 * a user is selected by its own path, or (token users only) by the bearer
 * value on the shared token path. A key user without a path has no way in
 * there — a link to the token path would only ever get the decoy's 404.
 */
function endpointFor(e: GatewayEndpoint, user: User): ClientEndpoint | undefined {
  const out: { -readonly [K in keyof ClientEndpoint]: ClientEndpoint[K] } = { carrier: e.carrier, host: e.host, port: e.port };
  if (TLS.includes(e.carrier)) {
    if (e.sni !== undefined) out.sni = e.sni;
    if (e.fingerprint !== undefined) out.fingerprint = e.fingerprint;
  }
  if (WS.includes(e.carrier)) {
    const path = user.wssPath ?? (user.kind === 'token' ? e.path : undefined);
    if (path === undefined) return undefined;
    out.path = path;
  }
  return out;
}

/** The endpoints `user` can use (see endpointFor). */
function endpointsFor(view: GatewayView, user: User): ClientEndpoint[] {
  return view.endpoints().flatMap((e) => endpointFor(e, user) ?? []);
}

/** True when `user` (of `kind`, with no path of its own) could not use some ws/wss endpoint of `view` without one. */
export function needsWssPath(view: GatewayView, kind: User['kind']): boolean {
  return view.endpoints().some((e) => WS.includes(e.carrier) && (kind === 'key' || e.path === undefined));
}

/**
 * The links of `user` (which must have been read `withSecret`), one per
 * endpoint. A user whose secret the server does not hold has none.
 * @throws ConfigError when an endpoint or the credential cannot go into a link
 *   (a token with characters outside base64url, a bad host).
 */
export function userLinks(view: GatewayView, user: User): string[] {
  const secret = user.secret;
  if (secret === undefined || secret === null) return [];
  // One implementation of the link rules for the admin API, provisioning and `polytun link`.
  return linksOf({ name: user.name, credential: secret, credentialKind: user.kind, wssPath: user.wssPath }, view.endpoints(), view.serverPublicKey());
}

/** The full client configuration of `user` (read `withSecret`). */
export function clientConfig(view: GatewayView, user: User): ClientConfig {
  if (user.secret === undefined) throw new ConfigError('client config', 'the user was read without its secret');
  return {
    version: 1,
    user: { id: user.id, name: user.name },
    credential: { kind: user.kind, secret: user.secret },
    server: { publicKey: view.serverPublicKey(), endpoints: endpointsFor(view, user) },
    wssPath: user.wssPath,
    dst: user.dst,
    links: userLinks(view, user),
  };
}
