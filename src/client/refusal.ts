/**
 * What the client says when the server, or our own limits, refuse a
 * connection: one sentence a user can act on ("the server's destination
 * policy refuses 10.0.0.5:22; on the server, `--allow 10.0.0.5:22` lets
 * clients reach it"), logged once per (front, target, status) and interval,
 * and short enough for an HTTP 403/503 body.
 *
 * The wire carries only a SOCKS5-style status byte (src/proxy/wire.ts), so
 * the server's precise rule (loopback, private, deny entry …) is in the
 * server's own log; here we name the target and the flag that opens it.
 */
import { formatHostPort, type Destination } from '../core/address.js';
import { LimitError } from '../core/errors.js';
import { LogLimiter } from '../core/log-limiter.js';
import type { Logger } from '../core/logger.js';
import { ProxyStatus } from '../proxy/wire.js';

/** The sentence for a refusal status byte from the server. */
export function describeStatus(status: number, dest: { host: string; port: number }): string {
  const t = formatHostPort(dest);
  switch (status) {
    case ProxyStatus.notAllowed:
      return `the server's destination policy refuses ${t}; on the server, --allow ${t} (or policy.allow in its config) lets clients reach it`;
    case ProxyStatus.connectionRefused:
      return `${t} refused the connection (nothing listens there, as seen from the server)`;
    case ProxyStatus.hostUnreachable:
      return `${t} is unreachable from the server (no route, no answer, or the name does not resolve)`;
    case ProxyStatus.networkUnreachable:
      return `the server has no route to ${t}`;
    case ProxyStatus.ttlExpired:
      return `the server timed out connecting to ${t}`;
    default:
      return `the server could not connect to ${t} (status 0x${status.toString(16).padStart(2, '0')})`;
  }
}

/** The sentence for a connect that failed on our side before any status (no session, stream limit). */
export function describeLocalFailure(err: unknown, dest: Destination): string {
  if (err instanceof LimitError && err.limit === 'streams') {
    return `${err.message}: ${formatHostPort(dest)} not opened (raise limits.maxStreams on both sides, or close idle connections)`;
  }
  return `cannot open a connection to ${formatHostPort(dest)}: ${err instanceof Error ? err.message : String(err)}`;
}

/** True when `err` is the session's stream limit. */
export function isStreamLimit(err: unknown): boolean {
  return err instanceof LimitError && err.limit === 'streams';
}

/** Refusals a front saw, logged once per key and interval with a count (see LogLimiter). */
export class RefusalLog {
  private readonly limiter: LogLimiter;

  constructor(private readonly log: Logger, intervalMs?: number) {
    this.limiter = new LogLimiter(intervalMs === undefined ? {} : { intervalMs });
  }

  /** A status byte from the server for `dest`. */
  status(front: string, dest: Destination, status: number): void {
    const target = formatHostPort(dest);
    this.limiter.log(this.log, status === ProxyStatus.notAllowed ? 'warn' : 'info', `${front}|${target}|${status}`, { front, target, status }, describeStatus(status, dest));
  }

  /** A failure before the server answered (stream limit, no session). Keyed by the reason, not the target: a flood hits many. */
  local(front: string, dest: Destination, err: unknown): void {
    const key = isStreamLimit(err) ? `${front}|limit` : `${front}|${err instanceof Error ? err.message : String(err)}`;
    this.limiter.log(this.log, 'warn', key, { front, target: formatHostPort(dest) }, describeLocalFailure(err, dest));
  }

  /** Writes pending summaries (at close). */
  flush(): void {
    this.limiter.flush();
  }
}
