/**
 * A reliable record channel over an unreliable one: the record-channel seam
 * (secure/record-channel.ts) the session needs, made from a packet secure
 * channel (`reliable: false`, one datagram per record) and an
 * {@link ArqConnection}. The session cannot tell it from a TCP path except
 * by its figures ({@link ArqRecordChannel.pathStats}).
 *
 * Driving the sans-IO connection: every event — records from the packet
 * channel, a write, the packet channel draining, the one timer — ends in a
 * pump on the next event-loop turn (so a batch of received datagrams gets
 * one ACK, and a burst of writes fills packets), which sends what the
 * connection lets go while the packet channel takes it, then arms the timer
 * at the connection's next wake.
 *
 * Backpressure: write() returns false once `sendBuffer` bytes wait to be
 * sent for the first time; the drain handler runs once they are under half.
 * Bytes sent and not yet acknowledged are held besides, bounded by the
 * receive window.
 *
 * close() lets what was written be acknowledged (at most `closeTimeoutMs`),
 * then closes the packet channel, which tells the peer.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { LimitError } from '../core/errors.js';
import type { ChannelInfo, RecordChannel, TransportStats } from '../secure/record-channel.js';
import { ArqConnection } from './connection.js';
import type { CongestionController } from './congestion.js';
import { MAX_STREAM_RECORD } from './stream-buffers.js';

/** Options of an {@link ArqRecordChannel}. */
export interface ArqChannelInit {
  clock: Clock;
  cc: CongestionController;
  /** Unsent bytes before write() returns false. @default 256 KiB */
  sendBuffer?: number;
  /** Receive window (both ends alike). @default ARQ_RECV_WINDOW */
  recvWindow?: number;
  /** Bytes each datagram costs besides its record (secure header and tag, UDP and IP). @default 0 */
  packetOverhead?: number;
  /** Graceful close waits this long for acknowledgements. @default 10000 */
  closeTimeoutMs?: number;
  maxAckDelayMs?: number;
  /** Ack-eliciting packets received before an ACK is due at once. @default 2 */
  ackEvery?: number;
  /** The same once the flow is under way. @default 10 */
  ackEveryBulk?: number;
  /** The controller's name in status. @default 'bbr' */
  ccName?: string;
  /** Wire bytes of a datagram's headers below the packet channel (UDP and IP), for the wire-per-useful figure. @default 28 */
  headerBytes?: number;
}

type State = 'open' | 'closing' | 'closed';

/** See the file comment. */
export class ArqRecordChannel implements RecordChannel {
  readonly reliable = true;
  readonly maxRecord = MAX_STREAM_RECORD;
  readonly conn: ArqConnection;
  readonly maxUnreliableRecord: number;
  readonly #inner: RecordChannel;
  readonly #clock: Clock;
  readonly #sendBuffer: number;
  readonly #closeTimeoutMs: number;
  readonly #ccName: string;
  readonly #headerBytes: number;
  readonly #scratch: Buffer;
  #state: State = 'open';
  #pumpScheduled = false;
  #timer: TimerHandle | undefined;
  #timerAt = Infinity;
  #closeTimer: TimerHandle | undefined;
  #wantDrain = false;
  #recordHandler: (pt: Buffer, pooled: Buffer | undefined) => void = () => undefined;
  #drainHandler: () => void = () => undefined;
  #closeHandlers: ((err?: Error) => void)[] = [];
  #closeErr: Error | undefined;
  #started = false;
  #early: Buffer[] = [];

  constructor(inner: RecordChannel, init: ArqChannelInit) {
    this.#inner = inner;
    this.#clock = init.clock;
    this.#sendBuffer = init.sendBuffer ?? 256 * 1024;
    this.#closeTimeoutMs = init.closeTimeoutMs ?? 10_000;
    this.#ccName = init.ccName ?? 'bbr';
    this.#headerBytes = init.headerBytes ?? 28;
    this.#scratch = Buffer.allocUnsafe(inner.maxRecord);
    this.conn = new ArqConnection({
      cc: init.cc,
      maxPacket: inner.maxRecord,
      packetOverhead: init.packetOverhead,
      recvWindow: init.recvWindow,
      maxAckDelayMs: init.maxAckDelayMs,
      ackElicitingThreshold: init.ackEvery,
      bulkAckThreshold: init.ackEveryBulk,
      onRecord: (r) => this.#deliver(r),
      onDatagram: (r) => this.#deliver(r),
    });
    this.maxUnreliableRecord = this.conn.maxDatagram;
    inner.onRecord((pt) => {
      if (this.#state === 'closed') return;
      this.conn.receive(pt, this.#clock.now());
      if (this.conn.failure !== undefined) return this.abort(this.conn.failure);
      this.#schedulePump();
    });
    inner.onDrain(() => this.#pump());
    inner.onClose((err) => this.#finish(err));
    inner.start();
  }

  get info(): ChannelInfo {
    return this.#inner.info;
  }

  get bytesIn(): number {
    return this.#inner.bytesIn;
  }

  get bytesOut(): number {
    return this.#inner.bytesOut;
  }

  get queuedBytes(): number {
    return this.conn.send.backlog + this.#inner.queuedBytes;
  }

  get writable(): boolean {
    return this.#state === 'open' && this.conn.send.backlog < this.#sendBuffer;
  }

  /** RTT, window, pacing, loss and retransmissions of this path. */
  transportStats(): TransportStats {
    const c = this.conn;
    const ld = c.ld;
    const wire = this.#inner.bytesOut + this.#inner.bytesIn + this.#headerBytes * (c.stats.packetsOut + c.stats.packetsIn);
    const useful = c.send.ackedBase + c.recv.next;
    return {
      cc: this.#ccName,
      rttMs: ld.rtt.smoothedRtt,
      minRttMs: ld.rtt.samples > 0 ? ld.rtt.minRtt : 0,
      cwndBytes: ld.cc.window,
      pacingBytesPerSec: ld.cc.pacingRate(),
      bytesInFlight: ld.bytesInFlight,
      packetsSent: ld.sent,
      packetsLost: ld.lost,
      spuriousLosses: ld.spurious,
      retransmittedBytes: c.stats.retransmittedBytes,
      lossRate: ld.sent > 0 ? ld.lost / ld.sent : 0,
      wirePerUseful: useful > 0 ? wire / useful : 0,
      mtu: c.maxPacket,
      datagramsSent: c.stats.datagramsSent,
      datagramsReceived: c.stats.datagramsReceived,
    };
  }

  write(buf: Buffer, len: number): boolean {
    if (len < 1 || len > this.maxRecord) throw new LimitError('record', `record of ${len} bytes is out of range (1..${this.maxRecord})`);
    if (this.#state !== 'open') return false;
    this.conn.write(buf, len);
    this.#schedulePump();
    if (this.conn.send.backlog >= this.#sendBuffer) {
      this.#wantDrain = true;
      return false;
    }
    return true;
  }

  writeUnreliable(buf: Buffer, len: number): boolean {
    if (this.#state !== 'open' || len < 1 || len > this.maxUnreliableRecord) return false;
    const ok = this.conn.sendDatagram(Buffer.from(buf.subarray(0, len)));
    if (ok) this.#schedulePump();
    return ok;
  }

  onRecord(handler: (plaintext: Buffer, pooled: Buffer | undefined) => void): void {
    this.#recordHandler = handler;
  }

  onDrain(handler: () => void): void {
    this.#drainHandler = handler;
  }

  onClose(handler: (err?: Error) => void): void {
    if (this.#state === 'closed') handler(this.#closeErr);
    else this.#closeHandlers.push(handler);
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    const early = this.#early;
    this.#early = [];
    for (const r of early) {
      if (this.#state === 'closed') break;
      this.#recordHandler(r, undefined);
    }
  }

  close(): void {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    this.#closeTimer = this.#clock.setTimeout(() => this.#inner.close(), this.#closeTimeoutMs);
    this.#schedulePump();
  }

  abort(err?: Error): void {
    if (this.#state === 'closed') return;
    this.#inner.abort(err);
    this.#finish(err);
  }

  #deliver(record: Buffer): void {
    if (this.#state === 'closed') return;
    if (!this.#started) this.#early.push(record);
    else this.#recordHandler(record, undefined);
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#state === 'closed') return;
    const now = this.#clock.now();
    const out = this.#scratch;
    while (this.#inner.writable) {
      const n = this.conn.poll(now, out);
      if (n === 0) break;
      this.#inner.write(out, n);
    }
    if (this.#state === 'closing' && this.conn.send.allAcked) {
      this.#inner.close();
      return;
    }
    if (this.#wantDrain && this.conn.send.backlog < this.#sendBuffer / 2 && this.#state === 'open') {
      this.#wantDrain = false;
      this.#drainHandler();
    }
    this.#arm(now);
  }

  #arm(now: number): void {
    if (!this.#inner.writable) return; // the packet channel's drain pumps again
    const at = this.conn.nextWake(now);
    if (at === undefined || at >= this.#timerAt) return;
    this.#clock.clear(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#clock.setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = Infinity;
        this.#pump();
      },
      Math.max(0, at - now),
    );
  }

  #finish(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeErr = err;
    this.#clock.clear(this.#timer);
    this.#clock.clear(this.#closeTimer);
    this.#early = [];
    const handlers = this.#closeHandlers;
    this.#closeHandlers = [];
    for (const h of handlers) h(err);
  }
}
