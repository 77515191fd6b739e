/**
 * Time, injected. Code that measures or waits takes a Clock instead of
 * calling Date.now / performance.now / setTimeout itself, so tests can drive
 * it by hand (ManualClock) instead of sleeping: the session's scheduler,
 * liveness and reliability run under a fake clock in their unit tests.
 *
 * Timers of a clock never keep the process alive on their own (the real
 * ones are unref'd: a session's pings, ACK delay and grace period must not
 * hold a CLI open); `sleep` is the one wait that does.
 */

declare const timerBrand: unique symbol;
/** An armed timer (opaque); give it back to {@link Clock.clear}. */
export type TimerHandle = { readonly [timerBrand]: true };

export interface Clock {
  /** Milliseconds, monotonic, with sub-millisecond resolution; only differences mean anything. */
  now(): number;
  /** Calls `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Calls `fn` every `ms`. */
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Disarms a timer (either kind); undefined and fired timers are fine. */
  clear(t: TimerHandle | undefined): void;
  /** Resolves after `ms` (keeps the process alive meanwhile). */
  sleep(ms: number): Promise<void>;
}

/** The clock of the running process: performance.now() and Node's timers, unref'd. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t as unknown as TimerHandle;
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref();
    return t as unknown as TimerHandle;
  },
  clear(t) {
    // clearTimeout clears intervals too (one timer type in Node).
    if (t !== undefined) clearTimeout(t as unknown as NodeJS.Timeout);
  },
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

interface ManualTimer {
  at: number;
  every: number;
  fn: () => void;
  seq: number;
  live: boolean;
}

/**
 * A clock that moves only when told (tests). Timers fire in time order
 * (ties in the order they were armed) inside advance(), synchronously, with
 * now() at their due time.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Set<ManualTimer>();

  constructor(start = 1000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.arm(fn, ms, 0);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.arm(fn, ms, Math.max(1, ms));
  }

  private arm(fn: () => void, ms: number, every: number): TimerHandle {
    const timer: ManualTimer = { at: this.t + Math.max(0, ms), every, fn, seq: this.seq++, live: true };
    this.timers.add(timer);
    return timer as unknown as TimerHandle;
  }

  clear(t: TimerHandle | undefined): void {
    if (t === undefined) return;
    const timer = t as unknown as ManualTimer;
    timer.live = false;
    this.timers.delete(timer);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.setTimeout(r, ms));
  }

  /** Timers armed and not yet fired or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const x of this.timers) if (x.at <= end && (!next || x.at < next.at || (x.at === next.at && x.seq < next.seq))) next = x;
      if (!next) break;
      this.t = Math.max(this.t, next.at);
      if (next.every > 0) {
        next.at += next.every;
        next.seq = this.seq++;
      } else this.timers.delete(next);
      next.fn();
    }
    this.t = end;
  }
}
