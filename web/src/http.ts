/**
 * How both dashboards (the server's, the client's) call their API: JSON in
 * and out, the session cookie sent by the browser (HttpOnly: never seen
 * here), and the CSRF token the login or GET /api/session gave sent back
 * on every change. A 401 outside the login means the session is gone.
 */

/** A refused request: the API's `{ error, message, field?, issues? }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly issues: readonly { where: string; message: string }[] = [],
  ) {
    super(message);
  }
}

/** What to show for a failure: the API's message, or the error's own. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

let csrf: string | null = null;
let onLoggedOut: () => void = () => {};

/** The token sent back on changes (null: none yet, or logged out). */
export function setCsrf(token: string | null): void {
  csrf = token;
}

/** What to do when the API says the session is gone (401). */
export function whenLoggedOut(f: () => void): void {
  onLoggedOut = f;
}

/** Calls the API; JSON in and out. `unreachable` is the message when the server cannot be reached. */
export async function api<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, unreachable = 'the server cannot be reached'): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf !== null) headers['x-polytun-csrf'] = csrf;
  let r: Response;
  try {
    r = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch {
    throw new ApiError(0, 'network', unreachable);
  }
  const j = (await r.json().catch(() => ({}))) as { error?: string; message?: string; field?: string; issues?: { where: string; message: string }[] };
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/login') {
      csrf = null;
      onLoggedOut();
    }
    throw new ApiError(r.status, j.error ?? 'error', j.message ?? `HTTP ${r.status}`, j.field, j.issues ?? []);
  }
  return j as T;
}
