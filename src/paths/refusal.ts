/**
 * Refusals: the server will not have this user (unknown key, disabled,
 * expired, over quota) or ended the session for such a reason (kicked,
 * quota, expiry). Trying again at once cannot help and only loads the
 * server, so the supervisor says why once and retries slowly (see
 * session-client.ts).
 */
import { PolytunError, RejectCode, RejectedError } from '../core/errors.js';
import { CloseCode, SessionClosedError } from '../session/session.js';

/** Default of `SessionClientInit.refusedRetryMs`. */
export const DEFAULT_REFUSED_RETRY_MS = 60_000;

/**
 * Why the server will not have us, in words for a log line, when `err` is a
 * refusal that retrying soon cannot fix; undefined for anything else
 * (network errors, busy, draining, a session the server forgot, idle or
 * shutdown closes), which the normal backoff handles.
 */
export function refusalOf(err: unknown): string | undefined {
  if (err instanceof RejectedError) {
    switch (err.reject) {
      case RejectCode.unauthorized:
        return 'key not accepted (no such user: deleted, re-keyed or never added)';
      case RejectCode.disabled:
        return 'user disabled';
      case RejectCode.expired:
        return 'account expired';
      case RejectCode.quotaExceeded:
        return 'traffic quota exceeded';
      case RejectCode.cipherMismatch:
        return `no common record cipher: ${err.detail ?? 'one side forced a cipher the other does not use'} (records.cipher / --cipher)`;
      default:
        return undefined;
    }
  }
  if (err instanceof SessionClosedError && err.by === 'remote') {
    switch (err.closeCode) {
      case CloseCode.kicked:
        return 'session kicked';
      case CloseCode.quota:
        return 'traffic quota exceeded';
      case CloseCode.expired:
        return 'account expired';
      default:
        return undefined;
    }
  }
  return undefined;
}

/** The server refused us and the client stopped trying (`refusedRetryMs` 0). `cause` is the server's answer. */
export class RefusedError extends PolytunError {
  /** What {@link refusalOf} said. */
  readonly reason: string;
  constructor(reason: string, cause: unknown) {
    super('ERR_REFUSED', `server refused: ${reason}`, { cause });
    this.reason = reason;
  }
}

/** The one log line of a refusal: `server refused: user disabled; trying again every 60 s`. */
export function refusalMessage(why: string, retryInMs: number | null): string {
  if (retryInMs === null || retryInMs <= 0) return `server refused: ${why}; not trying again`;
  const every = retryInMs < 1000 ? `${retryInMs} ms` : `${Math.round(retryInMs / 100) / 10} s`;
  return `server refused: ${why}; trying again every ${every}`;
}
