/**
 * The admin API as the page calls it. The browser holds a session cookie
 * (HttpOnly: this code never sees it); what the code keeps is the CSRF
 * token the login gave, sent back on every change. The admin token is only
 * ever in the login request's body.
 */

import { api, setCsrf } from './http';

export { api, ApiError, whenLoggedOut } from './http';

/** Logs in with the admin token; the server sets the session cookie. */
export async function login(token: string): Promise<void> {
  setCsrf((await api<{ csrf: string }>('POST', '/api/login', { token })).csrf);
}

/** After a reload: true when the cookie is still a live session (and the CSRF token is known again). */
export async function restore(): Promise<boolean> {
  try {
    const r = await api<{ via: string | null; csrf: string | null }>('GET', '/api/session');
    setCsrf(r.csrf);
    return r.via !== null;
  } catch {
    return false;
  }
}

export async function logout(): Promise<void> {
  try {
    await api('POST', '/api/logout');
  } finally {
    setCsrf(null);
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
