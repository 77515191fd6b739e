/**
 * Browser sessions of the web dashboard: the admin token is typed once into
 * the login form (`POST /api/login`), and the browser then holds a session
 * cookie instead of the token — the token itself never sits in the page,
 * its storage or a URL.
 *
 *   Set-Cookie: polytun_admin=<32 random bytes, base64url>; Path=/; HttpOnly; SameSite=Strict[; Secure]
 *
 * A session also has a CSRF token, handed to the page in the login reply
 * (and by `GET /api/session` after a reload). The page sends it back as
 * `X-Polytun-CSRF` on every POST/PATCH/DELETE; a cookie alone never changes
 * anything (SameSite=Strict already keeps other sites' requests from
 * carrying the cookie; the header is the second lock for older browsers and
 * same-site subdomains). Bearer-token requests are scripts, not browsers:
 * they need no CSRF header.
 *
 * Sessions live in memory only (a restart logs every browser out), expire
 * after `idleMs` without a request and `maxAgeMs` after login, and are
 * bounded in number: past `max` the least recently used one is dropped.
 */
import { randomBytes } from 'node:crypto';
import { secretsEqual } from './tokens.js';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'polytun_admin';
/** Header carrying the CSRF token on state-changing cookie requests. */
export const CSRF_HEADER = 'x-polytun-csrf';

/** Options of {@link WebSessions}. */
export interface WebSessionsInit {
  /** A session unused this long is gone. @default 12 h */
  readonly idleMs?: number;
  /** A session is gone this long after login, used or not. @default 7 days */
  readonly maxAgeMs?: number;
  /** Sessions kept at most; the least recently used goes first. @default 64 */
  readonly max?: number;
  /** Clock (tests). @default Date.now */
  readonly now?: () => number;
}

/** One logged-in browser. */
export interface WebSession {
  readonly id: string;
  /** What `X-Polytun-CSRF` must carry. */
  readonly csrf: string;
  readonly createdAt: number;
  lastSeen: number;
}

/** The dashboard's logged-in browsers. */
export class WebSessions {
  // Keyed by the cookie value itself: a 256-bit random id cannot be guessed
  // through lookup timing any better than by brute force.
  private readonly byId = new Map<string, WebSession>();
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(init: WebSessionsInit = {}) {
    this.idleMs = init.idleMs ?? 12 * 3_600_000;
    this.maxAgeMs = init.maxAgeMs ?? 7 * 86_400_000;
    this.max = init.max ?? 64;
    this.now = init.now ?? Date.now;
  }

  /** A new session (after a correct admin token). */
  create(): WebSession {
    while (this.byId.size >= this.max) {
      const oldest = this.byId.keys().next();
      if (oldest.done === true) break;
      this.byId.delete(oldest.value);
    }
    const t = this.now();
    const s: WebSession = { id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), createdAt: t, lastSeen: t };
    this.byId.set(s.id, s);
    return s;
  }

  /**
   * The live session of cookie value `id`, refreshed (its idle time starts
   * over); undefined when unknown or expired (an expired one is removed).
   */
  touch(id: string | undefined): WebSession | undefined {
    const s = this.peek(id);
    if (s === undefined) return undefined;
    s.lastSeen = this.now();
    // Re-insert: Map order is then "least recently used first" for eviction.
    this.byId.delete(s.id);
    this.byId.set(s.id, s);
    return s;
  }

  /** Like {@link touch} without refreshing it (a live SSE stream checking it is still logged in). */
  peek(id: string | undefined): WebSession | undefined {
    if (id === undefined) return undefined;
    const s = this.byId.get(id);
    if (s === undefined) return undefined;
    const t = this.now();
    if (t - s.lastSeen >= this.idleMs || t - s.createdAt >= this.maxAgeMs) {
      this.byId.delete(id);
      return undefined;
    }
    return s;
  }

  /** Logs a session out. */
  delete(id: string): void {
    this.byId.delete(id);
  }

  /** Sessions held (expired ones may still count until looked up). */
  get size(): number {
    return this.byId.size;
  }

  /** The `Set-Cookie` value that gives the browser session `s`. */
  cookie(s: WebSession, secure: boolean): string {
    return `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}; Max-Age=${Math.floor(this.maxAgeMs / 1000)}`;
  }

  /** The `Set-Cookie` value that removes the session cookie. */
  static clearCookie(secure: boolean): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}; Max-Age=0`;
  }
}

/** The session cookie's value in a `Cookie` header; undefined when absent or not shaped like one of ours. */
export function sessionCookie(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== SESSION_COOKIE) continue;
    const v = part.slice(eq + 1).trim();
    if (/^[A-Za-z0-9_-]{43}$/.test(v)) return v;
  }
  return undefined;
}

/** Methods that change something, and so need the CSRF header when the cookie authenticates them. */
export function isStateChanging(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';
}

/**
 * Why a cookie-authenticated state-changing request is refused, or
 * undefined when it may go on: the CSRF header must equal the session's
 * token, and an `Origin` header, when the browser sent one, must be this
 * server's own (`proto://host` of the request).
 */
export function csrfRefusal(s: WebSession, headers: { readonly origin?: string | undefined; readonly host?: string | undefined; readonly csrf?: string | undefined }, proto: 'http' | 'https'): string | undefined {
  if (headers.csrf === undefined || !secretsEqual(headers.csrf, s.csrf)) return `missing or wrong ${CSRF_HEADER} header`;
  if (headers.origin !== undefined && (headers.host === undefined || headers.origin !== `${proto}://${headers.host}`)) return 'cross-origin request';
  return undefined;
}
