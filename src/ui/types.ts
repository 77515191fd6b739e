/**
 * What the dashboard API reads from a running tunnel, and what the setup
 * wizard can ask of its host. Both are small views: the API never holds the
 * supervisor, the fronts or the store itself, so a tunnel can come (the
 * wizard's apply) and go without the API noticing anything but the view.
 */
import type { ClientStatus } from '../observe/status.js';
import type { HistoryPoint, Resolution } from '../store/history-types.js';
import type { ClientConfig } from '../config/schema.js';
import type { SessionEvent } from './session-events.js';

/** A local front (SOCKS5, HTTP, forward, TUN, …) and its counters, where it keeps any. */
export interface FrontReport {
  /** socks5, http, forward, forward-udp, reverse, vpn, status, metrics, ui. */
  readonly kind: string;
  /** Where it listens (or, for a forward, `local -> target`). */
  readonly listen: string;
  /** Counters the front keeps: open connections, accepted, packets… (absent: it keeps none). */
  readonly counters?: Readonly<Record<string, number>>;
}

/** A running tunnel, as the dashboard sees it. */
export interface TunnelView {
  /** The status snapshot (observe/status.ts). */
  status(): ClientStatus;
  fronts(): FrontReport[];
  /** Recent session and path events, oldest first. */
  events(): SessionEvent[];
  /** Stable ids of the paths seen since start (history series). */
  pathIds(): string[];
  /** The per-path traffic history; undefined when `ui.history` is false. */
  readonly history: { series(kind: 'path', id: string, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]> } | undefined;
  /** The config file it runs from, if any. */
  readonly configFile: string | undefined;
}

/** How the wizard's apply starts what it wrote. */
export interface TunnelStarter {
  /**
   * Starts (or restarts) the tunnel in this process from `config`, read from
   * `file`. Resolves once it is starting; its failures later show in
   * `state()`.
   */
  start(config: ClientConfig, file: string): Promise<void>;
  /** none: never started; starting; running; failed (with why); stopped. */
  state(): { state: 'none' | 'starting' | 'running' | 'failed' | 'stopped'; error?: string };
}

/** How a check came out. */
export type CheckResult = 'pass' | 'warn' | 'fail' | 'not_offered' | 'not_measured';

/** One line of the self-check report. */
export interface CheckItem {
  readonly id: string;
  readonly title: string;
  readonly result: CheckResult;
  /** What was seen (a time, an error). */
  readonly detail: string;
  /** What to do about a failure. */
  readonly fix?: string;
  /** The carrier of a reach item. */
  readonly carrier?: string;
  /** The handshake's duration, ms (a pass). */
  readonly ms?: number;
}
