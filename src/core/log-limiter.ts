/**
 * One log line per (key, interval) instead of one per event: the first
 * event of a key is logged at once; the same key again within `intervalMs`
 * is only counted, and when the interval ends a single line reports how many
 * were held back (`repeated=975 perSeconds=1`). A flood of identical events
 * (1,000 connections over a limit in one second, a client retrying a denied
 * target) then costs two lines, and the count still tells how bad it was.
 *
 *   event(key) ──first in window──▶ logged now, window opens
 *        │
 *        └── again in window ──▶ counted ──window ends──▶ one summary line (if count > 0)
 *
 * Keys are chosen by the caller (`user|rule`, `stream-limit`); at most
 * `maxKeys` windows are open at once (the oldest is closed, its summary
 * written, when more arrive), so a peer choosing keys cannot grow memory.
 * Timers are unref'd: a pending summary never keeps the process alive.
 */
import type { Logger } from './logger.js';

/** One line per this interval for a repeated limit or refusal event, ms (the servers' listeners, handshakes, mtt misses). */
export const LIMIT_LOG_INTERVAL_MS = 60_000;

/** A level {@link LogLimiter} can write at. */
export type LimitedLevel = 'debug' | 'info' | 'warn' | 'error';

/** Options of {@link LogLimiter}. */
export interface LogLimiterInit {
  /** Window per key. @default 10000 */
  intervalMs?: number;
  /** Windows open at once. @default 1000 */
  maxKeys?: number;
}

interface Window {
  readonly log: Logger;
  readonly level: LimitedLevel;
  readonly msg: string;
  obj: object;
  held: number;
  timer: NodeJS.Timeout;
}

/** See the file comment. */
export class LogLimiter {
  readonly intervalMs: number;
  private readonly maxKeys: number;
  private readonly windows = new Map<string, Window>();

  constructor(init: LogLimiterInit = {}) {
    this.intervalMs = init.intervalMs ?? 10_000;
    this.maxKeys = init.maxKeys ?? 1000;
  }

  /**
   * Logs `msg` with `obj` at `level` on `log`, unless `key` was logged
   * within the interval (then it is counted for the summary line).
   * @returns true when this call wrote the line
   */
  log(log: Logger, level: LimitedLevel, key: string, obj: object, msg: string): boolean {
    const open = this.windows.get(key);
    if (open) {
      open.held++;
      open.obj = obj; // the summary shows the latest event's fields
      return false;
    }
    if (this.windows.size >= this.maxKeys) {
      const oldest = this.windows.keys().next().value as string;
      this.close(oldest);
    }
    log[level](obj, msg);
    const timer = setTimeout(() => this.close(key), this.intervalMs);
    timer.unref();
    this.windows.set(key, { log, level, msg, obj, held: 0, timer });
    return true;
  }

  /** Writes every pending summary now and forgets all windows (on shutdown). */
  flush(): void {
    for (const key of [...this.windows.keys()]) this.close(key);
  }

  private close(key: string): void {
    const w = this.windows.get(key);
    if (!w) return;
    this.windows.delete(key);
    clearTimeout(w.timer);
    if (w.held > 0) w.log[w.level]({ ...w.obj, repeated: w.held, perSeconds: Math.round(this.intervalMs / 1000) }, `${w.msg} (repeated)`);
  }
}
