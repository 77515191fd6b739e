/**
 * In-memory packet carrier for fast tests. It keeps UDP's semantics: dial
 * always succeeds, packets to nobody vanish, the listener learns of a peer
 * from its first packet, and loss (seeded, so reproducible) is invisible to
 * the sender. Packets are copied, as the kernel would.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { guardDial } from './dial.js';
import type { MemoryNetwork, MemoryPacketPort } from './memory-network.js';
import { PacketConnBase, type PacketConnInit } from './packet-base.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, PacketCarrier, PacketConn } from './types.js';

/** Options of {@link memoryPacketPair} and {@link MemoryPacketCarrier}. */
export interface MemoryPacketInit {
  /** Probability that a sent packet is lost, 0..1. @default 0 */
  lossRate?: number;
  /** Seed of the loss generator (same seed + same sends → same losses). @default 1 */
  seed?: number;
  /** Largest packet accepted by send. @default 1452 */
  maxPacketSize?: number;
  /** Receive queue bound per conn, packets. @default 1024 */
  maxQueuedPackets?: number;
}

/** mulberry32: a tiny seeded PRNG, plenty for loss simulation. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Returns a function answering "is this packet lost?". */
function lossModel(init: MemoryPacketInit): () => boolean {
  const rate = init.lossRate ?? 0;
  if (rate <= 0) return () => false;
  const random = seeded(init.seed ?? 1);
  return () => random() < rate;
}

class MemoryPacketConn extends PacketConnBase {
  /** Carries a batch to the other end; returns false when it was dropped for queue space. */
  route: (packets: readonly Buffer[]) => boolean = () => true;
  onRelease: (() => void) | undefined;

  constructor(
    init: PacketConnInit,
    private readonly lost: () => boolean,
  ) {
    super(init);
  }

  protected transmit(packets: readonly Buffer[]): boolean {
    const copies: Buffer[] = [];
    for (const p of packets) {
      if (this.lost()) this.stats.droppedSend++;
      else copies.push(Buffer.from(p));
    }
    this.stats.sent += copies.length;
    return copies.length === 0 || this.route(copies);
  }

  /** Receives a batch from the other end. A closed conn swallows it, like a closed UDP port. */
  receiveBatch(packets: readonly Buffer[]): boolean {
    if (this.isClosed) return true;
    let ok = true;
    for (const p of packets) if (!this.deliver(p)) ok = false;
    return ok;
  }

  protected release(): void {
    this.onRelease?.();
  }
}

function connInit(init: MemoryPacketInit, local: string, remote: string): PacketConnInit {
  return { local, remote, maxPacketSize: init.maxPacketSize ?? 1452, maxQueuedPackets: init.maxQueuedPackets ?? 1024 };
}

/** Two linked PacketConns: what one sends, the other receives (minus simulated loss). */
export function memoryPacketPair(init: MemoryPacketInit = {}): [PacketConn, PacketConn] {
  const lost = lossModel(init);
  const a = new MemoryPacketConn(connInit(init, 'mem-a', 'mem-b'), lost);
  const b = new MemoryPacketConn(connInit(init, 'mem-b', 'mem-a'), lost);
  a.route = (packets) => b.receiveBatch(packets);
  b.route = (packets) => a.receiveBatch(packets);
  return [a, b];
}

/** One listening port: demultiplexes senders into associations. */
class MemoryPacketListener implements Listener, MemoryPacketPort {
  private readonly assocs = new Map<string, MemoryPacketConn>();
  private accepting = true;
  /** Set right after binding (the port may be chosen by the network). */
  address: Endpoint = { host: '', port: 0 };

  constructor(
    private readonly net: MemoryNetwork,
    private readonly init: MemoryPacketInit,
    private readonly lost: () => boolean,
    private readonly onConn: (conn: PacketConn) => void,
  ) {}

  receive(from: string, reply: (packets: readonly Buffer[]) => boolean, packets: readonly Buffer[]): boolean {
    let conn = this.assocs.get(from);
    if (!conn) {
      if (!this.accepting) return true; // a closed listener ignores new peers
      conn = new MemoryPacketConn(connInit(this.init, formatEndpoint(this.address), from), this.lost);
      conn.route = reply;
      conn.onRelease = () => {
        this.assocs.delete(from);
        this.maybeUnbind();
      };
      this.assocs.set(from, conn);
      this.onConn(conn);
    }
    return conn.receiveBatch(packets);
  }

  async close(): Promise<void> {
    this.accepting = false;
    this.maybeUnbind();
  }

  // The port stays bound while existing associations live (they receive
  // through it), as a UDP listener's one socket does.
  private maybeUnbind(): void {
    if (!this.accepting && this.assocs.size === 0) this.net.packets.unbind(this.address);
  }
}

/** Packet carrier over a {@link MemoryNetwork}: scheme `mem+udp`. */
export class MemoryPacketCarrier implements PacketCarrier {
  readonly kind = 'packet';
  readonly scheme = 'mem+udp';
  private readonly lost: () => boolean;

  constructor(
    private readonly net: MemoryNetwork,
    private readonly init: MemoryPacketInit = {},
  ) {
    this.lost = lossModel(init);
  }

  /** Always succeeds (connectionless); packets go to whoever listens at `to` when sent. */
  async dial(to: Endpoint, opts?: DialOptions): Promise<PacketConn> {
    return guardDial(
      `mem+udp dial ${formatEndpoint(to)}`,
      opts,
      async (signal) => {
        await nextTurn(undefined, { signal });
        const local = formatEndpoint({ host: to.host, port: this.net.allocatePort() });
        const conn = new MemoryPacketConn(connInit(this.init, local, formatEndpoint(to)), this.lost);
        const reply = (packets: readonly Buffer[]): boolean => conn.receiveBatch(packets);
        conn.route = (packets) => (this.net.isBlackholed(to) ? true : (this.net.packets.find(to)?.receive(local, reply, packets) ?? true));
        return conn;
      },
      (late) => late.close(),
    );
  }

  /** Listens at `at` (port 0 → a free port); a new sender yields a new PacketConn. */
  async listen(at: Endpoint, onConn: (conn: PacketConn) => void): Promise<Listener> {
    const listener = new MemoryPacketListener(this.net, this.init, this.lost, onConn);
    listener.address = this.net.packets.bind(at, listener);
    return listener;
  }
}
