/**
 * The client's dashboard API as the page calls it (docs/client-ui-api.md).
 * The page keeps only the CSRF token (from GET /api/session, or the login's
 * answer); with a password the session cookie is HttpOnly and never seen
 * here.
 */

import { api as call, setCsrf } from '../../src/http';

export { ApiError, errorText, whenLoggedOut } from '../../src/http';

/** Calls the client's API; JSON in and out. */
export function api<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  return call<T>(method, path, body, 'the client cannot be reached: is polytun still running?');
}

/** GET /api/session: whether a login is needed; keeps the CSRF token when one is handed out. */
export async function session(): Promise<{ passwordRequired: boolean; authenticated: boolean }> {
  const r = await api<{ passwordRequired: boolean; authenticated: boolean; csrf?: string }>('GET', '/api/session');
  setCsrf(r.csrf ?? null);
  return r;
}

export async function login(password: string): Promise<void> {
  setCsrf((await api<{ csrf: string }>('POST', '/api/login', { password })).csrf);
}

export async function logout(): Promise<void> {
  try {
    await api('POST', '/api/logout');
  } finally {
    setCsrf(null);
  }
}

/** One path of the session (observe/status.ts). */
export interface PathStatus {
  id: number;
  label: string;
  role: string;
  state: string;
  remote: string;
  carrier: string;
  rttMs?: number | null;
  rateBytesPerSec: number;
  inflightBytes: number;
  bytesSent: number;
  bytesReceived: number;
  pingsMissed: number;
  protection?: string;
  transport?: { cc?: string; lossRate?: number; mtu?: number; [k: string]: unknown };
}

/** The client's status snapshot: the JSON of `polytun status --json`. */
export interface ClientStatus {
  role: 'client';
  state: string;
  server: string;
  carrier: string;
  cipher?: string;
  since: string;
  sessionAgeMs: number;
  rttMs?: number;
  bytesSent: number;
  bytesReceived: number;
  streams: number;
  reconnects: number;
  resumes: number;
  newSessions: number;
  lastError?: string;
  paths: PathStatus[];
}

export interface Front {
  kind: string;
  listen: string;
  counters?: Record<string, number>;
}

export interface TimelineEvent {
  at: number;
  kind: string;
  message: string;
  path?: string;
  server?: string;
}

/** What the idle event says before a tunnel runs (polytun ui). */
export interface IdleState {
  message: string;
  state?: 'none' | 'starting' | 'running' | 'failed' | 'stopped';
  error?: string;
}

/** The stable id of a path's history series (src/ui/path-traffic.ts). */
export function seriesId(p: Pick<PathStatus, 'label' | 'carrier'>): string {
  return (p.label.includes('://') ? p.label : `${p.carrier}://${p.label}`).slice(0, 256);
}

export interface LinkSummary {
  server: string;
  carrier: string;
  name?: string;
  credentialKind: string;
  credential: string;
  serverKey: string;
  serverKeyFingerprint: string;
  certificatePin?: string;
  sni?: string;
  hasWsPath: boolean;
}

export interface InterfaceInfo {
  name: string;
  internal: boolean;
  addresses: { address: string; family: string; cidr: string | null }[];
  mtu?: number;
  bindHint?: string;
}

export interface CheckItem {
  id: string;
  title: string;
  result: 'pass' | 'warn' | 'fail' | 'not_offered' | 'not_measured';
  detail: string;
  fix?: string;
  carrier?: string;
  ms?: number;
}

export interface WizardState {
  configFile: string;
  exists: boolean;
  tunnel: { state: 'none' | 'starting' | 'running' | 'failed' | 'stopped'; error?: string };
}
