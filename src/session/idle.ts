/**
 * The idle timeout of a session: closes it after `timeoutMs` with no stream
 * and no datagram. Checked every quarter of the timeout (at most every 30 s,
 * at least every 50 ms) rather than rearmed on every activity: touch() is on
 * the datagram path and must stay one store.
 */
import type { Clock, TimerHandle } from '../core/clock.js';

export class IdleWatch {
  private lastActivity: number;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly timeoutMs: number,
    /** Whether streams are open (they count as activity). */
    private readonly busy: () => boolean,
    /** Called once idle for timeoutMs (and again each check while still idle). */
    private readonly onIdle: () => void,
    private readonly clock: Clock,
  ) {
    this.lastActivity = clock.now();
    if (timeoutMs <= 0) return;
    this.timer = clock.setInterval(() => this.check(), Math.max(50, Math.min(timeoutMs / 4, 30_000)));
  }

  touch(): void {
    this.lastActivity = this.clock.now();
  }

  private check(): void {
    if (this.busy()) {
      this.lastActivity = this.clock.now();
      return;
    }
    if (this.clock.now() - this.lastActivity >= this.timeoutMs) this.onIdle();
  }

  stop(): void {
    this.clock.clear(this.timer);
    this.timer = undefined;
  }
}
