/**
 * The admin API as the page calls it. The browser holds a session cookie
 * (HttpOnly: this code never sees it); what the code keeps is the CSRF
 * token the login gave, sent back on every change. The admin token is only
 * ever in the login request's body.
 */

/** A refused request: the API's `{ error, message, field? }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;
let onLoggedOut: () => void = () => {};

/** What to do when the server says the session is gone (401). */
export function whenLoggedOut(f: () => void): void {
  onLoggedOut = f;
}

/** Calls the API; JSON in and out. */
export async function api<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf !== null) headers['x-polytun-csrf'] = csrf;
  let r: Response;
  try {
    r = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch {
    throw new ApiError(0, 'network', 'the server cannot be reached');
  }
  const j = (await r.json().catch(() => ({}))) as { error?: string; message?: string; field?: string };
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/login') {
      csrf = null;
      onLoggedOut();
    }
    throw new ApiError(r.status, j.error ?? 'error', j.message ?? `HTTP ${r.status}`, j.field);
  }
  return j as T;
}

/** Logs in with the admin token; the server sets the session cookie. */
export async function login(token: string): Promise<void> {
  const r = await api<{ csrf: string }>('POST', '/api/login', { token });
  csrf = r.csrf;
}

/** After a reload: true when the cookie is still a live session (and the CSRF token is known again). */
export async function restore(): Promise<boolean> {
  try {
    const r = await api<{ via: string | null; csrf: string | null }>('GET', '/api/session');
    csrf = r.csrf;
    return r.via !== null;
  } catch {
    return false;
  }
}

export async function logout(): Promise<void> {
  try {
    await api('POST', '/api/logout');
  } finally {
    csrf = null;
  }
}

/** A user as the API shows it. */
export interface User {
  id: string;
  name: string;
  kind: 'key' | 'token';
  enabled: boolean;
  quotaBytes: number | null;
  expiresAt: number | null;
  /** Bytes per second, or null: the server's udp.maxRate alone. */
  udpMaxRate: number | null;
  createdAt: number;
  bytesUp: number;
  bytesDown: number;
  wssPath: string | null;
}

export interface PathInfo {
  carrier: string;
  remote: string;
  role: string;
  state: string;
  rttMs: number | null;
  rateBytesPerSec: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface SessionInfo {
  id: string;
  userId: string | null;
  userName: string | null;
  remote: string;
  startedAt: number;
  state: string;
  streams: number;
  paths: number;
  rttMs: number | null;
  bytesSent: number;
  bytesReceived: number;
  carrier?: string;
  pathList?: PathInfo[];
}

export interface LiveSnapshot {
  at: number;
  sessions: number;
  usersOnline: number;
  rateIn: number;
  rateOut: number;
  bytesIn: number;
  bytesOut: number;
  draining: boolean;
  listeners: { carrier: string; address: string; port: number; paths: number }[];
  counters: Record<string, number>;
}

export interface HistoryPoint {
  at: number;
  up: number;
  down: number;
}
