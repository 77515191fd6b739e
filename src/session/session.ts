/**
 * The session: what the user sees as "the tunnel". It multiplexes streams
 * (credit flow control per stream and per session), an unreliable datagram
 * lane and a control lane over secure channels ("paths"), and survives the
 * loss of a path: every stream-carrying frame has a session sequence
 * number, the peer acknowledges them, and unacknowledged frames are kept
 * (bounded) and sent again on another path or a new one.
 *
 * ```
 *            attach()                      path lost
 *   (new) ───────────▶ open ◀──────────▶ detached ──grace expired──┐
 *                       │      attach()                            │
 *              close()  │                                          ▼
 *                       └────────▶ closing ─────────────────────▶ closed
 *                                   abort(err) from any state ───▶ closed
 * ```
 * "detached" means no path is left. This file is the facade (lifecycle,
 * public API); components do the work: stream-table.ts, credit.ts,
 * reliability.ts, record-writer.ts (send), receiver.ts (receive),
 * datagram-lane.ts, control-lane.ts, idle.ts, and multipath/ (path state,
 * probes, scheduler, liveness: several paths at once, each record on the
 * usable path with the earliest expected delivery).
 */
import { EventEmitter } from 'node:events';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { ClosedError, LimitError, ProtocolError, TimeoutError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { MAX_RECORD_PLAINTEXT } from '../secure/record.js';
import type { RecordChannel } from '../secure/record-channel.js';
import { ControlLane } from './control-lane.js';
import { SessionCredit } from './credit.js';
import { DatagramLane } from './datagram-lane.js';
import { DATA_HEADER, DATAGRAM_HEADER } from './frames.js';
import { Liveness, type LivenessHost } from './multipath/liveness.js';
import type { PathOptions, SessionPath } from './multipath/path.js';
import { PathScheduler } from './multipath/scheduler.js';
import { CloseCode, initialStreamWindow, SessionClosedError, type SessionInit, type SessionState, type SessionStats } from './options.js';
import { Receiver, type ReceiverHost } from './receiver.js';
import { RecordWriter } from './record-writer.js';
import { Reliability } from './reliability.js';
import { IdleWatch } from './idle.js';
import { LaneRegistry } from './lanes.js';
import { StreamTable } from './stream-table.js';
import type { PolyStream, StreamHost } from './stream.js';
import { MAX_DATAGRAM_QUEUE_BYTES, MAX_REORDER_FRAMES, MAX_STREAMS, MAX_UNACKED_BYTES, SESSION_WINDOW, STREAM_HIGH_WATER_MARK, STREAM_WINDOW } from '../core/limits.js';

export type { PathOptions, PathStats, PathRole } from './multipath/path.js';
export { CloseCode, initialStreamWindow, SessionClosedError, type SessionInit, type SessionOptions, type SessionState, type SessionStats } from './options.js';
export type { DatagramHandler, Lane, StreamHandler } from './lanes.js';

export class Session extends EventEmitter implements StreamHost, ReceiverHost, LivenessHost {
  readonly id: Buffer;
  readonly role: 'client' | 'server';
  private readonly log: Logger;
  private _state: SessionState = 'detached';
  private readonly maxFramePayload: number;
  private readonly scheduler: PathScheduler;
  private readonly liveness: Liveness;
  private readonly table: StreamTable;
  private readonly credit: SessionCredit;
  private readonly rel: Reliability;
  private readonly datagrams: DatagramLane;
  private readonly control: ControlLane;
  private readonly writer: RecordWriter;
  private readonly receiver: Receiver;
  /** The applications on this session: streams by open kind, datagrams by flow range (lanes.ts). */
  readonly lanes = new LaneRegistry();
  private readonly graceMs: number;
  private graceTimer: TimerHandle | undefined;
  private readonly clock: Clock;
  private readonly idle: IdleWatch;
  private flushScheduled = false;
  private closeError: Error | undefined;
  private attaches = 0;

  constructor(init: SessionInit) {
    super();
    this.id = init.id;
    this.role = init.role;
    this.log = (init.logger ?? nullLogger).child({ session: init.id.toString('hex').slice(0, 8) });
    const clock = (this.clock = init.clock ?? realClock);
    this.control = new ControlLane(clock);
    const streamWindow = init.streamWindow ?? STREAM_WINDOW;
    const sessionWindow = init.sessionWindow ?? SESSION_WINDOW;
    const initialWindow = initialStreamWindow(init);
    const maxStreamWindow = init.maxStreamWindow ?? Math.max(streamWindow, sessionWindow / 2);
    this.maxFramePayload = Math.min(init.maxFramePayload ?? 65536, MAX_RECORD_PLAINTEXT - 1 - DATA_HEADER);
    const pathUpAfterMs = init.pathUpAfterMs ?? 0;
    this.scheduler = new PathScheduler(this, pathUpAfterMs, clock);
    const liveness = { pingIntervalMs: init.pingIntervalMs ?? 10_000, pingTimeoutMs: init.pingTimeoutMs ?? 5_000, maxMissed: init.maxMissedPongs ?? 3, pathUpAfterMs };
    this.liveness = new Liveness(this, this.scheduler, this.log, liveness, clock);
    const settings = { window: initialWindow, fastWindow: streamWindow, maxWindow: maxStreamWindow, peerWindow: init.peerStreamWindow ?? initialWindow };
    this.table = new StreamTable(this, init.role, init.maxStreams ?? MAX_STREAMS, { ...settings, highWaterMark: init.streamHighWaterMark ?? STREAM_HIGH_WATER_MARK, clock });
    this.credit = new SessionCredit(sessionWindow, initialWindow, maxStreamWindow, init.peerSessionWindow ?? sessionWindow);
    this.rel = new Reliability(this.scheduler.paths, this, this.log, init.maxUnacked ?? MAX_UNACKED_BYTES, init.maxReorder ?? MAX_REORDER_FRAMES, clock);
    this.datagrams = new DatagramLane(init.maxDatagramQueue ?? MAX_DATAGRAM_QUEUE_BYTES);
    const idleMs = init.idleTimeoutMs ?? 0;
    this.idle = new IdleWatch(idleMs, () => this.table.size > 0, () => {
      if (this._state !== 'open' && this._state !== 'detached') return;
      this.log.debug({ idleMs }, 'closing idle session');
      this.close(CloseCode.idle, 'idle');
    }, clock);
    const parts = { scheduler: this.scheduler, reliability: this.rel, credit: this.credit, streams: this.table, datagrams: this.datagrams, control: this.control };
    this.writer = new RecordWriter(parts, this.maxFramePayload);
    this.receiver = new Receiver(this, { ...parts, liveness: this.liveness, idle: this.idle, clock, lanes: this.lanes }, this.log);
    this.graceMs = init.graceMs ?? 60_000;
  }

  get state(): SessionState {
    return this._state;
  }

  /** Highest sequence number delivered in order (sent in resume handshakes). */
  get receivedSeq(): number {
    return this.rel.received;
  }

  /** Smoothed RTT of the fastest usable path. */
  get rttMs(): number | undefined {
    return this.scheduler.rttMs;
  }

  /** Number of live paths. */
  get pathCount(): number {
    return this.scheduler.size;
  }

  get stats(): SessionStats {
    return {
      state: this._state,
      streams: this.table.size,
      rttMs: this.rttMs,
      bytesSent: this.writer.bytesSent,
      bytesReceived: this.receiver.bytesReceived,
      framesResent: this.rel.framesResent,
      attaches: this.attaches,
      unackedBytes: this.rel.unackedBytes,
      datagramsDropped: this.datagrams.dropped,
      paths: [...this.scheduler.paths.values()].map((p) => p.stats()),
    };
  }

  /** The error the session ended with (after 'closed'). */
  get error(): Error | undefined {
    return this.closeError;
  }

  // ───────────────────────────── public API ─────────────────────────────

  /**
   * Opens a stream. `openPayload` travels with the OPEN frame (e.g. the
   * destination); data written right away leaves in the same record (0-RTT).
   */
  openStream(openPayload: Buffer = Buffer.alloc(0)): PolyStream {
    if (this._state === 'closed' || this._state === 'closing') throw new ClosedError('session', { cause: this.closeError });
    if (this.control.peerGoaway) throw new ClosedError('session (draining)');
    if (openPayload.length > this.maxFramePayload) throw new LimitError('openPayload', `open payload of ${openPayload.length} bytes exceeds ${this.maxFramePayload}`);
    const s = this.table.open(openPayload);
    this.scheduleFlush();
    return s;
  }

  /** Handles streams the peer opens that no lane claims (lanes.ts). Without any handler they are refused. */
  onStream(handler: (s: PolyStream) => void): void {
    this.lanes.setAnyStream(handler);
  }

  /** Sends a datagram (unreliable, unordered with streams); false when dropped (no path, queue full, too large). */
  sendDatagram(flow: number, payload: Buffer): boolean {
    if (!this.datagrams.send(this._state === 'open', flow, payload)) return false;
    this.idle.touch();
    this.scheduleFlush();
    return true;
  }

  /** The largest datagram that leaves unreliably (a udp path); undefined when every path is a stream. */
  get datagramRoom(): number | undefined { return this.scheduler.unreliableRoom(1 + DATAGRAM_HEADER); }

  /** Handles datagrams that no lane claims (lanes.ts). */
  onDatagram(handler: (flow: number, payload: Buffer) => void): void {
    this.lanes.setAnyDatagram(handler);
  }

  /** Measures one round trip on the control lane. */
  ping(signal?: AbortSignal): Promise<number> {
    if (this._state !== 'open') return Promise.reject(new ClosedError('session path'));
    const rtt = this.control.ping(this.scheduler.bestControlPath(), signal);
    this.scheduleFlush();
    return rtt;
  }

  /** Tells the peer to open no new streams (drain); existing streams go on. */
  goaway(code = 0): void {
    if (this._state === 'closed') return;
    this.control.goaway(code);
    this.scheduleFlush();
  }

  /**
   * Drains: sends GOAWAY, waits until every stream has ended (or `timeoutMs`
   * passed), then closes. Resolves when the session is closed.
   */
  async drain(timeoutMs = 30_000): Promise<void> {
    if (this._state === 'closed') return;
    this.goaway();
    const deadline = this.clock.now() + timeoutMs;
    while (this.table.size > 0 && this.clock.now() < deadline && (this._state as SessionState) !== 'closed') await this.clock.sleep(50);
    this.close(0, 'drained');
  }

  /**
   * Closes now: the queued frames and a CLOSE frame go out, remaining streams
   * are reset with SessionClosedError, the path is ended. Idempotent.
   */
  close(code = 0, reason = ''): void {
    if (this._state === 'closed' || this._state === 'closing') return;
    this._state = 'closing';
    const err = new SessionClosedError(code, reason, 'local');
    if (this.scheduler.size > 0) {
      this.writer.flush();
      this.control.sendClose(this.scheduler.paths.values(), code, reason);
    }
    // A local close ends our own streams quietly (like socket.destroy());
    // readers see 'close' without 'end'. Remote closes and aborts carry errors.
    this.table.destroyAll();
    this.finish(err);
  }

  /** Immediate teardown. Idempotent. */
  abort(err: Error = new ClosedError('session')): void {
    if (this._state === 'closed') return;
    for (const p of this.scheduler.paths.values()) p.channel.abort(err);
    this.finish(err);
  }

  // ───────────────────────────── paths ─────────────────────────────

  /**
   * Attaches a secure channel as a path. `peerReceivedSeq` is the highest
   * sequence number the peer had delivered (from the handshake). Without
   * `join`, the channel replaces every path (a resume): all unacknowledged
   * frames are sent again on it. With `join` it is added beside the others
   * (bonding) and, unless it is the only path, carries traffic once it has
   * answered pings for `pathUpAfterMs`.
   */
  attach(channel: RecordChannel, peerReceivedSeq: number, opts: PathOptions & { join?: boolean } = {}): SessionPath | undefined {
    if (this._state === 'closed' || this._state === 'closing') {
      channel.abort(new ClosedError('session'));
      return undefined;
    }
    if (peerReceivedSeq > this.rel.lastSent || peerReceivedSeq < 0) {
      channel.abort();
      this.abort(new ProtocolError(`peer claims seq ${peerReceivedSeq} but only ${this.rel.lastSent} were sent`));
      return undefined;
    }
    // Joining a session that has no path left is a resume.
    const replace = !opts.join || this.scheduler.size === 0;
    if (replace) {
      for (const old of [...this.scheduler.paths.values()]) {
        this.scheduler.remove(old);
        old.channel.abort(new ClosedError('superseded path'));
      }
    }
    if (this.rel.applyAck(peerReceivedSeq) && (this.table.ring.length > 0 || this.rel.resending)) this.scheduleFlush();
    const path = this.scheduler.add(channel, opts);
    if (replace) this.rel.resendAll(); // everything unacknowledged goes again, in order
    this.restateControl(); // window state and our ack are idempotent: restate them on the new path
    this.clock.clear(this.graceTimer);
    this.graceTimer = undefined;
    channel.onRecord((pt, pooled) => this.receiver.onRecord(pt, path, pooled));
    channel.onDrain(() => this.writer.flush());
    channel.onClose((err) => this.onPathClosed(path, err));
    this._state = 'open';
    this.attaches++;
    this.liveness.start(path);
    this.liveness.tick(path); // an RTT (and a liveness verdict) right away, not after the first interval
    channel.start();
    this.emit('attached', channel);
    this.emit('path', path.stats());
    this.writer.flush();
    return path;
  }

  /** WINDOW and ACK frames are unsequenced and idempotent: restate them (a new path, or one that may have lost them). */
  private restateControl(): void {
    this.credit.restate(this.table.streams.keys());
    this.rel.requestAck();
  }

  private onPathClosed(path: SessionPath, err?: Error): void {
    if (!this.scheduler.remove(path)) return;
    this.emit('pathClosed', path.stats(), err);
    if (this.scheduler.size > 0) {
      this.scheduler.reviveIfNoneUp();
      // Bonding: what this path still held goes again on the others, now.
      this.rel.moveInflight(path, 'path lost');
      this.restateControl();
      this.writer.flush();
      return;
    }
    this.datagrams.clear();
    if (this._state !== 'open') return;
    this._state = 'detached';
    this.log.debug({ err: err?.message }, 'path lost, waiting for resume');
    this.graceTimer = this.clock.setTimeout(() => this.abort(new TimeoutError('session resume grace period')), this.graceMs);
    this.emit('detached', err);
  }

  // ──────────────── component hosts (StreamHost, ReceiverHost, LivenessHost) ────────────────

  wake(s: PolyStream): void {
    this.table.wake(s);
    this.scheduleFlush();
  }

  consumed(s: PolyStream, _delta: number): void {
    if (s.destroyed) return;
    if (this.credit.consumed(s)) this.scheduleFlush();
  }

  windowCap(s: PolyStream, wanted: number): number {
    return this.credit.windowCap(s, wanted);
  }

  windowRttMs(): number {
    return this.scheduler.windowRttMs();
  }

  remove(s: PolyStream, sendReset: number | undefined): void {
    this.idle.touch();
    this.table.remove(s);
    this.credit.forget(s);
    if (sendReset !== undefined && !s.openPending && this._state !== 'closed' && this._state !== 'closing') {
      this.log.debug({ sid: s.id, code: sendReset, sent: s.sentOffset, received: s.recvOffset }, 'resetting stream');
      this.table.queueReset(s.id, sendReset);
      this.scheduleFlush();
    }
    this.emit('streamClosed', s);
  }

  acceptsStreams(): boolean {
    return this.lanes.takesStreams && this._state === 'open';
  }

  goawayReceived(code: number): void {
    this.emit('goaway', code);
  }

  closedByPeer(code: number, reason: string): void {
    const err = new SessionClosedError(code, reason, 'remote');
    this._state = 'closing';
    this.table.destroyAll(err);
    for (const p of this.scheduler.paths.values()) p.channel.close();
    this.finish(err);
  }

  nextPingId(): number {
    return this.control.nextPingId();
  }

  pathSuspect(p: SessionPath): void {
    this.rel.moveInflight(p, 'pong missed');
    this.restateControl(); // WINDOW and ACK frames it carried may be lost with it
    this.scheduleFlush();
  }

  pathUp(p: SessionPath): void {
    this.emit('pathUp', p.stats());
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.flushScheduled || this.scheduler.size === 0) return;
    this.flushScheduled = true;
    queueMicrotask(this.flushNow);
  }

  /** Bound once: scheduling a flush allocates nothing. */
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    this.writer.flush();
  };

  // ───────────────────────────── lifecycle ─────────────────────────────

  private finish(err: Error): void {
    if (this._state === 'closed') return;
    this._state = 'closed';
    this.closeError = err;
    for (const p of this.scheduler.paths.values()) p.stopTimers();
    this.clock.clear(this.graceTimer);
    this.idle.stop();
    this.table.destroyAll(err);
    this.table.clear();
    this.rel.clear();
    this.datagrams.clear();
    this.control.clear();
    this.emit('closed', err);
  }
}
