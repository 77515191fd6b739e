/**
 * The admin REST API (JSON over HTTP, fastify).
 *
 *   every route: Authorization: Bearer <admin token>   (401 otherwise, same answer for missing and wrong),
 *                or the web dashboard's session cookie (+ X-Polytun-CSRF on changes; see web-auth.ts)
 *
 *   POST   /api/users                  create → 201 { user, secret, links }   (the secret is shown this once)
 *   GET    /api/users?limit&offset&after   → { users, total, next }
 *   GET    /api/users/:id              by id or name
 *   PATCH  /api/users/:id              → { user } (+ secret, links after rekey or token)
 *   DELETE /api/users/:id[?kick=false] → { deleted, id, kicked, liveSessions }: its live sessions
 *                                      are closed too, unless kick=false (they then go on
 *                                      until they end; liveSessions says how many)
 *   POST   /api/users/:id/kick         closes the user's live sessions
 *   GET    /api/users/:id/traffic
 *   GET    /api/users/:id/traffic/history?from&to&res   → { id, from, to, resolution, points: [{ at, up, down }] }
 *   GET    /api/traffic/history?from&to&res     every user summed (the fleet's, on a shared PostgreSQL)
 *   GET    /api/users/:id/links
 *   GET    /api/sessions[?user=id]
 *   DELETE /api/sessions/:id           kick one session
 *   GET    /api/status
 *   GET    /api/openapi.json          this reference (OpenAPI 3.1; also docs/admin-api.json)
 *   POST   /api/login, /api/logout, GET /api/session, GET /api/events   the web dashboard (web-auth.ts)
 *   GET    /, /assets/:file           the web dashboard's page (public; web-pages.ts)
 *
 * Errors: `{ error, message, field? }` with 400 (the field is named), 401,
 * 404, 409 (a unique field another user holds), 413 (body over
 * `bodyLimit`), 415, 503. Every change goes through the user store, which
 * the gateway follows live: nothing needs a restart. Fastify's logger is off
 * (requests carry tokens and secrets); 5xx are logged through `logger`
 * without request data.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { nullLogger, type Logger } from '../core/logger.js';
import { decodeKey } from '../secure/keys.js';
import { StoreError, generateWssPath, type CredentialInput, type TrafficHistory, type User, type UserPatch, type UserStore } from '../store/index.js';
import {
  CreateUserSchema,
  DeleteQuerySchema,
  HistoryQuerySchema,
  ListQuerySchema,
  PatchUserSchema,
  SessionsQuerySchema,
  userJson,
  type CreateUserBody,
  type DeleteQuery,
  type HistoryQuery,
  type ListQuery,
  type PatchUserBody,
  type SessionsQuery,
} from './api-schemas.js';
import { needsWssPath, userLinks } from './client-config.js';
import { useErrorReplies, useTypeBox } from './http.js';
import { adminOpenApi } from './openapi.js';
import { hashPassword, type PasswordVault } from './passwords.js';
import { LiveFeed } from './live.js';
import { FailureLimiter } from './rate-limit.js';
import { AdminInputError, type GatewayView } from './types.js';
import { authenticate, useWebAuth, type Auth, type WebAuthInit } from './web-auth.js';
import { useWebPages } from './web-pages.js';
import { WebSessions } from './web-sessions.js';

/** Options of {@link buildAdminApi}. */
export interface AdminApiInit {
  readonly store: UserStore;
  readonly gateway: GatewayView;
  /** The bearer token every request must carry (see `ensureAdminToken`). */
  readonly adminToken: string;
  /** Where provisioning passwords go; without it `provisionPassword` is refused. */
  readonly passwords?: PasswordVault;
  /** The gateway's traffic history; without it the history routes answer 404. */
  readonly history?: Pick<TrafficHistory, 'series' | 'fleetTotals'> | undefined;
  /** Largest accepted request body in bytes. @default 65536 */
  readonly bodyLimit?: number;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** The listener is https (the dashboard's cookie is then `Secure`). @default false */
  readonly secure?: boolean;
  /** Where the built dashboard is. @default dist/web/admin of the package */
  readonly webRoot?: string;
  /** Dashboard logins (tests pass one with a clock). @default new WebSessions() */
  readonly webSessions?: WebSessions;
  /** Wrong dashboard logins per client IP. @default 5 at once, then 5 a minute */
  readonly loginLimiter?: FailureLimiter;
  /** The live overview stream. @default a LiveFeed of `gateway` */
  readonly liveFeed?: LiveFeed;
}

/** Routes anyone may call: the dashboard's page, its login, and "am I logged in?" (which authenticates by itself). */
const PUBLIC_ROUTES = new Set(['GET /', 'GET /assets/:file', 'POST /api/login', 'GET /api/session']);

type Req<B = unknown, Q = unknown> = FastifyRequest<{ Body: B; Querystring: Q; Params: { id: string } }>;

function notFound(what: string): StoreError {
  return new StoreError('ERR_STORE_NOT_FOUND', 'id', `${what} not found`);
}

/**
 * Builds the admin API (not listening yet: call `listen({ host, port })`,
 * and `close()` to stop). Bind it to loopback or put TLS in front of it.
 */
export function buildAdminApi(init: AdminApiInit): FastifyInstance {
  if (typeof init.adminToken !== 'string' || init.adminToken.length < 16) throw new AdminInputError('adminToken', 'expected a token of at least 16 characters');
  const { store, gateway: view, passwords } = init;
  const log = init.logger ?? nullLogger;
  const app = Fastify({ logger: false, bodyLimit: init.bodyLimit ?? 64 * 1024, return503OnClosing: true, exposeHeadRoutes: false });
  useTypeBox(app);
  useErrorReplies(app, log);

  const web: WebAuthInit = {
    adminToken: init.adminToken,
    secure: init.secure ?? false,
    sessions: init.webSessions ?? new WebSessions(),
    limiter: init.loginLimiter ?? new FailureLimiter(),
    feed: init.liveFeed ?? new LiveFeed({ view: init.gateway }),
    log,
  };
  const auths = new WeakMap<FastifyRequest, Auth>();
  let refused = 0;
  let lastRefusalLog = -Infinity;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    // Every reply of this listener: no sniffing, no referrer, no caching (replies carry links and secrets).
    reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').header('cache-control', 'no-store');
    if (PUBLIC_ROUTES.has(`${req.method} ${req.routeOptions.url ?? ''}`)) return;
    const auth = authenticate(req, web);
    if ('via' in auth) {
      auths.set(req, auth);
      return;
    }
    // Logged (never what was sent): a wrong token is someone guessing, or a misconfigured script. At most one line per 10 s, with the count since.
    refused++;
    const now = Date.now();
    if (now - lastRefusalLog >= 10_000) {
      log.info({ remote: req.ip, method: req.method, url: req.url.split('?', 1)[0], presented: auth.presented, refused }, 'admin API: request refused, bad admin token');
      lastRefusalLog = now;
      refused = 0;
    }
    if (auth.status === 403) return reply.code(403).send({ error: 'forbidden', message: auth.message });
    // The same answer for a missing, malformed and wrong token.
    return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized', message: auth.message });
  });
  app.addHook('onClose', async () => web.feed.close());
  useWebPages(app, init.webRoot);
  useWebAuth(app, web, (req) => auths.get(req) ?? authenticate(req, web));
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: 'not_found', message: 'no such route' }));

  const hasPassword = async (id: string): Promise<boolean> => (await passwords?.get(id)) !== undefined;
  const show = async (u: User) => userJson(u, await hasPassword(u.id));
  const find = async (id: string, withSecret = false): Promise<User> => {
    const u = await store.getUser(id, { withSecret });
    if (u === undefined) throw notFound(`user '${id}'`);
    return u;
  };
  const hashFor = async (password: string | undefined): Promise<string | undefined> => {
    if (password === undefined) return undefined;
    if (passwords === undefined) throw new AdminInputError('body.provisionPassword', 'provisioning is not enabled on this server');
    return hashPassword(password);
  };
  /** Links for a reply that must not fail because of them (the change already happened). */
  const linksOrError = (u: User): { links: string[]; linksError?: string } => {
    try {
      return { links: userLinks(view, u) };
    } catch (err) {
      return { links: [], linksError: (err as Error).message };
    }
  };

  app.post('/api/users', { schema: { body: CreateUserSchema } }, async (req: Req<CreateUserBody>, reply) => {
    const b = req.body;
    let credential: CredentialInput;
    if (b.kind === 'token') {
      if (b.publicKey !== undefined) throw new AdminInputError('body.publicKey', "only for kind 'key'");
      credential = b.token === undefined ? { kind: 'token' } : { kind: 'token', token: b.token };
    } else {
      if (b.token !== undefined) throw new AdminInputError('body.token', "only for kind 'token'");
      credential = b.publicKey === undefined ? { kind: 'key' } : { kind: 'key', publicKey: decodeKey(b.publicKey, 'body.publicKey') };
    }
    const hash = await hashFor(b.provisionPassword);
    // Without a path of its own a key user cannot be reached on a ws/wss listener (only token users are selected on the shared token path): give it one unless the admin said null.
    const wssPath = b.wssPath === 'auto' || (b.wssPath === undefined && needsWssPath(view, b.kind)) ? generateWssPath() : b.wssPath;
    const u = await store.createUser({
      name: b.name,
      credential,
      ...(wssPath === undefined ? {} : { wssPath }),
      ...(b.dst === undefined ? {} : { dst: b.dst }),
      ...(b.policy === undefined ? {} : { policy: b.policy }),
      ...(b.quotaBytes === undefined ? {} : { quotaBytes: b.quotaBytes }),
      ...(b.expiresAt === undefined ? {} : { expiresAt: b.expiresAt }),
      ...(b.enabled === undefined ? {} : { enabled: b.enabled }),
      ...(b.mtt === undefined ? {} : { mtt: b.mtt }),
      ...(b.udpMaxRate === undefined ? {} : { udpMaxRate: b.udpMaxRate }),
    });
    if (hash !== undefined && passwords !== undefined) {
      try {
        await passwords.set(u.id, hash);
      } catch (err) {
        // Half a user (no password though one was asked for) is worse than none.
        await store.deleteUser(u.id);
        throw err;
      }
    }
    log.info({ user: u.name, id: u.id, kind: u.kind, provisioning: hash !== undefined }, 'admin API: user created');
    return reply.code(201).send({ user: userJson(u, hash !== undefined), secret: u.secret ?? null, ...linksOrError(u) });
  });

  app.get('/api/users', { schema: { querystring: ListQuerySchema } }, async (req: Req<unknown, ListQuery>) => {
    const limit = req.query.limit ?? 100;
    const page = await store.listUsers({ limit, offset: req.query.offset ?? 0, ...(req.query.after === undefined ? {} : { afterId: req.query.after }) });
    const last = page[page.length - 1];
    return { users: await Promise.all(page.map(show)), total: await store.count(), next: page.length === limit && last !== undefined ? last.id : null };
  });

  app.get('/api/users/:id', async (req: Req) => show(await find(req.params.id)));

  app.patch('/api/users/:id', { schema: { body: PatchUserSchema } }, async (req: Req<PatchUserBody>) => {
    const b = req.body;
    const cur = await find(req.params.id);
    const hash = b.provisionPassword === null ? null : await hashFor(b.provisionPassword);
    const patch: { -readonly [K in keyof UserPatch]: UserPatch[K] } = {};
    if (b.name !== undefined) patch.name = b.name;
    if (b.wssPath !== undefined) patch.wssPath = b.wssPath === 'auto' ? generateWssPath() : b.wssPath;
    if (b.dst !== undefined) patch.dst = b.dst;
    if (b.policy !== undefined) patch.policy = b.policy;
    if (b.quotaBytes !== undefined) patch.quotaBytes = b.quotaBytes;
    if (b.expiresAt !== undefined) patch.expiresAt = b.expiresAt;
    if (b.enabled !== undefined) patch.enabled = b.enabled;
    if (b.mtt !== undefined) patch.mtt = b.mtt;
    if (b.udpMaxRate !== undefined) patch.udpMaxRate = b.udpMaxRate;
    if (b.resetTraffic === true) patch.resetTraffic = true;
    if (b.rekey === true && b.token !== undefined) throw new AdminInputError('body.token', 'give either rekey or token');
    if (b.rekey === true) patch.credential = { kind: cur.kind };
    if (b.token !== undefined) patch.credential = b.token === 'auto' ? { kind: 'token' } : { kind: 'token', token: b.token };
    let u = Object.keys(patch).length > 0 ? await store.updateUser(cur.id, patch) : cur;
    if (hash !== undefined && passwords !== undefined) await passwords.set(cur.id, hash ?? undefined);
    // Which fields changed, never their values (a token, a password).
    log.info({ user: u.name, id: u.id, fields: Object.keys(b) }, 'admin API: user updated');
    if (patch.credential === undefined) return { user: await show(u) };
    u = await find(cur.id, true);
    return { user: await show(u), secret: u.secret ?? null, ...linksOrError(u) };
  });

  app.delete('/api/users/:id', { schema: { querystring: DeleteQuerySchema } }, async (req: Req<unknown, DeleteQuery>) => {
    const u = await find(req.params.id);
    if (!(await store.deleteUser(u.id))) throw notFound(`user '${req.params.id}'`);
    await passwords?.set(u.id, undefined);
    // Deleting a user means revoking it: its live sessions are closed too,
    // unless the admin asks to let them finish (?kick=false, the mtt
    // controller's 'del' semantics). Either way the reply says what is left.
    const kicked = req.query.kick === false ? 0 : view.kickUser(u.id, 'user deleted');
    const liveSessions = view.sessions().filter((s) => s.userId === u.id && s.state !== 'closed' && s.state !== 'closing').length;
    log.info({ user: u.name, id: u.id, kicked, liveSessions }, liveSessions > 0 ? 'admin API: user deleted; its live sessions go on until they end' : 'admin API: user deleted');
    return { deleted: true, id: u.id, kicked, liveSessions };
  });

  app.post('/api/users/:id/kick', async (req: Req) => {
    const u = await find(req.params.id);
    const kicked = view.kickUser(u.id, 'kicked by admin');
    log.info({ user: u.name, id: u.id, kicked }, 'admin API: user kicked');
    return { id: u.id, kicked };
  });

  app.get('/api/users/:id/traffic', async (req: Req) => {
    const u = await find(req.params.id);
    const live = view.sessions().filter((s) => s.userId === u.id);
    const total = u.bytesUp + u.bytesDown;
    return {
      id: u.id,
      name: u.name,
      bytesUp: u.bytesUp,
      bytesDown: u.bytesDown,
      totalBytes: total,
      quotaBytes: u.quotaBytes,
      remainingBytes: u.quotaBytes === null ? null : Math.max(0, u.quotaBytes - total),
      live: { sessions: live.length, bytesSent: live.reduce((a, s) => a + s.bytesSent, 0), bytesReceived: live.reduce((a, s) => a + s.bytesReceived, 0) },
    };
  });

  /** The range a history query asks for; 404 while the history is off. */
  const historyRange = (q: HistoryQuery) => {
    const history = init.history;
    if (history === undefined) throw new StoreError('ERR_STORE_NOT_FOUND', undefined, 'traffic history is off on this server');
    const to = q.to ?? Date.now();
    const from = q.from ?? to - 86_400_000;
    const resolution = q.res ?? 60;
    if (from >= to) throw new AdminInputError('querystring.from', 'must be before to');
    if ((to - from) / (resolution * 1000) > 20_000) throw new AdminInputError('querystring.res', 'more than 20000 points: ask for a shorter range or res=3600');
    return { history, from, to, resolution };
  };

  app.get('/api/users/:id/traffic/history', { schema: { querystring: HistoryQuerySchema } }, async (req: Req<unknown, HistoryQuery>) => {
    const { history, ...range } = historyRange(req.query);
    const u = await find(req.params.id);
    return { id: u.id, ...range, points: await history.series('user', u.id, range.from, range.to, range.resolution) };
  });

  app.get('/api/traffic/history', { schema: { querystring: HistoryQuerySchema } }, async (req: Req<unknown, HistoryQuery>) => {
    const { history, ...range } = historyRange(req.query);
    return { ...range, points: await history.fleetTotals(range.from, range.to, range.resolution) };
  });

  app.get('/api/users/:id/links', async (req: Req) => {
    const u = await find(req.params.id, true);
    return { id: u.id, kind: u.kind, hasSecret: typeof u.secret === 'string', links: userLinks(view, u) };
  });

  app.get('/api/sessions', { schema: { querystring: SessionsQuerySchema } }, async (req: Req<unknown, SessionsQuery>) => {
    const all = view.sessions();
    if (req.query.user === undefined) return { sessions: all };
    const u = await find(req.query.user);
    return { sessions: all.filter((s) => s.userId === u.id) };
  });

  app.delete('/api/sessions/:id', async (req: Req) => {
    if (!view.kickSession(req.params.id, 'kicked by admin')) throw notFound(`session '${req.params.id}'`);
    log.info({ session: req.params.id }, 'admin API: session kicked');
    return { kicked: true, id: req.params.id };
  });

  app.get('/api/status', async () => ({ ...view.status(), users: await store.count(), store: store.backend }));

  app.get('/api/openapi.json', async () => adminOpenApi());

  return app;
}
