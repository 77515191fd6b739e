/**
 * Who may use the client's dashboard API, checked before any route runs:
 *
 *   every request ─▶ Host allowed? ──no──▶ 403 forbidden_host      (DNS rebinding: on loopback only loopback names)
 *                 ─▶ state-changing (POST…)? ─▶ Origin same as Host (if sent), Sec-Fetch-Site not cross-site,
 *                                              X-Polytun-CSRF equal to the session's (or the process's) token ──no──▶ 403
 *                 ─▶ password set and route not public? ─▶ session cookie valid ──no──▶ 401
 *
 * With a password, POST /api/login {password} (compared in constant time,
 * failures rate-limited per IP) opens a session: an HttpOnly SameSite=Strict
 * cookie, and a CSRF token in the answer that state-changing requests send
 * back in the X-Polytun-CSRF header. Without a password (loopback only),
 * GET /api/session hands out the process's CSRF token: a page of another
 * origin cannot read it (no CORS header is ever sent), and cannot send a
 * custom header cross-origin without a preflight we never approve — so a
 * web page on the internet cannot drive the local UI.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FailureLimiter } from '../admin/rate-limit.js';
import { secretsEqual } from '../admin/tokens.js';
import { isLoopbackHost } from '../config/values.js';

/** The header state-changing requests carry their CSRF token in. */
export const CSRF_HEADER = 'x-polytun-csrf';
/** The session cookie's name. */
export const SESSION_COOKIE = 'polytun_ui';

/** Routes reachable without a session (they still pass the Host and CSRF checks): the login, and the page itself, which holds no secret. */
const PUBLIC = new Set(['/api/login', '/api/session', '/']);
const isPublic = (path: string): boolean => PUBLIC.has(path) || /^\/assets\/[\w-]+(\.[\w-]+)*$/.test(path);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Options of {@link UiGuard}. */
export interface UiGuardInit {
  /** The login password; undefined = no login (loopback only, enforced by the config). */
  readonly password?: string | undefined;
  /** Accept any Host header (a non-loopback bind, where the password guards). @default false */
  readonly anyHost?: boolean;
  /** Sessions at once; the oldest is dropped beyond. @default 32 */
  readonly maxSessions?: number;
  /** A session lasts this long after its last request, ms. @default 12 h */
  readonly idleMs?: number;
  /** Failed logins per IP: burst, then per minute. @default 5 / 5 */
  readonly limiter?: FailureLimiter;
  /** Wall time in ms (tests). @default Date.now */
  readonly now?: () => number;
}

interface UiSession {
  readonly csrf: string;
  seen: number;
}

const token = (): string => randomBytes(24).toString('base64url');

/** The host part of a Host header or of an Origin's authority (`[::1]:8080` → `::1`). */
function hostOnly(authority: string): string {
  if (authority.startsWith('[')) return authority.slice(1, authority.indexOf(']'));
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

/** The value of cookie `name` in a Cookie header. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** See the file comment. */
export class UiGuard {
  private readonly sessions = new Map<string, UiSession>();
  /** The CSRF token of password-less (loopback) use. */
  private readonly processCsrf = token();
  private readonly limiter: FailureLimiter;
  private readonly now: () => number;

  constructor(private readonly init: UiGuardInit) {
    this.limiter = init.limiter ?? new FailureLimiter({ burst: 5, perMinute: 5 });
    this.now = init.now ?? Date.now;
  }

  /** True when a login is needed. */
  get passwordRequired(): boolean {
    return this.init.password !== undefined;
  }

  /** Installs the checks on every request of `app`. */
  install(app: FastifyInstance): void {
    app.addHook('onRequest', async (req, reply) => this.check(req, reply));
  }

  private deny(reply: FastifyReply, status: number, error: string, message: string): FastifyReply {
    return reply.code(status).header('cache-control', 'no-store').send({ error, message });
  }

  private async check(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const host = req.headers.host;
    if (host === undefined || (!this.init.anyHost && !isLoopbackHost(hostOnly(host)))) {
      return this.deny(reply, 403, 'forbidden_host', 'this dashboard answers only to http://127.0.0.1:PORT or http://localhost:PORT (the Host header named another name)');
    }
    const path = req.url.split('?', 1)[0] ?? '';
    const session = this.sessionOf(req);
    if (!SAFE_METHODS.has(req.method)) {
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) {
        return this.deny(reply, 403, 'cross_origin', 'requests from another web site are refused: open the dashboard at its own address');
      }
      if (req.headers['sec-fetch-site'] === 'cross-site') return this.deny(reply, 403, 'cross_origin', 'requests from another web site are refused');
      if (path !== '/api/login') {
        const sent = req.headers[CSRF_HEADER];
        const expected = this.init.password === undefined ? this.processCsrf : session?.csrf;
        if (typeof sent !== 'string' || expected === undefined || !secretsEqual(sent, expected)) {
          return this.deny(reply, 403, 'csrf', `send the token of GET /api/session in the ${CSRF_HEADER} header${this.passwordRequired && session === undefined ? ' (log in first)' : ''}`);
        }
      }
    }
    if (this.init.password !== undefined && !isPublic(path) && session === undefined) {
      return this.deny(reply, 401, 'unauthorized', 'log in first: POST /api/login {"password": "…"}');
    }
    return undefined;
  }

  /** The live session a request's cookie names (its idle time restarts), or undefined. */
  sessionOf(req: FastifyRequest): UiSession | undefined {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const s = this.sessions.get(id);
    if (s === undefined) return undefined;
    const t = this.now();
    if (t - s.seen > (this.init.idleMs ?? 12 * 3_600_000)) {
      this.sessions.delete(id);
      return undefined;
    }
    s.seen = t;
    return s;
  }

  /** What GET /api/session answers. */
  describe(req: FastifyRequest): { passwordRequired: boolean; authenticated: boolean; csrf?: string } {
    if (this.init.password === undefined) return { passwordRequired: false, authenticated: true, csrf: this.processCsrf };
    const s = this.sessionOf(req);
    return s === undefined ? { passwordRequired: true, authenticated: false } : { passwordRequired: true, authenticated: true, csrf: s.csrf };
  }

  /**
   * Checks a login. Resolves with the new session's cookie and CSRF token,
   * or a refusal: 429 with the seconds to wait, 401 for a wrong password.
   */
  login(ip: string, password: unknown): { ok: true; cookie: string; csrf: string } | { ok: false; status: 400 | 401 | 429; message: string; retryAfter?: number } {
    if (this.init.password === undefined) return { ok: false, status: 400, message: 'this dashboard has no password: there is nothing to log in to' };
    const wait = this.limiter.retryAfterMs(ip);
    if (wait > 0) return { ok: false, status: 429, message: `too many wrong passwords from ${ip}: try again in ${Math.ceil(wait / 1000)} s`, retryAfter: Math.ceil(wait / 1000) };
    if (typeof password !== 'string' || !secretsEqual(password, this.init.password)) {
      this.limiter.fail(ip);
      return { ok: false, status: 401, message: 'wrong password (it is ui.password, or the first line of --ui-password-file)' };
    }
    const max = this.init.maxSessions ?? 32;
    while (this.sessions.size >= max) {
      const oldest = this.sessions.keys().next();
      if (oldest.done === true) break;
      this.sessions.delete(oldest.value);
    }
    const id = token();
    const s: UiSession = { csrf: token(), seen: this.now() };
    this.sessions.set(id, s);
    return { ok: true, cookie: `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict`, csrf: s.csrf };
  }

  /** Ends the request's session; the cookie that clears it. */
  logout(req: FastifyRequest): string {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id !== undefined) this.sessions.delete(id);
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
  }
}
