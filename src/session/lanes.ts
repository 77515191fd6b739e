/**
 * Which application gets what arrives on a session. Several applications
 * share one session (the proxy and the VPN today; a dashboard's control
 * stream tomorrow): each registers the streams it serves by open kind (the
 * first byte of the OPEN payload) and the datagrams by flow range. A
 * registration that overlaps another throws, so two applications cannot
 * silently fight over a lane.
 *
 * ```
 *   OPEN  ── payload[0] registered? ──▶ that handler
 *                  └── else a catch-all (Session.onStream)? ──▶ it
 *                  └── else reset with ResetCode.noHandler
 *   DATAGRAM ── flow in a registered range? ──▶ that handler
 *                  └── else the catch-all (Session.onDatagram), else dropped
 * ```
 *
 * Known kinds: 0x01–0x03 the proxy (src/proxy/wire.ts), 0x10 the VPN's
 * control stream (src/tun/vpn-wire.ts). Known flows: the proxy's UDP
 * associations below 0xFFFF0000, the VPN's packets at 0xFFFF0000–0xFFFF0001.
 */
import { ConfigError } from '../core/errors.js';
import type { PolyStream } from './stream.js';

export type StreamHandler = (s: PolyStream) => void;
export type DatagramHandler = (flow: number, payload: Buffer) => void;

/** A registration; close() gives its kinds or flows back. */
export interface Lane {
  close(): void;
}

interface FlowRange {
  from: number;
  to: number;
  handler: DatagramHandler;
}

export class LaneRegistry {
  private readonly kinds = new Map<number, StreamHandler>();
  private anyStream: StreamHandler | undefined;
  /** Few entries (one per application): a linear scan per datagram beats any structure. */
  private ranges: FlowRange[] = [];
  private anyDatagram: DatagramHandler | undefined;

  /** Streams whose OPEN payload starts with one of `kinds` (bytes). */
  streams(kinds: readonly number[], handler: StreamHandler): Lane {
    for (const k of kinds) {
      if (!Number.isInteger(k) || k < 0 || k > 0xff) throw new ConfigError('session lanes', `open kind ${k} is not a byte`);
      if (this.kinds.has(k)) throw new ConfigError('session lanes', `open kind 0x${k.toString(16)} already has a handler`);
    }
    for (const k of kinds) this.kinds.set(k, handler);
    return {
      close: () => {
        for (const k of kinds) if (this.kinds.get(k) === handler) this.kinds.delete(k);
      },
    };
  }

  /** Datagrams with a flow id in [from, to]. */
  datagrams(from: number, to: number, handler: DatagramHandler): Lane {
    if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to <= 0xffffffff)) throw new ConfigError('session lanes', `bad flow range ${from}-${to}`);
    const clash = this.ranges.find((r) => from <= r.to && r.from <= to);
    if (clash) throw new ConfigError('session lanes', `flows ${from}-${to} overlap ${clash.from}-${clash.to}`);
    const range = { from, to, handler };
    this.ranges = [...this.ranges, range];
    return {
      close: () => {
        this.ranges = this.ranges.filter((r) => r !== range);
      },
    };
  }

  /** The catch-all for streams no kind claims (Session.onStream). */
  setAnyStream(handler: StreamHandler | undefined): void {
    this.anyStream = handler;
  }

  /** The catch-all for datagrams no range claims (Session.onDatagram). */
  setAnyDatagram(handler: DatagramHandler | undefined): void {
    this.anyDatagram = handler;
  }

  /** Whether any application takes streams at all (else OPENs are refused, as by a session without handlers). */
  get takesStreams(): boolean {
    return this.anyStream !== undefined || this.kinds.size > 0;
  }

  /** The handler for a stream with this OPEN payload, if any. */
  streamHandler(openPayload: Buffer): StreamHandler | undefined {
    if (openPayload.length > 0) {
      const h = this.kinds.get(openPayload[0] as number);
      if (h !== undefined) return h;
    }
    return this.anyStream;
  }

  /** Hands a datagram to its lane; false when nobody takes it (dropped). */
  deliverDatagram(flow: number, payload: Buffer): boolean {
    const ranges = this.ranges;
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i] as FlowRange;
      if (flow >= r.from && flow <= r.to) {
        r.handler(flow, payload);
        return true;
      }
    }
    if (this.anyDatagram === undefined) return false;
    this.anyDatagram(flow, payload);
    return true;
  }
}
