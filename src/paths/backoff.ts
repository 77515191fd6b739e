/**
 * The client's reconnect pacing: how long to wait before the next attempt to
 * open a session (at start, and after a session is lost for good), and how
 * to say so in one log line.
 *
 * Delays double from `baseMs` up to `maxMs` with "equal jitter" (half fixed,
 * half random): never 0, so a fleet of clients that lost the same server
 * neither hammers it in lock-step nor retries in a tight loop, and a log
 * line "reconnecting in 2s" means roughly that.
 *
 *   attempt 1 → [0.5, 1) s · 2 → [1, 2) s · 3 → [2, 4) s · 4 → [4, 8) s · ≥ 5 → [5, 10) s
 *
 * The cap is 10 s, not the 30 s or minutes some tunnels use: a user whose
 * VPS rebooted expects the tunnel back within seconds of the server, and one
 * dial every 5-10 s per waiting client costs a server nothing.
 */
import { PolytunError } from '../core/errors.js';

/** Default first delay ceiling, ms. */
export const RECONNECT_BASE_MS = 1000;
/** Default delay cap, ms. */
export const RECONNECT_MAX_MS = 10_000;

export interface BackoffInit {
  /** Ceiling of the first delay. @default 1000 */
  baseMs?: number | undefined;
  /** Ceiling of every delay. @default 10000 */
  maxMs?: number | undefined;
  /** [0, 1) source, injectable for tests. @default Math.random */
  random?: () => number;
}

/** Successive reconnect delays; `reset()` after a success. */
export class Backoff {
  private n = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(init: BackoffInit = {}) {
    this.baseMs = Math.max(1, init.baseMs ?? RECONNECT_BASE_MS);
    this.maxMs = Math.max(this.baseMs, init.maxMs ?? RECONNECT_MAX_MS);
    this.random = init.random ?? Math.random;
  }

  /** Delays handed out since the last reset. */
  get attempts(): number {
    return this.n;
  }

  /** The delay before the next attempt, ms (and counts it). */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.n, 30));
    this.n++;
    const half = ceiling / 2;
    return Math.max(1, Math.floor(half + this.random() * half));
  }

  reset(): void {
    this.n = 0;
  }
}

/** 1500 → "1.5s", 30000 → "30s", 250 → "250ms": the N of "reconnecting in Ns". */
export function formatDelay(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  return `${s < 10 ? Math.round(s * 10) / 10 : Math.round(s)}s`;
}

/**
 * `--retry N`: how many times the client tries again after a failed attempt
 * to open a session before it gives up (exit status 1). Undefined =
 * unlimited; 0 = never (the first failure is final).
 */
export function retriesLeft(maxRetries: number | undefined, failures: number): boolean {
  return maxRetries === undefined || failures <= maxRetries;
}

/** The client stopped trying to reach the server (`--retry N` used up). `cause` is the last failure. */
export class UnreachableError extends PolytunError {
  /** Failed attempts in a row. */
  readonly attempts: number;
  constructor(server: string, attempts: number, maxRetries: number, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    const gaveUp = maxRetries === 0 ? 'not retrying (--retry 0)' : `gave up after ${attempts} attempts (--retry ${maxRetries})`;
    super('ERR_UNREACHABLE', `cannot reach the server ${server}: ${why}; ${gaveUp}`, { cause });
    this.attempts = attempts;
  }
}

/**
 * Failed attempts in a row to reach the server, paced by a {@link Backoff}
 * and bounded by `--retry N`. Refusals are not counted here (they have their
 * own slow retry).
 */
export class FailureCount {
  failures = 0;

  constructor(
    private readonly backoff: Backoff,
    private readonly maxRetries: number | undefined,
    private readonly server: string,
  ) {}

  /** Counts a failure: the delay before the next attempt, or the UnreachableError to give up with. */
  failed(err: unknown): number | UnreachableError {
    this.failures++;
    if (!retriesLeft(this.maxRetries, this.failures)) return new UnreachableError(this.server, this.failures, this.maxRetries ?? 0, err);
    return this.backoff.next();
  }
}
