/**
 * Carrier-level typed errors. Socket failures keep the operating system's
 * errno (`ECONNREFUSED`, `EADDRINUSE`, …) in `.errno`, while `.code` stays a
 * stable polytun `ERR_…` code like every other PolytunError.
 */
import { AuthError, PolytunError } from '../core/errors.js';

/** Reads the errno-style code (`ECONNREFUSED`…) of a Node error, if any. */
export function errnoOf(err: unknown): string {
  if (err === null || typeof err !== 'object') return 'EUNKNOWN';
  const e = err as { errno?: unknown; code?: unknown; errors?: unknown };
  if (typeof e.errno === 'string') return e.errno;
  if (typeof e.code === 'string') return e.code;
  // happy eyeballs (autoSelectFamily) reports an AggregateError of attempts
  if (Array.isArray(e.errors) && e.errors.length > 0) return errnoOf(e.errors[0]);
  return 'EUNKNOWN';
}

/** A dial failed at the socket level (refused, unreachable, reset during connect…). */
export class DialError extends PolytunError {
  /** The OS error code, e.g. `ECONNREFUSED`. */
  readonly errno: string;
  /** The printable endpoint that was dialled. */
  readonly target: string;
  constructor(target: string, errno: string, options?: { cause?: unknown }) {
    super('ERR_DIAL', `dial ${target} failed: ${errno}`, options);
    this.errno = errno;
    this.target = target;
  }
}

/** Binding a listening socket failed (address in use, permission…). */
export class ListenError extends PolytunError {
  /** The OS error code, e.g. `EADDRINUSE`. */
  readonly errno: string;
  readonly target: string;
  constructor(target: string, errno: string, options?: { cause?: unknown }) {
    super('ERR_LISTEN', `listen on ${target} failed: ${errno}`, options);
    this.errno = errno;
    this.target = target;
  }
}

/**
 * The peer tore the connection down abruptly. Raised by in-memory carriers to
 * mimic a TCP RST; `.errno` is `ECONNRESET` as a real socket would report.
 */
export class ConnectionResetError extends PolytunError {
  readonly errno = 'ECONNRESET';
  constructor(what: string) {
    super('ERR_CONN_RESET', `${what}: connection reset by peer`);
  }
}

/**
 * The server's TLS certificate was not accepted: pin mismatch, CA
 * verification failure or hostname mismatch. `.reason` says which
 * (`pin-mismatch`, or the OpenSSL/Node verification code).
 */
export class CertificateError extends AuthError {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}
