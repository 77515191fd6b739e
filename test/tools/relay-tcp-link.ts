/**
 * One relayed TCP connection: the accepted client socket, the socket we dial
 * to the target, and one impaired pipe per direction.
 *
 *   client ──data──▶ [up pipe: FIFO · delay · token bucket] ──write──▶ target
 *   client ◀─write── [down pipe: FIFO · delay · token bucket] ◀─data── target
 *
 * A pipe releases chunks strictly in arrival order (a chunk's release time is
 * never earlier than its predecessor's, so jitter cannot reorder a stream).
 * Backpressure: the source is paused while the pipe holds more than
 * `maxQueueBytes` (it overshoots by at most one socket read, ≤ 64 KiB) and
 * resumed below half of it; a sink that returns false from write() stops the
 * pipe until 'drain'. Each pipe has one timer, re-armed for its head chunk.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../src/core/logger.js';
import type { CutMode, Direction, HostPort, LinkImpairment, TokenBucket } from './relay-shared.js';
import { Fifo } from '../../src/core/fifo.js';
import { drawDelay, Wakeup } from './relay-shared.js';

/** Per-direction state shared by every connection of one relay. */
export interface TcpDirectionState {
  readonly imp: LinkImpairment;
  /** The link rate is shared by all connections in this direction. */
  readonly bucket: TokenBucket;
  readonly random: () => number;
}

/** Counters a relay exposes; links update them in place. */
export interface TcpRelayStats {
  /** Connections accepted (including refused ones). */
  accepted: number;
  /** Connections currently open. */
  live: number;
  /** Connections reset at once because `refuse(true)` was on. */
  refused: number;
  /** Connections killed by cutAll() or cutAfterBytes(). */
  cuts: number;
  /** Bytes written toward the target / toward clients. */
  bytesUp: number;
  bytesDown: number;
  /** Bytes now held in pipes, summed over connections. */
  queuedUp: number;
  queuedDown: number;
  /** Largest number of bytes any single pipe ever held. */
  maxQueuedUp: number;
  maxQueuedDown: number;
}

/** What a link needs from its relay. */
export interface TcpLinkContext {
  readonly target: HostPort;
  readonly maxQueueBytes: number;
  readonly dirs: Readonly<Record<Direction, TcpDirectionState>>;
  readonly stats: TcpRelayStats;
  readonly logger: Logger;
  blackholed: boolean;
  cutAfter: { bytes: number; mode: CutMode } | null;
  onLinkGone(link: TcpLink): void;
}

/** After a FIN cut, how long a peer that keeps its side open is tolerated. */
const CLOSE_GRACE_MS = 2000;

interface Chunk {
  buf: Buffer;
  at: number;
}

class TcpPipe {
  private readonly q = new Fifo<Chunk>();
  private queued = 0;
  private lastAt = 0;
  private eof = false;
  private sinkEnded = false;
  private blocked = false;
  private pausedByUs = false;
  private readonly wake = new Wakeup(() => this.pump());
  private source: Socket | null = null;
  private sink: Socket | null = null;

  constructor(
    private readonly link: TcpLink,
    private readonly dir: Direction,
  ) {}

  attach(source: Socket, sink: Socket): void {
    this.source = source;
    this.sink = sink;
    // Paused before the 'data' listener goes on, so adding it does not start the flow.
    source.pause();
    this.pausedByUs = true;
    source.on('data', (buf: Buffer) => this.onData(buf));
    source.on('end', () => {
      this.eof = true;
      this.pump();
    });
    sink.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
    this.updateFlow();
  }

  private onData(buf: Buffer): void {
    if (this.link.dead) return;
    const ctx = this.link.ctx;
    const d = ctx.dirs[this.dir];
    const now = performance.now();
    const at = Math.max(now + drawDelay(d.imp, d.random), this.lastAt);
    this.lastAt = at;
    this.q.push({ buf, at });
    this.account(buf.length);
    this.updateFlow();
    this.pump();
  }

  private account(delta: number): void {
    const s = this.link.ctx.stats;
    this.queued += delta;
    if (this.dir === 'up') {
      s.queuedUp += delta;
      s.maxQueuedUp = Math.max(s.maxQueuedUp, this.queued);
    } else {
      s.queuedDown += delta;
      s.maxQueuedDown = Math.max(s.maxQueuedDown, this.queued);
    }
  }

  /** Pauses the source while the queue is over its bound or the link is blackholed. */
  updateFlow(): void {
    const src = this.source;
    if (src === null || this.link.dead) return;
    const ctx = this.link.ctx;
    if (!this.pausedByUs && (ctx.blackholed || this.queued > ctx.maxQueueBytes)) {
      this.pausedByUs = true;
      src.pause();
    } else if (this.pausedByUs && !ctx.blackholed && this.queued <= ctx.maxQueueBytes / 2) {
      this.pausedByUs = false;
      src.resume();
    }
  }

  /** Releases every chunk that is due and affordable; arms the timer for the rest. */
  pump(): void {
    const link = this.link;
    const ctx = link.ctx;
    const sink = this.sink;
    if (link.dead || sink === null || this.blocked || ctx.blackholed) return;
    const d = ctx.dirs[this.dir];
    for (let head = this.q.peek(); head !== undefined; head = this.q.peek()) {
      const now = performance.now();
      if (head.at > now) {
        this.wake.at(head.at, now);
        break;
      }
      const wait = d.bucket.waitMs(now);
      if (wait > 0) {
        this.wake.at(now + wait, now);
        break;
      }
      let piece = head.buf.length > d.bucket.quantum() ? head.buf.subarray(0, d.bucket.quantum()) : head.buf;
      const limit = ctx.cutAfter;
      const room = limit === null ? Infinity : limit.bytes - link.forwarded;
      if (limit !== null && room <= 0) return link.cut(limit.mode);
      if (piece.length > room) piece = piece.subarray(0, room);
      if (piece.length === head.buf.length) this.q.shift();
      else head.buf = head.buf.subarray(piece.length);
      this.account(-piece.length);
      d.bucket.take(piece.length, now);
      link.forwarded += piece.length;
      if (this.dir === 'up') ctx.stats.bytesUp += piece.length;
      else ctx.stats.bytesDown += piece.length;
      const ok = sink.write(piece);
      if (limit !== null && piece.length >= room) return link.cut(limit.mode);
      if (!ok) {
        this.blocked = true;
        break;
      }
    }
    this.updateFlow();
    if (this.eof && this.q.length === 0 && !this.sinkEnded) {
      this.sinkEnded = true;
      sink.end();
    }
  }

  /** Drops everything queued and the timer (the link is going away). */
  stop(): void {
    this.wake.clear();
    this.q.clear();
    this.account(-this.queued);
  }
}

/** One client connection and its target connection. */
export class TcpLink {
  target: Socket | null = null;
  dead = false;
  forwarded = 0;
  private readonly up = new TcpPipe(this, 'up');
  private readonly down = new TcpPipe(this, 'down');
  private open = 1;
  private grace: NodeJS.Timeout | null = null;
  private readonly log: Logger;

  constructor(
    readonly ctx: TcpLinkContext,
    readonly client: Socket,
  ) {
    this.log = ctx.logger.child({ client: `${client.remoteAddress}:${client.remotePort}` });
    this.watch(client, 'client');
    // A blackholed link is a dead wire: the SYN would not reach the target either.
    if (!ctx.blackholed) this.dial();
  }

  /** Connects to the target and starts both pipes (deferred while blackholed). */
  dial(): void {
    if (this.target !== null || this.dead) return;
    const t = connect({ host: this.ctx.target.host, port: this.ctx.target.port, allowHalfOpen: true });
    this.target = t;
    this.open++;
    this.watch(t, 'target');
    this.up.attach(this.client, t);
    this.down.attach(t, this.client);
  }

  /** Called when the relay's blackhole switch flips. */
  onBlackholeChange(): void {
    if (!this.ctx.blackholed) this.dial();
    for (const p of [this.up, this.down]) {
      p.updateFlow();
      p.pump();
    }
  }

  /** Re-runs both pipes (after a rate change). */
  kick(): void {
    this.up.pump();
    this.down.pump();
  }

  /** Kills the connection on both sides: RST (`reset`) or FIN (`close`). Counted in stats.cuts. */
  cut(mode: CutMode): void {
    if (this.dead) return;
    this.ctx.stats.cuts++;
    this.log.debug({ mode, forwarded: this.forwarded }, 'relay: cut');
    this.stop();
    for (const s of this.sockets()) {
      if (mode === 'reset') reset(s);
      else finAndDrain(s);
    }
    if (mode === 'close') {
      this.grace = setTimeout(() => this.destroy(), CLOSE_GRACE_MS);
      this.grace.unref();
    }
  }

  /** Tears everything down at once (relay close). */
  destroy(): void {
    this.stop();
    for (const s of this.sockets()) s.destroy();
  }

  private stop(): void {
    this.dead = true;
    this.up.stop();
    this.down.stop();
  }

  private sockets(): Socket[] {
    return this.target === null ? [this.client] : [this.client, this.target];
  }

  private watch(s: Socket, side: 'client' | 'target'): void {
    s.on('error', (err: NodeJS.ErrnoException) => this.log.debug({ side, code: err.code, err }, 'relay: socket error'));
    s.on('close', (hadError: boolean) => {
      // An error on one side (RST, refused dial) is passed on as an RST on the other.
      if (hadError && !this.dead) {
        this.stop();
        for (const other of this.sockets()) if (other !== s) reset(other);
      }
      if (--this.open === 0) {
        if (this.grace !== null) clearTimeout(this.grace);
        this.stop();
        this.ctx.onLinkGone(this);
      }
    });
  }
}

function reset(s: Socket): void {
  if (s.destroyed) return;
  // resetAndDestroy() needs a connected TCP handle; a dial in progress is simply abandoned.
  if (s.connecting) s.destroy();
  else s.resetAndDestroy();
}

/**
 * Sends FIN and discards whatever the peer still sends, so it sees a clean
 * close rather than an RST; the socket auto-destroys once the peer's FIN
 * arrives too (or the grace timer ends it).
 */
function finAndDrain(s: Socket): void {
  if (s.destroyed) return;
  s.removeAllListeners('data');
  s.on('data', () => undefined);
  s.resume();
  s.end();
}
