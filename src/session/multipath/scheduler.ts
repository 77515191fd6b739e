/**
 * The paths of a session and which one the next record goes on. Each record
 * goes on the usable path with the earliest expected delivery (path.ts), and
 * the scheduler asks for bonding probes (probes.ts) while it picks. A single
 * path (the common case) takes a short cut: no arrays, no estimates.
 *
 * Usable: up paths of role 'primary', or the up backups when no primary is
 * up. Control frames and datagrams take any writable path, fastest first.
 */
import type { Clock } from '../../core/clock.js';
import type { RecordChannel } from '../../secure/record-channel.js';
import { SessionPath, type PathOptions } from './path.js';

/** What the scheduler asks of its session. */
export interface SchedulerHost {
  /** A fresh ping id (shared with liveness and Session.ping: ids must not collide). */
  nextPingId(): number;
  /** A probe PING was requested: a flush must write it. */
  scheduleFlush(): void;
}

export class PathScheduler {
  /** Live paths by id. */
  readonly paths = new Map<number, SessionPath>();
  private nextPathId = 1;

  constructor(
    private readonly host: SchedulerHost,
    private readonly pathUpAfterMs: number,
    private readonly clock: Clock,
  ) {}

  get size(): number {
    return this.paths.size;
  }

  /** A new path; up at once when it is the only one or no warm-up is configured. */
  add(channel: RecordChannel, opts: PathOptions): SessionPath {
    const up = this.paths.size === 0 || this.pathUpAfterMs === 0;
    const path = new SessionPath(this.nextPathId++, channel, opts, up, this.clock);
    if (up) path.markUp(this.clock.now());
    this.paths.set(path.id, path);
    return path;
  }

  /** Forgets `path`; false when it was not (or no longer) one of ours. */
  remove(path: SessionPath): boolean {
    if (this.paths.get(path.id) !== path) return false;
    this.paths.delete(path.id);
    path.stopTimers();
    return true;
  }

  has(path: SessionPath): boolean {
    return this.paths.get(path.id) === path;
  }

  /** The largest record a path sends unreliably, less `header` bytes; undefined when none can (streams only). */
  unreliableRoom(header: number): number | undefined {
    let max = 0;
    for (const p of this.paths.values()) max = Math.max(max, p.channel.maxUnreliableRecord ?? 0);
    return max > header ? max - header : undefined;
  }

  /** Whether some path other than `p` is up. */
  anotherUp(p: SessionPath): boolean {
    for (const o of this.paths.values()) if (o !== p && o.up) return true;
    return false;
  }

  /** A suspect path is better than none: if no path is up any more, take suspended ones back. */
  reviveIfNoneUp(): void {
    for (const o of this.paths.values()) if (o.up) return;
    for (const o of this.paths.values()) if (o.suspended) o.unsuspend();
  }

  /** Smoothed RTT of the fastest usable path. */
  get rttMs(): number | undefined {
    let best: number | undefined;
    for (const p of this.paths.values()) if (p.up && p.srtt !== undefined && (best === undefined || p.srtt < best)) best = p.srtt;
    return best;
  }

  /** The round trip a stream window must cover: the slowest usable path's (10 ms until measured). */
  windowRttMs(): number {
    let worst = 0;
    for (const p of this.paths.values()) if (p.up && p.srtt !== undefined && p.srtt > worst) worst = p.srtt;
    return worst > 0 ? worst : 10;
  }

  /** The usable paths new frames may use: primaries, or backups when no primary is up. */
  private usablePaths(): SessionPath[] {
    const up = [...this.paths.values()].filter((p) => p.up);
    const primaries = up.filter((p) => p.role === 'primary');
    return primaries.length > 0 ? primaries : up;
  }

  /** The writable path with the earliest expected delivery (caps apply only when bonding). */
  pickPath(): SessionPath | undefined {
    // Hot path (one record each): a single path needs no arrays and no scheduling.
    if (this.paths.size === 1) {
      const only = this.paths.values().next().value as SessionPath;
      return only.up && only.channel.writable ? only : undefined;
    }
    // Bonding probes (probes.ts): a flush writes pings first, so a probe whose
    // PING has left is settled here, before any data of this flush.
    const now = this.clock.now();
    for (const p of this.paths.values()) p.settleProbe(now);
    const usable = this.usablePaths();
    if (usable.length === 1) {
      const only = usable[0] as SessionPath;
      return only.channel.writable ? only : undefined;
    }
    let best: SessionPath | undefined;
    let bestT = Infinity;
    let feedback = 0;
    for (const p of usable) feedback = Math.max(feedback, p.minRtt ?? p.srtt ?? 100);
    for (const p of usable) {
      p.setFeedbackRtt(feedback);
      if (p.pingToSend === undefined && p.probeDue(now)) {
        p.requestProbe(this.host.nextPingId());
        this.host.scheduleFlush();
      }
      if (!p.channel.writable || p.load >= p.cap) continue;
      const t = p.expectedDelivery(16384);
      if (t < bestT) {
        bestT = t;
        best = p;
      }
    }
    return best;
  }

  /** Any writable path, fastest first: for control frames and datagrams. */
  bestControlPath(): SessionPath | undefined {
    let best: SessionPath | undefined;
    for (const p of this.paths.values()) {
      if (!p.channel.writable) continue;
      if (!best || (p.up && !best.up) || (p.up === best.up && (p.srtt ?? 1e9) < (best.srtt ?? 1e9))) best = p;
    }
    return best;
  }
}
