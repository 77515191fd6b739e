/**
 * Client provisioning in the style of OpenMPTCProuter's VPS API
 * (omr-admin): a router logs in once and fetches its whole configuration.
 *
 *   POST /token    username + password, as an OAuth2 password form
 *                  (application/x-www-form-urlencoded, what omr routers send) or JSON
 *                  → 200 { access_token, token_type: "bearer", expires_in, token, expires }
 *                  → 401 { detail }  wrong name or password (one answer for both)
 *                  → 403 { detail }  right password, but the user is disabled or expired
 *                  → 429 { detail }  too many failures from this address (Retry-After)
 *   GET  /config   Authorization: Bearer <token>
 *                  → 200 the user's ClientConfig (client-config.ts)
 *                  → 401 { detail }  missing, forged, expired or revoked token
 *                  → 403 { detail }  the user is disabled or expired
 *
 * `access_token`/`token_type`/`expires_in` are the OAuth2 names omr clients
 * read; `token`/`expires` (ms since the epoch) are the same facts under
 * polytun's names. Tokens are stateless HMAC tokens (tokens.ts) whose key is
 * `provision.secret` in the data dir, so restarts keep routers logged in;
 * changing a user's password revokes its tokens. Errors use FastAPI's
 * `{ detail }` shape, like omr-admin.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { isIPv6 } from 'node:net';
import { nullLogger, type Logger } from '../core/logger.js';
import { userRefusal, type User, type UserStore } from '../store/index.js';
import { clientConfig } from './client-config.js';
import { useErrorReplies, useTypeBox } from './http.js';
import { verifyPassword, type PasswordVault } from './passwords.js';
import { FailureLimiter, type FailureLimiterInit } from './rate-limit.js';
import { bearerToken, passwordTag, signToken, verifyToken } from './tokens.js';
import type { GatewayView } from './types.js';

/** Options of {@link buildProvisionApi}. */
export interface ProvisionInit {
  readonly store: UserStore;
  readonly gateway: GatewayView;
  readonly passwords: PasswordVault;
  /** 32-byte HMAC key (see `ensureProvisionSecret`). */
  readonly secret: Buffer;
  /** Token lifetime. @default 86400000 (24 h, like omr-admin) */
  readonly tokenTtlMs?: number;
  /** Failed /token attempts per client address. @default { burst: 5, perMinute: 5 } */
  readonly rateLimit?: Omit<FailureLimiterInit, 'now'>;
  /** Honour X-Forwarded-For (only behind a reverse proxy you run). @default false */
  readonly trustProxy?: boolean;
  /** @default 16384 */
  readonly bodyLimit?: number;
  /** Clock (tests). @default Date.now */
  readonly now?: () => number;
  /** @default nullLogger */
  readonly logger?: Logger;
}

/** Body of `POST /token`. Other OAuth2 form fields (grant_type, scope, client_id) are accepted and ignored. */
const TokenSchema = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 128 }),
  password: Type.String({ minLength: 1, maxLength: 256 }),
});
type TokenBody = Static<typeof TokenSchema>;

const BAD_LOGIN = 'Incorrect username or password';
const BAD_TOKEN = 'Could not validate credentials';

/** The rate-limit key of an address: IPv6 clients usually own a whole /64, so they share one bucket per /64. */
function clientKey(ip: string): string {
  if (!isIPv6(ip) || ip.startsWith('::ffff:')) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** Builds the provisioning API (not listening yet). Serve it over TLS: tokens and configs are secrets. */
export function buildProvisionApi(init: ProvisionInit): FastifyInstance {
  const { store, passwords, secret } = init;
  const now = init.now ?? Date.now;
  const ttl = init.tokenTtlMs ?? 24 * 3600_000;
  const log = init.logger ?? nullLogger;
  const limiter = new FailureLimiter({ ...init.rateLimit, now });
  const app = Fastify({ logger: false, bodyLimit: init.bodyLimit ?? 16 * 1024, trustProxy: init.trustProxy ?? false, return503OnClosing: true, exposeHeadRoutes: false });
  useTypeBox(app);
  useErrorReplies(app, log, (e) => ({ detail: e.message }));
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ detail: 'Not Found' }));

  const unauthorized = (reply: FastifyReply, detail: string) => reply.code(401).header('www-authenticate', 'Bearer').send({ detail });

  app.post('/token', { schema: { body: TokenSchema } }, async (req: FastifyRequest<{ Body: TokenBody }>, reply) => {
    const key = clientKey(req.ip);
    const wait = limiter.retryAfterMs(key);
    if (wait > 0) {
      return reply.code(429).header('retry-after', String(Math.ceil(wait / 1000))).send({ detail: 'Too many failed login attempts; try again later' });
    }
    const found = await store.getUser(req.body.username);
    // A match by id is not a login name: only names log in.
    const user = found?.name === req.body.username ? found : undefined;
    const hash = user === undefined ? undefined : await passwords.get(user.id);
    // verifyPassword runs scrypt even without a hash: unknown names answer as slowly as wrong passwords.
    const ok = await verifyPassword(req.body.password, hash);
    if (!ok || user === undefined || hash === undefined) {
      limiter.fail(key);
      log.info({ remote: req.ip }, 'provisioning login failed');
      return unauthorized(reply, BAD_LOGIN);
    }
    // Past the password check, saying why is no longer a leak.
    const refused = refusal(user);
    if (refused !== undefined) return reply.code(403).send({ detail: `user is ${refused}` });
    const iat = now();
    const exp = iat + ttl;
    const token = signToken(secret, { sub: user.id, iat, exp, pwd: passwordTag(hash) });
    return { access_token: token, token_type: 'bearer', expires_in: Math.floor(ttl / 1000), token, expires: exp };
  });

  app.get('/config', async (req, reply) => {
    const token = bearerToken(req.headers.authorization);
    const claims = token === undefined ? undefined : verifyToken(secret, token, now());
    if (claims === undefined) return unauthorized(reply, BAD_TOKEN);
    const user = await store.getUser(claims.sub, { withSecret: true });
    const hash = user?.id === claims.sub ? await passwords.get(user.id) : undefined;
    // A new or removed password revokes every token issued under the old one.
    if (user === undefined || hash === undefined || passwordTag(hash) !== claims.pwd) return unauthorized(reply, BAD_TOKEN);
    const refused = refusal(user);
    if (refused !== undefined) return reply.code(403).send({ detail: `user is ${refused}` });
    return clientConfig(init.gateway, user);
  });

  /** Quota does not block provisioning (the client learns it at connect); disabled and expired do. */
  function refusal(user: User): 'disabled' | 'expired' | undefined {
    const r = userRefusal(user, now());
    return r === 'quota' ? undefined : r;
  }

  return app;
}
