/**
 * Typed errors with stable codes. Every failure polytun reports is a
 * `PolytunError` subclass whose `code` never changes between releases, so
 * callers and log searches can rely on it. The catalogue of codes is
 * core/error-codes.ts.
 */
import type { ErrorCode } from './error-codes.js';

export class PolytunError extends Error {
  /** Stable machine-readable code, `ERR_…`, listed in {@link ERROR_CODES}. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The server does not offer what was asked (a speed test, its view of our address): it predates it. */
export class NotOfferedError extends PolytunError {
  constructor(what: string) {
    super('ERR_NOT_OFFERED', `the server does not offer ${what} (it predates them): update it`);
  }
}

/** A peer sent bytes that break the protocol (bad frame, bad length, bad field). */
export class ProtocolError extends PolytunError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PROTOCOL', message, options);
  }
}

/** A configured limit was exceeded (frame size, buffered bytes, stream count…). */
export class LimitError extends PolytunError {
  readonly limit: string;
  constructor(limit: string, message: string) {
    super('ERR_LIMIT', message);
    this.limit = limit;
  }
}

/** Authentication or decryption failed. Never shown to an unauthenticated peer. */
export class AuthError extends PolytunError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_AUTH', message, options);
  }
}

/** Stable reject reasons the server may send to an authenticated client. */
export const RejectCode = {
  unauthorized: 1,
  unsupportedVersion: 2,
  busy: 3,
  draining: 4,
  sessionUnknown: 5,
  quotaExceeded: 6,
  /** The user exists but an administrator disabled it. */
  disabled: 7,
  /** The user's account has expired. */
  expired: 8,
  /** One side forced a record cipher (`records.cipher`) the other cannot or will not use. */
  cipherMismatch: 9,
} as const;
export type RejectCode = (typeof RejectCode)[keyof typeof RejectCode];

export function rejectName(code: number): string {
  for (const [k, v] of Object.entries(RejectCode)) if (v === code) return k;
  return `unknown(${code})`;
}

/** The server refused the handshake with a typed reason. */
export class RejectedError extends PolytunError {
  readonly reject: number;
  /** The reason in words, when known (e.g. which cipher each side wanted). */
  readonly detail: string | undefined;
  constructor(reject: number, detail?: string) {
    super('ERR_REJECTED', `server rejected the session: ${rejectName(reject)}${detail ? ` (${detail})` : ''}`);
    this.reject = reject;
    this.detail = detail;
  }
}

/** A timer ran out (handshake, connect, idle, liveness). */
export class TimeoutError extends PolytunError {
  constructor(what: string) {
    super('ERR_TIMEOUT', `${what} timed out`);
  }
}

/** The object was closed or aborted; operations on it fail with this. */
export class ClosedError extends PolytunError {
  constructor(what: string, options?: { cause?: unknown }) {
    super('ERR_CLOSED', `${what} is closed`, options);
  }
}

/** An operation was cancelled through an AbortSignal. */
export class AbortedError extends PolytunError {
  constructor(reason?: unknown) {
    super('ERR_ABORTED', 'operation aborted', { cause: reason });
  }
}

/** A stream was reset by the peer or locally, with a wire reset code. */
export class StreamResetError extends PolytunError {
  readonly resetCode: number;
  constructor(resetCode: number, by: 'local' | 'remote') {
    super('ERR_STREAM_RESET', `stream reset by ${by} (code ${resetCode})`);
    this.resetCode = resetCode;
  }
}

/** A config or command-line value is invalid; `where` names file:line:key or the flag. */
export class ConfigError extends PolytunError {
  readonly where: string;
  constructor(where: string, message: string) {
    super('ERR_CONFIG', `${where}: ${message}`);
    this.where = where;
  }
}

const BENIGN = new Set(['ECONNRESET', 'ERR_CONN_RESET', 'EPIPE', 'ECONNABORTED', 'ERR_CLOSED', 'ERR_ABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED', 'ABORT_ERR']);

/**
 * True for errors that are an ordinary part of a connection ending (peer
 * reset, our own abort). Log these at debug, not error.
 */
export function isBenignClose(err: unknown): boolean {
  if (err === undefined || err === null) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && BENIGN.has(code);
}

/** Turns any thrown value into an Error (for `cause` chains and logging). */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
