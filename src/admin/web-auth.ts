/**
 * Who a request to the admin listener is, and the dashboard's own routes
 * (login, logout, its session, the live event stream).
 *
 *   Authorization: Bearer <admin token>  ─▶ a script: everything allowed
 *   Cookie: polytun_admin=<session id>   ─▶ a browser: GET allowed; POST/PATCH/DELETE
 *                                           also need X-Polytun-CSRF (+ a same-origin Origin)
 *   neither                              ─▶ 401 (public routes: /, /assets/…, POST /api/login, GET /api/session)
 *
 *   POST /api/login  { token }  → { csrf }  + Set-Cookie   (5 wrong tokens per IP, then 429)
 *   POST /api/logout            → { loggedOut }            + cookie cleared
 *   GET  /api/session           → { via, csrf }            (the page after a reload; via null when
 *                                                          not logged in: a 200, so that opening the page logs no refusal)
 *   GET  /api/events            text/event-stream, one LiveSnapshot a second
 *
 * A bearer header, when present, decides alone (a wrong token is a 401 even
 * with a good cookie beside it): a script never silently rides a browser's
 * session.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../core/logger.js';
import type { LiveFeed } from './live.js';
import { pageHeaders } from './web-pages.js';
import type { FailureLimiter } from './rate-limit.js';
import { bearerToken, secretsEqual } from './tokens.js';
import { CSRF_HEADER, WebSessions, csrfRefusal, isStateChanging, sessionCookie, type WebSession } from './web-sessions.js';

/** Body of `POST /api/login`. */
export const LoginSchema = Type.Object({ token: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });
export type LoginBody = Static<typeof LoginSchema>;

/** How a request was authenticated. */
export type Auth = { readonly via: 'bearer' } | { readonly via: 'cookie'; readonly session: WebSession };

/** Why a request was refused. */
export interface Refusal {
  readonly status: 401 | 403;
  readonly message: string;
  /** For the refusal log: what was presented (never its value). */
  readonly presented: string;
}

/** What the dashboard's auth needs. */
export interface WebAuthInit {
  readonly adminToken: string;
  /** The listener is https: cookies get `Secure`, the expected Origin is https. */
  readonly secure: boolean;
  readonly sessions: WebSessions;
  /** Meters wrong login tokens per client IP. */
  readonly limiter: FailureLimiter;
  readonly feed: LiveFeed;
  readonly log: Logger;
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Authenticates `req` (bearer header, else session cookie with the CSRF rules). */
export function authenticate(req: FastifyRequest, init: WebAuthInit): Auth | Refusal {
  const authz = header(req, 'authorization');
  if (authz !== undefined) {
    const token = bearerToken(authz);
    if (token !== undefined && secretsEqual(token, init.adminToken)) return { via: 'bearer' };
    return { status: 401, message: 'a valid admin bearer token is required', presented: token === undefined ? 'a malformed authorization header' : 'a wrong token' };
  }
  const id = sessionCookie(header(req, 'cookie'));
  const session = init.sessions.touch(id);
  if (session === undefined) return { status: 401, message: 'a valid admin bearer token is required', presented: id === undefined ? 'no token' : 'an expired session' };
  if (isStateChanging(req.method)) {
    const why = csrfRefusal(session, { origin: header(req, 'origin'), host: header(req, 'host'), csrf: header(req, CSRF_HEADER) }, init.secure ? 'https' : 'http');
    if (why !== undefined) return { status: 403, message: why, presented: 'a session cookie without CSRF proof' };
  }
  return { via: 'cookie', session };
}

/** Registers the dashboard's routes. `authOf` gives how a request is authenticated (what the onRequest hook decided, or a refusal on a public route). */
export function useWebAuth(app: FastifyInstance, init: WebAuthInit, authOf: (req: FastifyRequest) => Auth | Refusal): void {
  const { sessions, limiter, log } = init;

  app.post('/api/login', { schema: { body: LoginSchema } }, async (req: FastifyRequest<{ Body: LoginBody }>, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store');
    const wait = limiter.retryAfterMs(req.ip);
    if (wait > 0) {
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(wait / 1000)))
        .send({ error: 'too_many_requests', message: `too many wrong tokens from this address: try again in ${Math.ceil(wait / 1000)} s` });
    }
    // A login form posted from another site is refused like any cross-origin change.
    const origin = header(req, 'origin');
    if (origin !== undefined && origin !== `${init.secure ? 'https' : 'http'}://${header(req, 'host') ?? ''}`) return reply.code(403).send({ error: 'forbidden', message: 'cross-origin request' });
    if (!secretsEqual(req.body.token, init.adminToken)) {
      limiter.fail(req.ip);
      log.info({ remote: req.ip }, 'dashboard: login refused, wrong admin token');
      return reply.code(401).send({ error: 'unauthorized', message: 'wrong admin token' });
    }
    const s = sessions.create();
    log.info({ remote: req.ip, sessions: sessions.size }, 'dashboard: logged in');
    return reply.header('set-cookie', sessions.cookie(s, init.secure)).send({ csrf: s.csrf });
  });

  app.post('/api/logout', async (req, reply) => {
    const auth = authOf(req);
    if ('via' in auth && auth.via === 'cookie') sessions.delete(auth.session.id);
    return reply.header('set-cookie', WebSessions.clearCookie(init.secure)).send({ loggedOut: 'via' in auth && auth.via === 'cookie' });
  });

  app.get('/api/session', async (req) => {
    const auth = authOf(req);
    if (!('via' in auth)) return { via: null, csrf: null };
    return { via: auth.via, csrf: auth.via === 'cookie' ? auth.session.csrf : null };
  });

  app.get('/api/events', async (req, reply) => {
    const auth = authOf(req);
    if (!('via' in auth)) throw new Error('unreachable: the onRequest hook refuses unauthenticated event streams');
    if (init.feed.full) return reply.code(503).header('retry-after', '10').send({ error: 'unavailable', message: 'too many live dashboards open' });
    const res = reply.raw;
    pageHeaders(reply);
    reply.hijack();
    res.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 3000\n\n');
    const unsubscribe = init.feed.subscribe({
      write: (chunk: string) => {
        // A reader that stopped reading is cut off rather than buffered for (about a minute of snapshots).
        if (res.writableLength > 256 * 1024) res.destroy();
        else res.write(chunk);
      },
      // A browser's stream ends with its login (logout, expiry); a script's with its connection.
      alive: () => auth.via !== 'cookie' || sessions.peek(auth.session.id) !== undefined,
      end: () => res.end(),
    });
    if (unsubscribe === undefined) res.end();
    else req.raw.once('close', unsubscribe);
  });
}
