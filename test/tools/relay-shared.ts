/**
 * Building blocks shared by the TCP and UDP impairment relays: impairment
 * settings and their validation, a seeded PRNG, a FIFO, a min-heap, a token
 * bucket, a single re-armable timer, and the parsers the CLI uses.
 *
 * The relay exists because the lab kernel has no netem: delay, jitter, loss,
 * reordering and rate limits are applied here, in userspace, on loopback or
 * inside namespaces a test created.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../../src/core/errors.js';

/** `up` = client → target, `down` = target → client. */
export type Direction = 'up' | 'down';

/** A host and port to listen on or forward to. */
export interface HostPort {
  host: string;
  port: number;
}

/** How to kill a TCP connection: `reset` sends RST, `close` sends FIN. */
export type CutMode = 'reset' | 'close';

/** Impairments that make sense on a byte stream (TCP). */
export interface LinkImpairment {
  /** Fixed one-way delay added to every chunk/packet. @default 0 */
  delayMs: number;
  /**
   * Random extra delay, uniform in [-jitterMs, +jitterMs] around `delayMs`
   * (clamped at 0). TCP keeps order anyway; UDP may reorder. @default 0
   */
  jitterMs: number;
  /** Link rate in bytes per second; 0 = unlimited. @default 0 */
  rateBps: number;
}

/** Impairments for a packet link (UDP). Rates are probabilities in [0, 1]. */
export interface PacketImpairment extends LinkImpairment {
  /** Probability that a packet is dropped. @default 0 */
  lossRate: number;
  /** Probability that a packet is held back and sent after the next one. @default 0 */
  reorderRate: number;
  /** Probability that a packet is sent twice. @default 0 */
  duplicateRate: number;
}

/** The keys of `PacketImpairment` that are probabilities. */
const PROBABILITY_KEYS = new Set(['lossRate', 'reorderRate', 'duplicateRate']);

/** A zeroed impairment set. */
export function noImpairment(): PacketImpairment {
  return { delayMs: 0, jitterMs: 0, rateBps: 0, lossRate: 0, reorderRate: 0, duplicateRate: 0 };
}

/**
 * Copies the fields of `patch` onto `into` after checking each: only keys of
 * `into` are accepted, values must be finite and ≥ 0, probabilities ≤ 1.
 * Throws ConfigError (and changes nothing) when any field is bad.
 */
export function applyImpairment<T extends LinkImpairment>(into: T, patch: Partial<Record<string, number>>, where: string): void {
  const entries = Object.entries(patch).filter(([, v]) => v !== undefined) as Array<[string, number]>;
  for (const [key, value] of entries) {
    if (!Object.hasOwn(into, key)) throw new ConfigError(`${where}.${key}`, 'unknown impairment');
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new ConfigError(`${where}.${key}`, `must be a finite number ≥ 0, got ${String(value)}`);
    }
    if (PROBABILITY_KEYS.has(key) && value > 1) throw new ConfigError(`${where}.${key}`, `must be within [0, 1], got ${value}`);
  }
  const target = into as unknown as Record<string, number>;
  for (const [key, value] of entries) target[key] = value;
}

/**
 * Mulberry32: a tiny seeded PRNG returning floats in [0, 1). Not for
 * cryptography; here only so impaired runs can be replayed with a seed.
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One PRNG per direction, so traffic in one direction never shifts the other's draws. */
export function directionRandoms(seed: number | undefined): Record<Direction, () => number> {
  const base = seed ?? Math.floor(Math.random() * 2 ** 32);
  return { up: seededRandom(base), down: seededRandom(base ^ 0x9e3779b9) };
}

/** One-way delay for the next chunk/packet: delay ± jitter, never negative. */
export function drawDelay(imp: LinkImpairment, random: () => number): number {
  if (imp.jitterMs <= 0) return imp.delayMs;
  return Math.max(0, imp.delayMs + (random() * 2 - 1) * imp.jitterMs);
}

/** A binary min-heap ordered by `less`. */
export class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i] as T, a[p] as T)) break;
      [a[i], a[p]] = [a[p] as T, a[i] as T];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(a[l] as T, a[m] as T)) m = l;
      if (r < a.length && this.less(a[r] as T, a[m] as T)) m = r;
      if (m === i) break;
      [a[i], a[m]] = [a[m] as T, a[i] as T];
      i = m;
    }
    return top;
  }

  clear(): void {
    this.items.length = 0;
  }
}

/**
 * Token bucket in bytes. A send may go when the balance is ≥ 0 and then
 * takes its full size (the balance may go negative: debt), so packets are
 * never split and the long-run rate is exact. Burst = 10 ms of traffic,
 * at least one MTU.
 */
export class TokenBucket {
  private rate = 0;
  private tokens = 0;
  private last = 0;

  /** Sets the rate (bytes/s, 0 = unlimited); the bucket restarts full. */
  setRate(bytesPerSecond: number, now: number): void {
    if (bytesPerSecond === this.rate) return;
    this.rate = bytesPerSecond;
    this.tokens = this.burst();
    this.last = now;
  }

  /** Largest piece a stream should send at once so the rate stays smooth. */
  quantum(): number {
    return this.rate > 0 ? Math.min(65536, Math.max(1024, Math.floor(this.rate / 100))) : Infinity;
  }

  /** Milliseconds until a send may go (0 = now). */
  waitMs(now: number): number {
    if (this.rate <= 0) return 0;
    this.refill(now);
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }

  /** Charges `bytes` to the bucket. */
  take(bytes: number, now: number): void {
    if (this.rate <= 0) return;
    this.refill(now);
    this.tokens -= bytes;
  }

  private burst(): number {
    return Math.max(1500, this.rate / 100);
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst(), this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }
}

/**
 * One re-armable, unref'd timer: each queue direction owns one of these
 * instead of a timer per packet. Arming for a later time than the pending
 * one is a no-op; arming earlier replaces it.
 */
export class Wakeup {
  private timer: NodeJS.Timeout | null = null;
  private due = Infinity;
  constructor(private readonly fire: () => void) {}

  /** Fires at monotonic time `at` (performance.now() ms), or earlier if already armed earlier. */
  at(at: number, now: number): void {
    if (this.timer !== null && this.due <= at) return;
    this.clear();
    this.due = at;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.due = Infinity;
        this.fire();
      },
      Math.max(1, Math.ceil(at - now)),
    );
    this.timer.unref();
  }

  clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.due = Infinity;
  }
}

/**
 * Parses `HOST:PORT`, `[v6]:PORT` or `v6addr:PORT` (last colon splits).
 * Port 0 is allowed (pick a free port).
 */
export function parseHostPort(text: string, where: string): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^[\]]*):(\d+)$/.exec(text);
  const host = m?.[1];
  const port = Number(m?.[2]);
  if (host === undefined || host === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(where, `expected HOST:PORT, got "${text}"`);
  }
  return { host, port };
}

/** Formats a HostPort, bracketing IPv6 literals. */
export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

const RATE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  bps: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  bit: 1 / 8,
  kbit: 1e3 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
};

/**
 * Parses a rate into bytes per second, tc-style: `40mbit` (bits, SI),
 * `5MB` or `5mb` (bytes, SI), `1MiB` (bytes, binary), a bare number is
 * bytes/s. Units are case-insensitive, so `MB` and `mb` are both bytes.
 */
export function parseRate(text: string, where: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = RATE_UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) throw new ConfigError(where, `expected a rate like 40mbit or 5MB, got "${text}"`);
  return Math.round(Number(m[1]) * unit);
}
