/**
 * Waits for `done()`, failing only when `progress()` (a counter that grows
 * while things move, e.g. bytes received) stands still for `stallMs`: a
 * liveness check that holds on a slow, loaded machine, not a timing claim.
 * With `stalled: 'settle'` a stall ends the wait quietly instead (a setup
 * step whose later assertions tell what went wrong).
 */
export async function untilDone(what: string, progress: () => number, done: () => boolean, stallMs = 20_000, opts: { stalled?: 'throw' | 'settle'; pollMs?: number } = {}): Promise<void> {
  const pollMs = opts.pollMs ?? 25;
  let last = progress();
  let lastMoved = Date.now();
  while (!done()) {
    await new Promise((r) => setTimeout(r, pollMs));
    const now = progress();
    if (now !== last) {
      last = now;
      lastMoved = Date.now();
    } else if (Date.now() - lastMoved > stallMs) {
      if (opts.stalled === 'settle') return;
      throw new Error(`${what}: no progress for ${stallMs} ms (stuck at ${now})`);
    }
  }
}
