/**
 * The client's dashboard (`polytun client … --ui HOST:PORT`, and
 * `polytun ui`): the single-page app built from web/client/ at `/`, and its
 * API — JSON in and out, SSE for live data. Who may call it is guard.ts's
 * business (Host, Origin, CSRF, login).
 *
 *   GET  /, /assets/<file>     the page (web-pages.ts: strict CSP, public — it holds no secret)
 *   GET  /api/session          { passwordRequired, authenticated, csrf? }    (public)
 *   POST /api/login            { password } → { csrf } + session cookie      (public; rate-limited per IP)
 *   POST /api/logout
 *   GET  /api/status           the client's status snapshot (observe/status.ts); 503 not_running before a tunnel runs
 *   GET  /api/events           SSE: `status` (or `idle`) once a second; 503 busy past the reader cap
 *   GET  /api/fronts           { fronts: [{ kind, listen, counters? }] }
 *   GET  /api/timeline         { events: [{ at, kind, message, path?, server? }] }   recent session / failover / path events
 *   GET  /api/paths            { paths: [id…], history }   path series ids seen since start; history: false when none is kept
 *   GET  /api/history?path=ID&res=60|3600&from&to   { path, from, to, resolution, points: [{ at, up, down }] }
 *   /api/wizard/…              see wizard-routes.ts (when enabled)
 *
 * Errors: `{ error, message, field? }`, each message saying what to fix.
 * Bodies over `bodyLimit` (16 KiB) are 413. Fastify's own logger is off:
 * requests carry the password and links.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Clock } from '../core/clock.js';
import { defaultShape, errorReply, useTypeBox } from '../admin/http.js';
import { CLIENT_WEB_ROOT, useWebPages } from '../admin/web-pages.js';
import { AdminInputError } from '../admin/types.js';
import { StoreError } from '../store/types.js';
import { EventStream } from './event-stream.js';
import { UiGuard } from './guard.js';
import type { TunnelStarter, TunnelView } from './types.js';
import { registerWizardRoutes, type WizardInit } from './wizard-routes.js';

/** Options of {@link buildUiApi}. */
export interface UiApiInit {
  /** The login password; undefined = none (loopback binds only). */
  readonly password?: string | undefined;
  /** Accept any Host header: a non-loopback bind (with a password). @default false */
  readonly anyHost?: boolean;
  /** The running tunnel, if any (it may come and go: asked on every request). */
  readonly tunnel: () => TunnelView | undefined;
  /** The wizard's routes; absent = off (404). */
  readonly wizard?: WizardInit;
  /** Starts a tunnel in this process after an apply (`polytun ui`); absent = apply only writes the file. */
  readonly starter?: TunnelStarter;
  /** Largest request body, bytes. @default 16384 */
  readonly bodyLimit?: number;
  /** SSE readers at once. @default 8 */
  readonly maxEventClients?: number;
  /** SSE period, ms. @default 1000 */
  readonly eventIntervalMs?: number;
  readonly clock?: Clock;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** Wall time, ms (tests). @default Date.now */
  readonly now?: () => number;
  /** Where the built page is. @default dist/web/client of the package */
  readonly webRoot?: string;
}

const LoginSchema = Type.Object({ password: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });
type LoginBody = Static<typeof LoginSchema>;

const HistoryQuerySchema = Type.Object(
  {
    /** The path's series id (GET /api/paths). */
    path: Type.String({ minLength: 1, maxLength: 256 }),
    /** @default to − 24 h */
    from: Type.Optional(Type.Integer({ minimum: 0 })),
    /** @default now */
    to: Type.Optional(Type.Integer({ minimum: 0 })),
    /** @default 60 */
    res: Type.Optional(Type.Union([Type.Literal(60), Type.Literal(3600)])),
  },
  { additionalProperties: false },
);
type HistoryQuery = Static<typeof HistoryQuerySchema>;

const NOT_RUNNING = 'no tunnel is running: finish the setup wizard (POST /api/wizard/apply) or start `polytun client`';
/** Thrown by routes that need a tunnel before one runs: answered 503 not_running. */
const notRunning = new Error(NOT_RUNNING);

/** Builds the API (not listening: call `listen({ host, port })`; `close()` ends the SSE readers too). */
export function buildUiApi(init: UiApiInit): FastifyInstance {
  const log = init.logger ?? nullLogger;
  const now = init.now ?? Date.now;
  const app = Fastify({ logger: false, bodyLimit: init.bodyLimit ?? 16 * 1024, return503OnClosing: true, exposeHeadRoutes: false, forceCloseConnections: true });
  useTypeBox(app);
  const guard = new UiGuard({ password: init.password, ...(init.anyHost !== undefined ? { anyHost: init.anyHost } : {}), now });
  guard.install(app);
  app.addHook('onSend', async (_req, reply) => {
    // The page and its assets carry their own policy and caching (web-pages.ts); everything else is API.
    if (reply.hasHeader('content-security-policy')) return;
    reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff').header('x-frame-options', 'DENY');
    reply.header('content-security-policy', "default-src 'none'; frame-ancestors 'none'");
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: 'not_found', message: 'no such route (the page is at /, the API under /api/)' }));
  useWebPages(app, init.webRoot ?? CLIENT_WEB_ROOT);

  const tunnel = (): TunnelView => {
    const t = init.tunnel();
    if (t === undefined) throw notRunning;
    return t;
  };
  app.setErrorHandler(async (err: unknown, req, reply) => {
    if (err === notRunning) return reply.code(503).send({ error: 'not_running', message: NOT_RUNNING });
    const e = errorReply(err);
    if (e.status >= 500) {
      const x = err as { code?: unknown; message?: unknown };
      log.error({ method: req.method, route: req.routeOptions.url, code: x.code, message: x.message }, 'dashboard API request failed');
    }
    return reply.code(e.status).send(defaultShape(e));
  });

  app.get('/api/session', async (req) => guard.describe(req));
  app.post('/api/login', { schema: { body: LoginSchema } }, async (req: FastifyRequest<{ Body: LoginBody }>, reply: FastifyReply) => {
    const r = guard.login(req.ip, req.body.password);
    if (!r.ok) {
      if (r.retryAfter !== undefined) reply.header('retry-after', String(r.retryAfter));
      log.info({ remote: req.ip, status: r.status }, 'dashboard: login refused');
      return reply.code(r.status).send({ error: r.status === 429 ? 'too_many_attempts' : r.status === 401 ? 'unauthorized' : 'invalid', message: r.message });
    }
    log.info({ remote: req.ip }, 'dashboard: logged in');
    return reply.header('set-cookie', r.cookie).send({ csrf: r.csrf });
  });
  app.post('/api/logout', async (req, reply) => reply.header('set-cookie', guard.logout(req)).send({ ok: true }));

  app.get('/api/status', async () => tunnel().status());
  app.get('/api/fronts', async () => ({ fronts: tunnel().fronts() }));
  app.get('/api/timeline', async () => ({ events: tunnel().events() }));
  app.get('/api/paths', async () => {
    const t = tunnel();
    return { paths: t.pathIds(), history: t.history !== undefined };
  });
  app.get('/api/history', { schema: { querystring: HistoryQuerySchema } }, async (req: FastifyRequest<{ Querystring: HistoryQuery }>) => {
    const history = tunnel().history;
    if (history === undefined) throw new StoreError('ERR_STORE_NOT_FOUND', undefined, 'the traffic history is off (ui.history: false): remove that key to keep one');
    const q = req.query;
    const to = q.to ?? now();
    const from = q.from ?? to - 86_400_000;
    const resolution = q.res ?? 60;
    if (from >= to) throw new AdminInputError('querystring.from', 'must be before to');
    if ((to - from) / (resolution * 1000) > 20_000) throw new AdminInputError('querystring.res', 'more than 20000 points: ask for a shorter range or res=3600');
    return { path: q.path, from, to, resolution, points: await history.series('path', q.path, from, to, resolution) };
  });

  const events = new EventStream({
    snapshot: () => {
      const t = init.tunnel();
      return t === undefined ? { event: 'idle', data: { message: NOT_RUNNING, ...(init.starter ? init.starter.state() : {}) } } : { event: 'status', data: t.status() };
    },
    ...(init.eventIntervalMs !== undefined ? { intervalMs: init.eventIntervalMs } : {}),
    ...(init.maxEventClients !== undefined ? { maxClients: init.maxEventClients } : {}),
    ...(init.clock !== undefined ? { clock: init.clock } : {}),
  });
  app.get('/api/events', async (req, reply) => {
    if (!events.hasRoom) return reply.code(503).header('retry-after', '10').send({ error: 'busy', message: 'too many live views are open: close another dashboard tab and reload' });
    reply.hijack();
    events.add(reply.raw);
    return reply;
  });
  app.addHook('onClose', async () => events.close());

  if (init.wizard !== undefined) registerWizardRoutes(app, { ...init.wizard, ...(init.starter ? { starter: init.starter } : {}), logger: log });
  return app;
}
