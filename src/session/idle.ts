/**
 * The idle timeout of a session: closes it after `timeoutMs` with no stream
 * and no datagram. Checked every quarter of the timeout (at most every 30 s,
 * at least every 50 ms) rather than rearmed on every activity: touch() is on
 * the datagram path and must stay one store.
 */
export class IdleWatch {
  private lastActivity = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    /** Whether streams are open (they count as activity). */
    private readonly busy: () => boolean,
    /** Called once idle for timeoutMs (and again each check while still idle). */
    private readonly onIdle: () => void,
  ) {
    if (timeoutMs <= 0) return;
    this.timer = setInterval(() => this.check(), Math.max(50, Math.min(timeoutMs / 4, 30_000)));
    this.timer.unref();
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  private check(): void {
    if (this.busy()) {
      this.lastActivity = Date.now();
      return;
    }
    if (Date.now() - this.lastActivity >= this.timeoutMs) this.onIdle();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
