/**
 * Resolves on the first SIGINT or SIGTERM; a second one exits at once (an
 * operator pressing Ctrl-C twice wants out, whatever is still draining).
 */
import type { Logger } from '../core/logger.js';

export function waitForShutdown(log: Logger): Promise<string> {
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
  });
}
