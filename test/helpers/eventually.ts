/**
 * Retries `fn` until it resolves or `ms` pass, waiting `intervalMs` between
 * attempts; rethrows the last failure. For changes that take a moment to
 * travel (LISTEN/NOTIFY, a failover): a liveness check, not a timing claim,
 * so keep `ms` generous.
 */
export async function eventually<T>(fn: () => Promise<T>, ms = 30_000, intervalMs = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

/**
 * Polls the synchronous condition `cond` every `intervalMs` until it holds.
 * The deadline only turns a hang into a readable failure ("waiting for
 * <what>"); it is not a timing claim, so it is generous: a loaded CI machine
 * may take seconds for what takes milliseconds on an idle one.
 */
export async function waitUntil(cond: () => boolean, what: string, ms = 30_000, intervalMs = 10): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Waits until `read()` returns the same value on `stableChecks` consecutive
 * polls (a transfer that has stalled, counters that have settled). It can
 * only wait longer under load, never shorter: each poll is a fresh look.
 */
export async function waitSettled(read: () => number, what: string, opts: { intervalMs?: number; stableChecks?: number; ms?: number } = {}): Promise<number> {
  const { intervalMs = 50, stableChecks = 4, ms = 30_000 } = opts;
  const end = Date.now() + ms;
  let last = read();
  let still = 0;
  while (still < stableChecks) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} to settle`);
    await new Promise((r) => setTimeout(r, intervalMs));
    const now = read();
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}
