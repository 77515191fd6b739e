/**
 * Retries `fn` until it resolves or `ms` pass, waiting `intervalMs` between
 * attempts; rethrows the last failure. For changes that take a moment to
 * travel (LISTEN/NOTIFY, a failover): a liveness check, not a timing claim,
 * so keep `ms` generous.
 */
export async function eventually<T>(fn: () => Promise<T>, ms = 10_000, intervalMs = 100): Promise<T> {
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
