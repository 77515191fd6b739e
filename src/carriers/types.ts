/**
 * Carrier seams. A carrier moves bytes or packets between two hosts and knows
 * nothing of sessions, users or proxies. There are two kinds, and they are
 * deliberately different interfaces rather than one fake stream:
 *
 * - a **stream carrier** (TCP, TLS, WebSocket) yields a Node `Duplex` whose
 *   contract (write() → false + 'drain', 'data'/'end'/'close') is honoured
 *   end to end;
 * - a **packet carrier** (UDP, WebRTC unordered) yields a `PacketConn` that
 *   sends and receives whole packets, in batches, with no delivery guarantee.
 */
import type { Duplex } from 'node:stream';
import { formatHostPort } from '../core/address.js';

/** Where to dial or listen. Carrier-specific options live on the carrier. */
export interface Endpoint {
  host: string;
  port: number;
}

export interface DialOptions {
  /** Cancels the dial; the promise rejects with AbortedError. */
  signal?: AbortSignal;
  /** Give up after this many ms. @default 10000 */
  timeoutMs?: number;
}

/** One connected byte stream from a stream carrier. */
export interface StreamConn {
  /**
   * The byte stream. Destroy it to close the connection. The carrier
   * declares what it can do beyond the Duplex contract (buffer reuse, slab
   * reads, TLS binding: core/stream-caps.ts) before handing it out.
   */
  readonly stream: Duplex;
  /** Printable remote address, e.g. `127.0.0.1:4433` (for logs only). */
  readonly remote: string;
  /** Printable local address. */
  readonly local: string;
  /**
   * Carrier-level facts learnt while connecting (TLS ALPN, WebSocket path,
   * the user selected by URL path…). Empty for plain TCP.
   */
  readonly meta: Readonly<Record<string, string>>;
  /**
   * Set by listeners: the server calls it once the peer has authenticated, so
   * the listener stops counting and timing the connection as unauthenticated
   * (see preauth.ts). Absent on dialled connections.
   */
  readonly authenticated?: () => void;
}

export interface Listener {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: Endpoint;
  /** Stops accepting; existing connections are left alone. Idempotent. */
  close(): Promise<void>;
}

export interface StreamCarrier {
  readonly kind: 'stream';
  /** URL scheme this carrier serves: tcp, tls, ws, wss, mem, … */
  readonly scheme: string;
  dial(to: Endpoint, opts?: DialOptions): Promise<StreamConn>;
  listen(at: Endpoint, onConn: (conn: StreamConn) => void): Promise<Listener>;
}

/** One association with a remote peer over a packet carrier. */
export interface PacketConn {
  readonly remote: string;
  readonly local: string;
  /** Largest packet `send` accepts, in bytes. */
  readonly maxPacketSize: number;
  /**
   * Sends packets (best effort, batch-friendly). Returns false when the local
   * queue is full and packets were dropped; never buffers without bound.
   */
  send(packets: readonly Buffer[]): boolean;
  /** Called with each batch of received packets. Set once. */
  onPackets(handler: (packets: Buffer[]) => void): void;
  /** Called once when the association ends (close, error, timeout). */
  onClose(handler: (err?: Error) => void): void;
  /** Idempotent. */
  close(): void;
}

export interface PacketCarrier {
  readonly kind: 'packet';
  readonly scheme: string;
  dial(to: Endpoint, opts?: DialOptions): Promise<PacketConn>;
  /** A new remote address:port yields a new PacketConn. */
  listen(at: Endpoint, onConn: (conn: PacketConn) => void): Promise<Listener>;
}

export type Carrier = StreamCarrier | PacketCarrier;

export function formatEndpoint(e: Endpoint): string {
  return formatHostPort(e);
}
