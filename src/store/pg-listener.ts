/**
 * A dedicated PostgreSQL connection that LISTENs on one channel and comes
 * back by itself when the connection drops (server restart, network cut,
 * pg_terminate_backend). Notifications sent while it was away are lost, so
 * after every reconnect it calls `onReconnect` and the owner resynchronises.
 *
 * States: connecting → listening → (lost) → waiting (backoff) → connecting …
 *         any state → closed (close() is idempotent)
 */
import pg from 'pg';
import type { ClientConfig, Notification } from 'pg';
import type { Logger } from '../core/logger.js';

/** Options of {@link PgListener}. */
export interface PgListenerInit {
  /** Connection settings of the listening client. */
  readonly config: ClientConfig;
  /** Channel name (quoted as an identifier). */
  readonly channel: string;
  readonly log: Logger;
  /** Called with the payload of every notification on the channel. */
  onNotify(payload: string): void;
  /** Called after a reconnect (not after the first connect). */
  onReconnect(): void;
  /** First retry delay; doubles up to maxBackoffMs. @default 100 */
  readonly minBackoffMs?: number;
  /** @default 5000 */
  readonly maxBackoffMs?: number;
}

/** Keeps one LISTEN alive. */
export class PgListener {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  // A reconnect in flight (never rejects), awaited by close() so no socket outlives it.
  private reconnecting: Promise<void> | undefined;
  private closed = false;
  private backoff: number;
  private readonly minMs: number;
  private readonly maxMs: number;

  constructor(private readonly init: PgListenerInit) {
    this.minMs = init.minBackoffMs ?? 100;
    this.maxMs = init.maxBackoffMs ?? 5000;
    this.backoff = this.minMs;
  }

  /** Connects and LISTENs; rejects when the first attempt fails (the database is unreachable). */
  async start(): Promise<void> {
    await this.connect();
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  private async connect(): Promise<void> {
    const c = new pg.Client(this.init.config);
    c.on('notification', (m: Notification) => {
      if (m.channel === this.init.channel && m.payload !== undefined) this.init.onNotify(m.payload);
    });
    c.on('error', (err: Error) => {
      this.init.log.warn({ err }, 'user store: LISTEN connection failed');
      this.lost(c);
    });
    c.on('end', () => this.lost(c));
    try {
      await c.connect();
      await c.query(`LISTEN "${this.init.channel}"`);
    } catch (err) {
      await this.end(c);
      throw err;
    }
    if (this.closed) {
      await this.end(c);
      return;
    }
    this.client = c;
  }

  /** Ends `c`; never rejects (a dead connection may fail to end cleanly). */
  private end(c: pg.Client): Promise<void> {
    return c.end().catch((err: unknown) => {
      this.init.log.debug({ err }, 'user store: closing a LISTEN connection failed');
    });
  }

  private lost(c: pg.Client): void {
    // Events of a client that is not the current one (failed attempts, the
    // client close() ended) are already handled where it was dropped.
    if (c !== this.client) return;
    this.client = undefined;
    void this.end(c);
    this.schedule();
  }

  private schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    // Jitter so that a fleet whose database restarted does not reconnect in lockstep.
    const delay = Math.round(this.backoff * (0.8 + 0.4 * Math.random()));
    this.backoff = Math.min(this.maxMs, this.backoff * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reconnecting = this.connect().then(
        () => {
          if (this.closed) return;
          this.backoff = this.minMs;
          this.init.log.info({ channel: this.init.channel }, 'user store: LISTEN connection restored');
          this.init.onReconnect();
        },
        (err: unknown) => {
          this.init.log.warn({ err, retryInMs: this.backoff }, 'user store: LISTEN reconnect failed');
          this.schedule();
        },
      );
    }, delay);
  }

  /** Stops listening and retrying. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.reconnecting;
    const c = this.client;
    this.client = undefined;
    if (c !== undefined) await c.end();
  }
}
