/**
 * The one place where a dial's timeout and AbortSignal are enforced, so every
 * carrier cancels the same way: the caller's signal → AbortedError, the
 * deadline → TimeoutError, and a connection that completes after the caller
 * gave up is disposed of instead of leaking.
 */
import { AbortedError, TimeoutError } from '../core/errors.js';
import { throwIfAborted } from '../core/abort.js';
import type { DialOptions } from './types.js';

/** Default dial deadline (DialOptions.timeoutMs). */
export const DEFAULT_DIAL_TIMEOUT_MS = 10_000;

/**
 * Runs `attempt` under `opts.timeoutMs` and `opts.signal`.
 *
 * `attempt` receives an internal signal that fires on either; it should tear
 * down what it created and reject when it fires. Should it resolve anyway
 * after the race is lost, `dispose` is called on the late value.
 */
export async function guardDial<T>(
  what: string,
  opts: DialOptions | undefined,
  attempt: (signal: AbortSignal) => Promise<T>,
  dispose: (late: T) => void,
): Promise<T> {
  const outer = opts?.signal;
  throwIfAborted(outer);
  const ac = new AbortController();
  const onOuterAbort = (): void => ac.abort(new AbortedError(outer?.reason));
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  // Not unref'd: a dial someone awaits is pending work, and the deadline
  // guarantees it settles; an in-memory dial has no socket to keep us alive.
  const timer = setTimeout(() => ac.abort(new TimeoutError(what)), opts?.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS);

  let cancelled: (reason: unknown) => void = () => undefined;
  const cancelledP = new Promise<never>((_, reject) => {
    cancelled = reject;
  });
  const onAbort = (): void => cancelled(ac.signal.reason);
  ac.signal.addEventListener('abort', onAbort, { once: true });

  const work = attempt(ac.signal);
  try {
    return await Promise.race([work, cancelledP]);
  } catch (err) {
    // The attempt may still settle after we gave up: dispose of a late
    // success; a late failure is expected (we cancelled it) and dropped here
    // on purpose, since the caller already has the real reason.
    work.then(dispose, () => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onOuterAbort);
    ac.signal.removeEventListener('abort', onAbort);
  }
}
