/**
 * The server's `gateway:` section (multi-user gateway: user store, admin
 * API with provisioning, mtt controller, decoy, traffic accounting). Every
 * key has a flag; schema.ts plugs the section in.
 *
 *   gateway:
 *     store: postgres://polytun@db/polytun   # --store; '' = SQLite users.db in the data dir
 *     admin: https://0.0.0.0:8443             # --admin [http[s]://]HOST:PORT; REST API + /token, /config
 *     controller: 127.0.0.1:8080              # --controller HOST:PORT; mtt-mu-server's controller
 *     decoy: /var/www/site                    # --decoy DIR|URL; what ws/wss listeners show strangers
 *     wsTokenPath: /                          # --ws-token-path PATH; ws/wss path where a token user's bearer selects it; false = off
 *     trafficFlushMs: 10000                   # per-user byte counters go to the store this often
 *     mttTimeoutMs: 60000                     # mtt-mode connections idle this long are closed (mtt's -timeout); 0 = never
 *     history: true                           # keep per-user traffic history in the store (1-min points 7 days, 1-hour 90)
 */
import { parseHostPort } from '../core/address.js';
import { bool, expected, int, object, optional, orFalse, str, withDefault, type Check } from './check.js';
import { hostPort, type HostPort } from './values.js';

/** Where the admin API listens; `tls` serves it over HTTPS with the server certificate. */
export interface AdminListen extends HostPort {
  tls: boolean;
}

/** `gateway:` with every key present. */
export interface GatewayConfig {
  /** User store URL (`--store`): '' = SQLite `users.db` in the data dir, `postgres://…` shared by a fleet. @default '' */
  store: string;
  /** Admin REST API and provisioning (`--admin`); undefined = off. */
  admin: AdminListen | undefined;
  /** mtt-mu-server compatible controller (`--controller`), no authentication: keep it on loopback. undefined = off. */
  controller: HostPort | undefined;
  /** ws/wss decoy (`--decoy`): a folder served as a static site, or an http(s):// URL reverse-proxied. undefined = nginx's 404 page. */
  decoy: string | undefined;
  /** Per-user traffic counters are written to the store this often, ms. @default 10000 */
  trafficFlushMs: number;
  /**
   * Shared ws/wss URL path (`--ws-token-path`) where a token user is picked by
   * the `Authorization: Bearer` value its client sends (derived from its
   * token); links of token users without a path of their own use it.
   * Without a valid value the path gets the decoy. false = off. @default '/'
   */
  wsTokenPath: string | false;
  /** mtt compatibility mode: a connection without a byte either way for this long is closed, ms (mtt's -timeout); 0 = never. @default 60000 */
  mttTimeoutMs: number;
  /** Keep each user's traffic over time in the store (1-minute points for 7 days, 1-hour points for 90; the admin API's traffic history). @default true */
  history: boolean;
  /**
   * This server's name in the traffic history when a fleet shares one
   * PostgreSQL: each server writes its own rows under it and every query
   * sums them. Set it when host names repeat (containers). @default the host name
   */
  historyNode: string | undefined;
}

/** Defaults of `gateway:`. */
export const GATEWAY_DEFAULTS: GatewayConfig = { store: '', admin: undefined, controller: undefined, decoy: undefined, trafficFlushMs: 10_000, wsTokenPath: '/', mttTimeoutMs: 60_000, history: true, historyNode: undefined };

/** `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`. */
const adminListen: Check<AdminListen> = (v, path, ctx) => {
  const what = '[http://|https://]HOST:PORT';
  if (typeof v !== 'string') return expected(ctx, path, what, v);
  const m = /^(https?):\/\/(.+?)\/?$/i.exec(v.trim());
  const text = m ? (m[2] as string) : v.trim();
  try {
    const d = parseHostPort(text);
    return { host: d.host, port: d.port, tls: m?.[1]?.toLowerCase() === 'https' };
  } catch {
    return expected(ctx, path, what, v);
  }
};

/** A store URL: '' / 'sqlite:…' / 'postgres(ql)://…'. Secret: it may hold a password. */
const storeUrl: Check<string> = (v, path, ctx) => {
  if (v === '') return '';
  const s = str("'', sqlite:FILE or postgres://…", (t) => (/^(sqlite:|postgres(ql)?:\/\/)/.test(t) ? undefined : "expected '', sqlite:FILE or postgres://USER@HOST/DB"), true)(v, path, ctx);
  return s;
};

const decoy: Check<string> = str('a folder or an http(s):// URL');

/** A URL path: '/' then printable ASCII, no query or fragment (what requestPath compares against). */
const urlPath: Check<string> = str("a URL path starting with '/'", (s) => (/^\/[\x21-\x7e]*$/.test(s) && !/[?#]/.test(s) ? undefined : "expected a URL path starting with '/' (printable ASCII, no '?' or '#')"));

/** The `gateway:` prop of the server shape. */
export const gatewayProp = withDefault(
  object({
    store: withDefault(storeUrl, () => GATEWAY_DEFAULTS.store),
    admin: optional(adminListen),
    controller: optional(hostPort(true)),
    decoy: optional(decoy),
    trafficFlushMs: withDefault(int(100, 3_600_000), () => GATEWAY_DEFAULTS.trafficFlushMs),
    wsTokenPath: withDefault(orFalse(urlPath), () => GATEWAY_DEFAULTS.wsTokenPath),
    mttTimeoutMs: withDefault(int(0, 86_400_000), () => GATEWAY_DEFAULTS.mttTimeoutMs),
    history: withDefault(bool, () => GATEWAY_DEFAULTS.history),
    historyNode: optional(str('a node name of 1 to 64 printable characters', (v) => (v.length > 64 || /[^\x21-\x7e]/.test(v) ? 'a node name of 1 to 64 printable characters, no spaces' : undefined))),
  }),
  () => ({ ...GATEWAY_DEFAULTS }),
);
