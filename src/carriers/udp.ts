/**
 * UDP packet carrier (node:dgram). `dial` gives a connected socket (the
 * kernel filters out datagrams from anyone but the peer); `listen` gives one
 * socket that demultiplexes peers into associations (udp-listener.ts).
 *
 * Size policy: sending a packet over `maxPacketSize` throws LimitError and
 * sends nothing of that batch — the layers above size their packets from
 * `conn.maxPacketSize`, so an oversize packet is a bug to surface, not loss
 * to hide. Received datagrams over the limit are dropped and counted
 * (`stats.droppedRecv`): they come from the network and may be hostile.
 *
 * Queue policy: at most `maxQueuedPackets` datagrams wait in the socket's
 * send queue; beyond that, the rest of the batch is dropped (counted in
 * `stats.droppedSend`) and `send` returns false.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { guardDial } from './dial.js';
import { DialError, ListenError, errnoOf } from './errors.js';
import { PacketConnBase, type PacketConnInit } from './packet-base.js';
import { UdpListener } from './udp-listener.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, PacketCarrier, PacketConn } from './types.js';
import { UDP_MAX_QUEUED_PACKETS } from '../core/limits.js';

/** Options of {@link UdpPacketCarrier}. */
export interface UdpCarrierInit {
  /** Largest datagram payload sent or accepted, bytes. @default 1452 */
  maxPacketSize?: number;
  /** Send-queue and receive-inbox bound per conn, packets. @default 1024 */
  maxQueuedPackets?: number;
  /** Listener: an association with no datagram from its peer for this long ends, ms. @default 180000 */
  idleTimeoutMs?: number;
  /** Listener: most concurrent associations; new peers beyond are ignored. @default 65536 */
  maxAssociations?: number;
  /** Dial: local address to bind (source interface). */
  localAddress?: string;
  /** SO_RCVBUF, bytes. @default the OS default */
  recvBufferSize?: number;
  /** SO_SNDBUF, bytes. @default the OS default */
  sendBufferSize?: number;
  /** @default nullLogger */
  logger?: Logger;
  /** Where to report the conns' packet counters (packet-base.ts), dialed and accepted together. @default none */
  metrics?: Metrics;
}

class UdpDialConn extends PacketConnBase {
  constructor(
    init: PacketConnInit,
    private readonly socket: dgram.Socket,
  ) {
    super(init);
    socket.on('message', (msg) => this.deliver(msg));
    socket.on('error', (err) => {
      // A connected socket reports the peer's ICMP port-unreachable as
      // ECONNREFUSED on receive. For a datagram carrier that is a hint (the
      // server may be restarting), not the end: liveness is the session's job.
      if (errnoOf(err) === 'ECONNREFUSED') return;
      this.finish(err);
    });
  }

  protected transmit(packets: readonly Buffer[]): boolean {
    const room = this.maxQueued - this.socket.getSendQueueCount();
    const n = Math.max(0, Math.min(room, packets.length));
    // No callback: Node then tries a synchronous send first (no queued
    // request, no completion callback) — the allocation-light path.
    for (let i = 0; i < n; i++) this.socket.send(packets[i] as Buffer);
    this.stats.sent += n;
    if (n === packets.length) return true;
    this.stats.droppedSend += packets.length - n;
    return false;
  }

  protected release(): void {
    this.socket.close();
  }
}

function socketType(family: number): dgram.SocketType {
  return family === 6 ? 'udp6' : 'udp4';
}

/** UDP carrier: scheme `udp`. */
export class UdpPacketCarrier implements PacketCarrier {
  readonly kind = 'packet';
  readonly scheme = 'udp';
  private readonly init: UdpCarrierInit;

  constructor(init: UdpCarrierInit = {}) {
    this.init = init;
  }

  private socketOptions(family: number): dgram.SocketOptions {
    const o: dgram.SocketOptions = { type: socketType(family) };
    if (this.init.recvBufferSize !== undefined) o.recvBufferSize = this.init.recvBufferSize;
    if (this.init.sendBufferSize !== undefined) o.sendBufferSize = this.init.sendBufferSize;
    return o;
  }

  private connInit(local: string, remote: string): PacketConnInit {
    return {
      local,
      remote,
      maxPacketSize: this.init.maxPacketSize ?? 1452,
      maxQueuedPackets: this.init.maxQueuedPackets ?? UDP_MAX_QUEUED_PACKETS,
      ...(this.init.metrics !== undefined ? { metrics: this.init.metrics } : {}),
    };
  }

  /** Resolves `to`, then binds and connects a socket to it. Rejects with DialError on a socket error. */
  async dial(to: Endpoint, opts?: DialOptions): Promise<PacketConn> {
    const target = formatEndpoint(to);
    const socket = await guardDial(
      `udp dial ${target}`,
      opts,
      async (signal) => {
        const family = isIP(to.host);
        const addr = family ? { address: to.host, family } : await lookup(to.host);
        if (signal.aborted) throw signal.reason;
        return this.connectSocket(addr.address, addr.family, to, signal);
      },
      (late) => late.close(),
    );
    const local = socket.address();
    return new UdpDialConn(this.connInit(formatEndpoint({ host: local.address, port: local.port }), target), socket);
  }

  private connectSocket(address: string, family: number, to: Endpoint, signal: AbortSignal): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket(this.socketOptions(family));
      const cleanup = (): void => {
        socket.off('error', onError);
        signal.removeEventListener('abort', onAbort);
      };
      const fail = (err: unknown): void => {
        cleanup();
        socket.close();
        reject(err);
      };
      const onError = (err: Error): void => fail(new DialError(formatEndpoint(to), errnoOf(err), { cause: err }));
      const onAbort = (): void => fail(signal.reason);
      socket.once('error', onError);
      signal.addEventListener('abort', onAbort, { once: true });
      const connect = (): void =>
        socket.connect(to.port, address, () => {
          cleanup();
          resolve(socket);
        });
      if (this.init.localAddress !== undefined) socket.bind({ address: this.init.localAddress, port: 0 }, connect);
      else connect();
    });
  }

  /** Binds one socket at `at`; each new remote address:port becomes a PacketConn. */
  async listen(at: Endpoint, onConn: (conn: PacketConn) => void): Promise<Listener> {
    const family = isIP(at.host) || 4;
    const socket = dgram.createSocket(this.socketOptions(family));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.close();
        reject(new ListenError(formatEndpoint(at), errnoOf(err), { cause: err }));
      };
      socket.once('error', onError);
      socket.bind({ address: at.host, port: at.port }, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    return new UdpListener(
      socket,
      {
        maxPacketSize: this.init.maxPacketSize ?? 1452,
        maxQueuedPackets: this.init.maxQueuedPackets ?? UDP_MAX_QUEUED_PACKETS,
        idleTimeoutMs: this.init.idleTimeoutMs ?? 180_000,
        maxAssociations: this.init.maxAssociations ?? 65_536,
        logger: this.init.logger ?? nullLogger,
        ...(this.init.metrics !== undefined ? { metrics: this.init.metrics } : {}),
      },
      onConn,
    );
  }
}
