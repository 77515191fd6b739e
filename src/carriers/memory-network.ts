/**
 * An in-process "network" for tests: a table of listening endpoints that the
 * memory carriers register in and dial through. No module globals — each test
 * creates its own MemoryNetwork, so tests never see each other's listeners.
 */
import { DialError, ListenError } from './errors.js';
import { formatEndpoint } from './types.js';
import type { Endpoint, StreamConn } from './types.js';

/** What a memory packet listener exposes to dialled conns. */
export interface MemoryPacketPort {
  /**
   * Takes packets sent by the conn identified by `from`; `reply` delivers
   * packets back to that conn. Returns false when some were dropped because
   * a queue was full.
   */
  receive(from: string, reply: (packets: readonly Buffer[]) => boolean, packets: readonly Buffer[]): boolean;
}

/** Listening endpoints of one kind (stream or packet), keyed by host:port. */
export class PortTable<T> {
  private readonly bound = new Map<string, T>();

  constructor(private readonly net: MemoryNetwork) {}

  /** Binds `value` at `at` (port 0 → an unused port); ListenError EADDRINUSE if taken. */
  bind(at: Endpoint, value: T): Endpoint {
    const port = at.port === 0 ? this.net.allocatePort() : at.port;
    const ep = { host: at.host, port };
    const key = formatEndpoint(ep);
    if (this.bound.has(key)) throw new ListenError(key, 'EADDRINUSE');
    this.bound.set(key, value);
    return ep;
  }

  unbind(at: Endpoint): void {
    this.bound.delete(formatEndpoint(at));
  }

  /** The listener at `to`, or undefined. */
  find(to: Endpoint): T | undefined {
    return this.bound.get(formatEndpoint(to));
  }

  /** The listener at `to`, or DialError ECONNREFUSED like a closed TCP port. */
  get(to: Endpoint): T {
    const v = this.find(to);
    if (v === undefined) throw new DialError(formatEndpoint(to), 'ECONNREFUSED');
    return v;
  }
}

/** Shared by MemoryStreamCarrier and MemoryPacketCarrier instances that should reach each other. */
export class MemoryNetwork {
  private nextPort = 40_000;
  private readonly holes = new Set<string>();
  /** Stream listeners: each accepts the server side of a new connection. */
  readonly streams = new PortTable<(conn: StreamConn) => void>(this);
  /** Packet listeners. */
  readonly packets = new PortTable<MemoryPacketPort>(this);

  /**
   * Makes `at` unreachable the way a firewall that drops packets does:
   * stream dials hang until their deadline or abort, packets vanish.
   * Returns the function that lifts it.
   */
  blackhole(at: Endpoint): () => void {
    const key = formatEndpoint(at);
    this.holes.add(key);
    return () => this.holes.delete(key);
  }

  /** True while `to` is black-holed. */
  isBlackholed(to: Endpoint): boolean {
    return this.holes.size > 0 && this.holes.has(formatEndpoint(to));
  }

  /** A fresh port number (listeners asking for port 0, dialers' local ports). */
  allocatePort(): number {
    const p = this.nextPort;
    this.nextPort = this.nextPort >= 65_535 ? 40_000 : this.nextPort + 1;
    return p;
  }
}
