/**
 * Per-path traffic into the history (store/history.ts, series kind 'path'):
 * every `sampleMs` the bytes each path of the current session moved since
 * the last look are recorded under the path's stable id, and a path that
 * closes is recorded one last time with its final counters. The history
 * sums them into 1-minute and 1-hour points.
 *
 *   every sampleMs: session.stats.paths ─▶ delta since last sample (per session, per path number) ─▶ history.record('path', id, up, down)
 *   pathClosed(stats): the path's last delta, then it is forgotten
 *
 * A path's number is only unique inside one session, and a reconnect gives
 * new numbers; the series id is its carrier and endpoint (`tcp://vps:4433`)
 * or, for a `--path` spec, the spec itself — the same across reconnects and
 * restarts, so a graph goes on where it was.
 */
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import type { PathStats, Session } from '../session/session.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import type { TrafficRecorder } from '../store/history-types.js';

/** The stable series id of a path: its label if that is a URL (a --path spec), else carrier://label. */
export function pathSeriesId(st: Pick<PathStats, 'label' | 'carrier'>): string {
  return (st.label.includes('://') ? st.label : `${st.carrier}://${st.label}`).slice(0, 256);
}

/** Options of {@link PathTrafficRecorder}. */
export interface PathTrafficRecorderInit {
  readonly supervisor: PathSupervisor;
  readonly history: TrafficRecorder;
  /** How often the path counters are read, ms. @default 15000 */
  readonly sampleMs?: number;
  /** @default realClock */
  readonly clock?: Clock;
  /** Wall time, ms since the epoch (the points' time). @default Date.now */
  readonly now?: () => number;
}

interface Seen {
  sent: number;
  received: number;
}

/** See the file comment. */
export class PathTrafficRecorder {
  private readonly seen = new WeakMap<Session, Map<number, Seen>>();
  /** Every series id recorded since start, for the dashboard's path list. */
  private readonly ids = new Set<string>();
  private readonly timer: TimerHandle;
  private readonly clock: Clock;
  private readonly now: () => number;
  private session: Session | undefined;
  private readonly onClosed = (st: PathStats): void => {
    const s = this.session;
    if (s === undefined) return;
    this.take(s, st);
    this.seen.get(s)?.delete(st.id);
  };

  constructor(private readonly init: PathTrafficRecorderInit) {
    this.clock = init.clock ?? realClock;
    this.now = init.now ?? Date.now;
    init.supervisor.on('session', (s) => this.follow(s));
    if (init.supervisor.session !== undefined) this.follow(init.supervisor.session);
    this.timer = this.clock.setInterval(() => this.sample(), init.sampleMs ?? 15_000);
  }

  private follow(s: Session): void {
    if (this.session === s) return;
    if (this.session !== undefined) {
      this.sample(); // what the old session moved since the last look
      this.session.off('pathClosed', this.onClosed);
    }
    this.session = s;
    s.on('pathClosed', this.onClosed);
  }

  /** Records what every path of the current session moved since the last sample. */
  sample(): void {
    const s = this.session;
    if (s === undefined) return;
    for (const st of s.stats.paths) this.take(s, st);
  }

  private take(s: Session, st: PathStats): void {
    let bySession = this.seen.get(s);
    if (bySession === undefined) this.seen.set(s, (bySession = new Map()));
    const prev = bySession.get(st.id) ?? { sent: 0, received: 0 };
    const up = st.bytesSent - prev.sent;
    const down = st.bytesReceived - prev.received;
    bySession.set(st.id, { sent: st.bytesSent, received: st.bytesReceived });
    const id = pathSeriesId(st);
    this.ids.add(id);
    if (up > 0 || down > 0) this.init.history.record('path', id, Math.max(0, up), Math.max(0, down), this.now());
  }

  /** The series ids seen since start, sorted. */
  pathIds(): string[] {
    return [...this.ids].sort();
  }

  /** Takes a last sample and stops the timer (the history is closed by its owner). Idempotent. */
  close(): void {
    this.sample();
    this.clock.clear(this.timer);
    this.session?.off('pathClosed', this.onClosed);
    this.session = undefined;
  }
}
