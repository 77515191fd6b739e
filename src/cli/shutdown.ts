/**
 * Resolves on the first SIGINT or SIGTERM; a second one exits at once (an
 * operator pressing Ctrl-C twice wants out, whatever is still draining).
 * With `signal`, its abort resolves it too ('abort'), and the signal
 * handlers are removed then (a tunnel `polytun ui` restarts leaves none behind).
 */
import type { Logger } from '../core/logger.js';

export function waitForShutdown(log: Logger, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (sig: NodeJS.Signals): void => {
      if (seen) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(130);
      }
      seen = true;
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
    const onAbort = (): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve('abort');
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
