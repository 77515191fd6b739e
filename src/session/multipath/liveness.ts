/**
 * Liveness of each path: a PING every interval (faster while a joining path
 * warms up), a deadline for its PONG, and the verdicts.
 *
 * ```
 *   tick ──PING──▶ pong in time ──▶ healthy (joining: up after pathUpAfterMs; suspended: back)
 *              └──▶ deadline ──▶ acknowledgements or data still arrive? ──▶ alive, ping again
 *                                └──▶ missed: suspended if another path is up;
 *                                     maxMissed in a row: the path is aborted
 * ```
 */
import type { Clock } from '../../core/clock.js';
import { TimeoutError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { SessionPath } from './path.js';
import type { PathScheduler } from './scheduler.js';

/** What liveness asks of its session. */
export interface LivenessHost {
  nextPingId(): number;
  scheduleFlush(): void;
  /** `p` missed a pong while another path is up and was suspended: move its frames, restate control. */
  pathSuspect(p: SessionPath): void;
  /** A joining path proved healthy for long enough and is up. */
  pathUp(p: SessionPath): void;
}

export interface LivenessOptions {
  pingIntervalMs: number;
  pingTimeoutMs: number;
  maxMissed: number;
  pathUpAfterMs: number;
}

export class Liveness {
  constructor(
    private readonly host: LivenessHost,
    private readonly scheduler: PathScheduler,
    private readonly log: Logger,
    private readonly opts: LivenessOptions,
    private readonly clock: Clock,
  ) {}

  /** (Re)starts the ping interval of `p`: faster while it warms up. */
  start(p: SessionPath): void {
    const { pingIntervalMs, pathUpAfterMs } = this.opts;
    const every = pathUpAfterMs > 0 && !p.up ? Math.min(pingIntervalMs, Math.max(50, pathUpAfterMs / 4)) : pingIntervalMs;
    p.setPingTimer(this.clock.setInterval(() => this.tick(p), every));
  }

  /** Sends a liveness PING on `p` (unless one is outstanding) and arms its deadline. */
  tick(p: SessionPath): void {
    if (!this.scheduler.has(p) || p.outstandingPing !== undefined) return;
    const id = this.host.nextPingId();
    p.beginPing(id, this.clock.now());
    const deliveredAtPing = p.deliveredBytes;
    const receivedAtPing = p.channel.bytesIn;
    this.host.scheduleFlush();
    p.setPingDeadline(this.clock.setTimeout(() => this.expired(p, id, deliveredAtPing, receivedAtPing), this.opts.pingTimeoutMs));
  }

  private expired(p: SessionPath, id: number, deliveredAtPing: number, receivedAtPing: number): void {
    if (!p.expirePing(id)) return;
    // A path whose frames are being acknowledged, or on which data keeps
    // arriving, is alive: its pong is just queued behind that data (a
    // downloading client sends almost nothing to be acknowledged).
    if (p.deliveredBytes > deliveredAtPing || p.channel.bytesIn > receivedAtPing + 1024) {
      this.tick(p);
      return;
    }
    const missed = p.missPong();
    this.log.debug({ path: p.label, missed }, 'pong missed');
    // Bonding: a path that missed a pong is suspect; stop giving it data and
    // send what it holds on the others now, instead of waiting for the verdict.
    if (p.up && this.scheduler.anotherUp(p)) {
      p.suspend();
      this.host.pathSuspect(p);
    }
    if (missed >= this.opts.maxMissed) {
      this.log.info({ path: p.label, missed }, 'path unresponsive; dropping it');
      p.channel.abort(new TimeoutError('liveness (missed pongs)'));
    } else this.tick(p);
  }

  /** A PONG on `p` that is not a probe's: settles its liveness ping if it is that one. */
  onPong(p: SessionPath, id: number, now: number): void {
    if (!p.answerPing(id, now)) return;
    if (p.suspended) {
      // It answered after all: take it back at once (it was up before).
      p.unsuspend();
      this.host.scheduleFlush();
    } else if (!p.up && now - (p.healthySince as number) >= this.opts.pathUpAfterMs) {
      p.markUp(now);
      this.start(p); // back to the normal probe interval
      this.log.info({ path: p.label }, 'path up');
      this.host.pathUp(p);
    }
  }
}
