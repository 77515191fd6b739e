/**
 * The paths layer's one retry loop: try, and after a failure let the caller
 * classify it (wait N ms and try again, stop, or throw). Opening a new
 * session after an outage (SessionClient.renew), the patient first connect
 * (connectPersistently) and a failover round (FailoverClient) all run on it,
 * each with its own words for the log; the pacing itself is backoff.ts.
 */
import { ConfigError, toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { CertificateError } from '../carriers/errors.js';
import { Backoff, FailureCount, formatDelay } from './backoff.js';
import { RefusedError, refusalMessage, refusalOf } from './refusal.js';

export interface RetryInit<T> {
  /** Wait this long before the first attempt, ms (0: at once). */
  firstDelayMs: number;
  attempt(): Promise<T>;
  /** After a failed attempt: ms until the next, or undefined to stop (the loop then resolves undefined). May throw to stop with an error. */
  failed(err: unknown): number | undefined;
  /** Waits `ms`; false when the wait was cut short (closed, aborted): the loop then resolves undefined. */
  wait(ms: number): Promise<boolean>;
}

/** Runs `attempt` until it succeeds (its result) or `failed`/`wait` say stop (undefined). */
export async function keepTrying<T>(r: RetryInit<T>): Promise<T | undefined> {
  let delay = r.firstDelayMs;
  for (;;) {
    if (delay > 0 && !(await r.wait(delay))) return undefined;
    try {
      return await r.attempt();
    } catch (err) {
      const next = r.failed(err);
      if (next === undefined) return undefined;
      delay = next;
    }
  }
}

/** A wait for keepTrying() that ends early (false) when `signal` fires. Ref'd unless `unref`. */
export function waitUnlessAborted(signal: AbortSignal, unref = false): (ms: number) => Promise<boolean> {
  return (ms) =>
    new Promise<boolean>((resolve) => {
      if (signal.aborted) return resolve(false);
      const onAbort = (): void => {
        clearTimeout(t);
        resolve(false);
      };
      const t = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      if (unref) t.unref();
      signal.addEventListener('abort', onAbort, { once: true });
    });
}

export interface PersistentConnect {
  /** Between attempts while the server refuses us; 0: a refusal is thrown as a RefusedError. */
  refusedRetryMs: number;
  /** Failed attempts to reach the server tried again at most this often (undefined: forever), then an UnreachableError is thrown. */
  maxRetries: number | undefined;
  /** host:port, for messages. */
  server: string;
}

/**
 * The first connect of a long-running client. A refusal is logged once per
 * reason and tried again every `refusedRetryMs` (0: thrown as a
 * RefusedError); a server that cannot be reached (down, not started yet, a
 * network not up yet) is tried again with backoff, one `reconnecting in Ns`
 * line per attempt, up to `maxRetries` times (then thrown as an
 * UnreachableError). A certificate that does not match the link's pin, or a
 * config error, is thrown at once. False when `signal` fired while waiting.
 */
export async function connectPersistently(
  client: { connect(signal?: AbortSignal): Promise<unknown> },
  opts: PersistentConnect,
  log: Logger,
  signal: AbortSignal,
): Promise<boolean> {
  let logged: string | undefined;
  const count = new FailureCount(new Backoff(), opts.maxRetries, opts.server);
  const connected = await keepTrying({
    firstDelayMs: 0,
    attempt: async () => {
      await client.connect(signal);
      if (logged !== undefined) log.info({ was: logged }, 'server accepts us again');
      if (count.failures > 0) log.info({ server: opts.server, attempts: count.failures + 1 }, 'server reachable');
      return true;
    },
    failed: (err) => {
      if (signal.aborted) return undefined;
      const why = refusalOf(err);
      // A certificate that does not match the link's pin, or a local config problem: retrying cannot help.
      if (err instanceof CertificateError || err instanceof ConfigError) throw err;
      if (why === undefined) {
        const retryMs = count.failed(err);
        if (typeof retryMs !== 'number') throw retryMs;
        log.info({ server: opts.server, attempt: count.failures, err: toError(err).message }, `cannot connect to the server; reconnecting in ${formatDelay(retryMs)}`);
        return retryMs;
      }
      if (opts.refusedRetryMs === 0) throw new RefusedError(why, err);
      if (why !== logged) log.error({}, refusalMessage(why, opts.refusedRetryMs));
      logged = why;
      return opts.refusedRetryMs;
    },
    // A ref'd timer: nothing else keeps the process alive before the fronts are up.
    wait: waitUnlessAborted(signal),
  });
  return connected === true;
}

