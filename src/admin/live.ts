/**
 * The dashboard's live overview: one snapshot of the gateway a second,
 * pushed to every open `GET /api/events` stream (Server-Sent Events).
 *
 *   tick (1 s, only while a stream is open)
 *     └─ view.sessions() + view.status() ─▶ LiveSnapshot ─▶ "data: {json}\n\n" to each stream
 *
 * The snapshot is computed and serialised once per tick whatever the number
 * of streams, and streams are capped (`maxClients`): an open page costs the
 * server one walk over its sessions a second. Throughput is the growth of
 * the sessions' byte counters since the previous tick (a session new since
 * then counts all its bytes; one that closed in between drops out).
 */
import type { GatewayView, ListenerInfo } from './types.js';

/** One listener and the live paths on its carrier. */
export interface LiveListener extends ListenerInfo {
  /** Live paths whose carrier is this listener's (listeners sharing a carrier show the same count). */
  readonly paths: number;
}

/** What each SSE message carries. Bytes are the server's view: in = from clients, out = to clients. */
export interface LiveSnapshot {
  /** ms since the epoch. */
  readonly at: number;
  readonly sessions: number;
  /** Distinct users with a live session. */
  readonly usersOnline: number;
  /** Bytes per second over the last tick. */
  readonly rateIn: number;
  readonly rateOut: number;
  /** Bytes of the live sessions so far. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly draining: boolean;
  readonly listeners: readonly LiveListener[];
  /** Handshake counters (accepted, resumed, rejected, …). */
  readonly counters: Readonly<Record<string, number>>;
}

/** Options of {@link LiveFeed}. */
export interface LiveFeedInit {
  readonly view: GatewayView;
  /** @default 1000 */
  readonly intervalMs?: number;
  /** Streams open at once at most; more are refused (503). @default 16 */
  readonly maxClients?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

interface Client {
  write(chunk: string): void;
  /** False once the client's login is gone: its stream is ended. */
  alive(): boolean;
  end(): void;
}

/** Samples the gateway once per tick and fans the snapshot out to the open streams. */
export class LiveFeed {
  private readonly clients = new Set<Client>();
  private readonly view: GatewayView;
  private readonly intervalMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private prev = new Map<string, { in: number; out: number }>();
  private prevAt = 0;
  private last: LiveSnapshot | undefined;

  constructor(init: LiveFeedInit) {
    this.view = init.view;
    this.intervalMs = init.intervalMs ?? 1000;
    this.maxClients = init.maxClients ?? 16;
    this.now = init.now ?? Date.now;
  }

  /** True when no more streams are accepted. */
  get full(): boolean {
    return this.clients.size >= this.maxClients;
  }

  /** Streams open now. */
  get size(): number {
    return this.clients.size;
  }

  /**
   * Takes a sample: the snapshot now, with rates against the previous sample.
   * Called by the timer; public for tests.
   */
  sample(): LiveSnapshot {
    const at = this.now();
    const sessions = this.view.sessions();
    const status = this.view.status();
    const dt = Math.max(1, at - this.prevAt) / 1000;
    const next = new Map<string, { in: number; out: number }>();
    const users = new Set<string>();
    const byCarrier = new Map<string, number>();
    let bytesIn = 0;
    let bytesOut = 0;
    let dIn = 0;
    let dOut = 0;
    for (const s of sessions) {
      if (s.userId !== null) users.add(s.userId);
      bytesIn += s.bytesReceived;
      bytesOut += s.bytesSent;
      const p = this.prev.get(s.id);
      dIn += Math.max(0, s.bytesReceived - (p?.in ?? 0));
      dOut += Math.max(0, s.bytesSent - (p?.out ?? 0));
      next.set(s.id, { in: s.bytesReceived, out: s.bytesSent });
      for (const path of s.pathList ?? []) byCarrier.set(path.carrier, (byCarrier.get(path.carrier) ?? 0) + 1);
    }
    const first = this.prevAt === 0;
    this.prev = next;
    this.prevAt = at;
    this.last = {
      at,
      sessions: sessions.length,
      usersOnline: users.size,
      rateIn: first ? 0 : Math.round(dIn / dt),
      rateOut: first ? 0 : Math.round(dOut / dt),
      bytesIn,
      bytesOut,
      draining: status.draining,
      listeners: status.listeners.map((l) => ({ carrier: l.carrier, address: l.address, port: l.port, paths: byCarrier.get(l.carrier) ?? 0 })),
      counters: status.counters,
    };
    return this.last;
  }

  /**
   * Adds a stream. It gets the latest snapshot at once, then one a tick.
   * @returns the function that removes it, or undefined when `maxClients` are open.
   */
  subscribe(client: Client): (() => void) | undefined {
    if (this.clients.size >= this.maxClients) return undefined;
    this.clients.add(client);
    if (this.timer === undefined) {
      // Rates need a previous sample: take one now, so the first tick has a full interval behind it.
      this.prevAt = 0;
      this.prev.clear();
      this.sample();
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref();
    }
    if (this.last !== undefined) client.write(message(this.last));
    return () => this.remove(client);
  }

  /** Ends every stream and stops the timer. */
  close(): void {
    for (const c of [...this.clients]) {
      this.remove(c);
      c.end();
    }
  }

  private remove(client: Client): void {
    this.clients.delete(client);
    if (this.clients.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private tick(): void {
    const msg = message(this.sample());
    for (const c of [...this.clients]) {
      if (!c.alive()) {
        this.remove(c);
        c.end();
        continue;
      }
      c.write(msg);
    }
  }
}

/** One SSE message. JSON has no raw newlines, so one `data:` line is enough. */
function message(s: LiveSnapshot): string {
  return `data: ${JSON.stringify(s)}\n\n`;
}
