/**
 * TcpRelay: a userspace TCP impairment relay for tests and namespace labs.
 * Every accepted connection is forwarded to one target through per-direction
 * delay, jitter (order-preserving) and a shared rate limit, and can be cut,
 * blackholed or refused on demand. See relay-tcp-link.ts for the data path.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ClosedError, ConfigError } from '../../src/core/errors.js';
import { nullLogger, type Logger } from '../../src/core/logger.js';
import { TcpLink, type TcpDirectionState, type TcpLinkContext, type TcpRelayStats } from './relay-tcp-link.js';
import type { CutMode, Direction, HostPort, LinkImpairment } from './relay-shared.js';
import { applyImpairment, directionRandoms, noImpairment, TokenBucket } from './relay-shared.js';

export type { TcpRelayStats } from './relay-tcp-link.js';

/** Options for `new TcpRelay(init)`. */
export interface TcpRelayInit {
  /** Where to accept connections; port 0 picks a free port (see `address`). */
  listen: HostPort;
  /** Where every accepted connection is forwarded. */
  target: HostPort;
  /** Client → target impairments. @default none */
  up?: Partial<LinkImpairment>;
  /** Target → client impairments. @default none */
  down?: Partial<LinkImpairment>;
  /**
   * Bytes a direction of one connection may hold before its source is
   * paused (it may overshoot by one socket read, ≤ 64 KiB). @default 1 MiB
   */
  maxQueueBytes?: number;
  /** PRNG seed for jitter, so runs can be replayed. @default random */
  seed?: number;
  /** @default nullLogger */
  logger?: Logger;
}

/** Options for cuts. */
export interface CutOptions {
  /** `reset` = RST both sides, `close` = FIN both sides. @default 'reset' */
  mode?: CutMode;
}

function impairmentOf(patch: Partial<LinkImpairment> | undefined, where: string): LinkImpairment {
  const { delayMs, jitterMs, rateBps } = noImpairment();
  const imp: LinkImpairment = { delayMs, jitterMs, rateBps };
  if (patch) applyImpairment(imp, patch, where);
  return imp;
}

/** Forwards TCP connections to one target through an impaired "link". */
export class TcpRelay {
  private readonly ctx: TcpLinkContext;
  private readonly listenAt: HostPort;
  private readonly links = new Set<TcpLink>();
  private readonly linkGone = new Map<TcpLink, () => void>();
  private server: Server | null = null;
  private bound: HostPort | null = null;
  private refusing = false;
  private closing: Promise<void> | null = null;

  constructor(init: TcpRelayInit) {
    const maxQueueBytes = init.maxQueueBytes ?? 1024 * 1024;
    if (!Number.isInteger(maxQueueBytes) || maxQueueBytes < 1) throw new ConfigError('maxQueueBytes', 'must be a positive integer');
    const randoms = directionRandoms(init.seed);
    const now = performance.now();
    const dir = (d: Direction): TcpDirectionState => {
      const imp = impairmentOf(init[d], d);
      const bucket = new TokenBucket();
      bucket.setRate(imp.rateBps, now);
      return { imp, bucket, random: randoms[d] };
    };
    this.listenAt = { ...init.listen };
    this.ctx = {
      target: { ...init.target },
      maxQueueBytes,
      dirs: { up: dir('up'), down: dir('down') },
      stats: { accepted: 0, live: 0, refused: 0, cuts: 0, bytesUp: 0, bytesDown: 0, queuedUp: 0, queuedDown: 0, maxQueuedUp: 0, maxQueuedDown: 0 },
      logger: init.logger ?? nullLogger,
      blackholed: false,
      cutAfter: null,
      onLinkGone: (link) => {
        this.links.delete(link);
        this.ctx.stats.live--;
        this.linkGone.get(link)?.();
        this.linkGone.delete(link);
      },
    };
  }

  /** Starts listening. Rejects if the port cannot be bound. */
  async start(): Promise<void> {
    if (this.server !== null || this.closing !== null) throw new ClosedError('TcpRelay (already started)');
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.listenAt.port, host: this.listenAt.host, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.ctx.logger.error({ err }, 'relay: server error'));
    const a = server.address() as AddressInfo;
    this.bound = { host: a.address, port: a.port };
    this.server = server;
  }

  /** The bound address (real port when 0 was asked). Throws before start(). */
  get address(): HostPort {
    if (this.bound === null) throw new ClosedError('TcpRelay (not started)');
    return { ...this.bound };
  }

  /** A snapshot of the counters. */
  get stats(): TcpRelayStats {
    return { ...this.ctx.stats };
  }

  /** The current impairments of one direction (a copy). */
  impairment(dir: Direction): LinkImpairment {
    return { ...this.ctx.dirs[dir].imp };
  }

  /**
   * Changes impairments of one or both directions, effective at once for
   * the rate and for chunks arriving from now on for delay and jitter.
   * Throws ConfigError on an unknown key or a bad value.
   */
  set(dir: Direction | 'both', patch: Partial<LinkImpairment>): void {
    const dirs: Direction[] = dir === 'both' ? ['up', 'down'] : [dir];
    const now = performance.now();
    for (const d of dirs) {
      const state = this.ctx.dirs[d];
      applyImpairment(state.imp, patch, d);
      state.bucket.setRate(state.imp.rateBps, now);
    }
    for (const link of this.links) link.kick();
  }

  /** Kills every live connection now. Returns how many were cut. */
  cutAll(opts: CutOptions = {}): number {
    let n = 0;
    for (const link of [...this.links]) {
      if (link.dead) continue;
      link.cut(opts.mode ?? 'reset');
      n++;
    }
    return n;
  }

  /**
   * While on, the link is dead: new connections are accepted but not dialed
   * to the target, and nothing flows on existing ones (sources are paused,
   * queued bytes are held, not lost). Turning it off resumes everything.
   */
  blackhole(on: boolean): void {
    if (this.ctx.blackholed === on) return;
    this.ctx.blackholed = on;
    for (const link of [...this.links]) link.onBlackholeChange();
  }

  /** While on, new connections are reset as soon as they are accepted. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /**
   * Cuts each connection (now and in future) once it has forwarded `bytes`
   * bytes, counting both directions; `null` turns this off. With `close`
   * exactly `bytes` bytes reach the peers; with `reset` the RST may discard
   * some of them in flight.
   */
  cutAfterBytes(bytes: number | null, opts: CutOptions = {}): void {
    if (bytes === null) {
      this.ctx.cutAfter = null;
      return;
    }
    if (!Number.isInteger(bytes) || bytes < 0) throw new ConfigError('cutAfterBytes', `must be an integer ≥ 0, got ${bytes}`);
    const mode = opts.mode ?? 'reset';
    this.ctx.cutAfter = { bytes, mode };
    for (const link of [...this.links]) if (link.forwarded >= bytes) link.cut(mode);
  }

  /**
   * Stops listening and destroys every connection; resolves once the
   * listening socket and all relayed sockets are closed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const server = this.server;
    const waits: Array<Promise<void>> = [];
    if (server !== null) {
      waits.push(
        new Promise<void>((resolve) =>
          server.close((err) => {
            if (err) this.ctx.logger.debug({ err }, 'relay: server close');
            resolve();
          }),
        ),
      );
    }
    for (const link of this.links) {
      waits.push(new Promise<void>((resolve) => this.linkGone.set(link, resolve)));
      link.destroy();
    }
    await Promise.all(waits);
  }

  private onConnection(s: Socket): void {
    const stats = this.ctx.stats;
    stats.accepted++;
    if (this.refusing || this.closing !== null) {
      stats.refused++;
      s.on('error', (err) => this.ctx.logger.debug({ err }, 'relay: refused socket error'));
      s.resetAndDestroy();
      return;
    }
    stats.live++;
    this.links.add(new TcpLink(this.ctx, s));
  }
}
