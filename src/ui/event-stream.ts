/**
 * GET /api/events: the status snapshot pushed as Server-Sent Events, one
 * per `intervalMs` (1 s), to at most `maxClients` readers. One timer for
 * every reader, and one snapshot per tick serialized once, so ten open
 * tabs cost what one does; the timer runs only while someone listens.
 *
 *   event: status          data: <ClientStatus JSON>       (a tunnel runs)
 *   event: idle            data: {"message": "…"}          (no tunnel yet: the wizard)
 */
import type { ServerResponse } from 'node:http';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';

/** Options of {@link EventStream}. */
export interface EventStreamInit {
  /** The event to send now: its name and its data (any JSON). */
  readonly snapshot: () => { event: string; data: unknown };
  /** @default 1000 */
  readonly intervalMs?: number;
  /** Readers at once. @default 8 */
  readonly maxClients?: number;
  /** @default realClock */
  readonly clock?: Clock;
}

/** See the file comment. */
export class EventStream {
  private readonly clients = new Set<ServerResponse>();
  private timer: TimerHandle | undefined;
  private readonly clock: Clock;

  constructor(private readonly init: EventStreamInit) {
    this.clock = init.clock ?? realClock;
  }

  /** Readers now. */
  get size(): number {
    return this.clients.size;
  }

  /** True when one more reader may join. */
  get hasRoom(): boolean {
    return this.clients.size < (this.init.maxClients ?? 8);
  }

  /** Makes `res` a reader (headers written here): the first event goes at once. */
  add(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-content-type-options': 'nosniff',
      // nginx and friends buffer a response unless told: the events would arrive in lumps.
      'x-accel-buffering': 'no',
    });
    this.clients.add(res);
    const drop = (): void => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stop();
    };
    res.on('close', drop);
    // A reader gone in the middle of a write is dropped like one that closed.
    res.on('error', drop);
    res.write(this.frame());
    this.timer ??= this.clock.setInterval(() => this.tick(), this.init.intervalMs ?? 1000);
  }

  private frame(): string {
    const { event, data } = this.init.snapshot();
    // JSON has no raw newlines, so one data: line carries it.
    return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  private tick(): void {
    if (this.clients.size === 0) return this.stop();
    const text = this.frame();
    for (const res of this.clients) {
      // A reader that does not read is dropped, not buffered for.
      if (res.destroyed || res.writableLength > 1 << 20) res.destroy();
      else res.write(text);
    }
  }

  private stop(): void {
    this.clock.clear(this.timer);
    this.timer = undefined;
  }

  /** Ends every reader's stream. */
  close(): void {
    this.stop();
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}
