/**
 * Per-key token buckets (one per client IP) that meter failures: each
 * failure takes a token, tokens come back at a steady rate, and a key with
 * no token left is refused before any expensive work (a password hash).
 * Memory is bounded: past `maxKeys` the least recently failed key is
 * forgotten (the one whose bucket has had the longest to refill).
 */

/** Options of {@link FailureLimiter}. */
export interface FailureLimiterInit {
  /** Failures allowed in a burst. @default 5 */
  readonly burst?: number;
  /** Tokens returned per minute. @default 5 */
  readonly perMinute?: number;
  /** Keys tracked at most. @default 10000 */
  readonly maxKeys?: number;
  /** Clock (tests). @default Date.now */
  readonly now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Failure-metering token buckets keyed by client (IP address). */
export class FailureLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly perMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(init: FailureLimiterInit = {}) {
    this.burst = init.burst ?? 5;
    this.perMs = (init.perMinute ?? 5) / 60_000;
    this.maxKeys = init.maxKeys ?? 10_000;
    this.now = init.now ?? Date.now;
  }

  private refill(key: string): Bucket | undefined {
    const b = this.buckets.get(key);
    if (b === undefined) return undefined;
    const t = this.now();
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, t - b.at) * this.perMs);
    b.at = t;
    return b;
  }

  /**
   * Milliseconds until `key` may try again; 0 when it may try now.
   */
  retryAfterMs(key: string): number {
    const b = this.refill(key);
    if (b === undefined || b.tokens >= 1) return 0;
    return Math.ceil((1 - b.tokens) / this.perMs);
  }

  /** Records a failure of `key` (takes one token). */
  fail(key: string): void {
    let b = this.refill(key);
    if (b === undefined) {
      this.evict();
      b = { tokens: this.burst, at: this.now() };
    }
    b.tokens = Math.max(0, b.tokens - 1);
    // Re-insert: Map order is then "least recently failed first" for eviction.
    this.buckets.delete(key);
    this.buckets.set(key, b);
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.buckets.size;
  }

  private evict(): void {
    while (this.buckets.size >= this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done === true) break;
      this.buckets.delete(oldest.value);
    }
  }
}
