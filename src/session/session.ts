/**
 * The session: what the user sees as "the tunnel". It multiplexes streams
 * (credit flow control per stream and per session), an unreliable datagram
 * lane and a control lane over a secure channel (a "path"), and survives the
 * loss of that path: every stream-carrying frame has a session sequence
 * number, the peer acknowledges them, and unacknowledged frames are kept
 * (bounded) and sent again when a new path is attached.
 *
 * ```
 *            attach()                      path lost
 *   (new) ───────────▶ open ◀──────────▶ detached ──grace expired──┐
 *                       │      attach()                            │
 *              close()  │                                          ▼
 *                       └────────▶ closing ─────────────────────▶ closed
 *                                   abort(err) from any state ───▶ closed
 * ```
 *
 * Send order inside each record: control (ACK, WINDOW, PONG, PING, GOAWAY,
 * CLOSE) → frames to resend → datagrams → streams round-robin, one frame
 * each. Control is thus never queued behind bulk data in our own buffers.
 *
 * A session may have several paths at once (bonding): each record goes on
 * the usable path with the earliest expected delivery, the receiver puts
 * frames back in sequence order (bounded), and what a path that died still
 * held unacknowledged is sent again on the others at once. "detached" means
 * no path is left.
 */
import { EventEmitter } from 'node:events';
import { ClosedError, LimitError, PolytunError, ProtocolError, TimeoutError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { MAX_RECORD_PLAINTEXT, RECORD_DATA } from '../secure/record.js';
import type { RecordChannel } from '../secure/record-channel.js';
import {
  ACK_SIZE, DATA_HEADER, DATAGRAM_HEADER, F_DATA, F_FIN, F_OPEN, F_PING, F_PONG, F_RST, GOAWAY_SIZE, PING_SIZE,
  CLOSE_HEADER, WINDOW_SIZE, parseFrames, seqFrameSize, writeAck, writeClose, writeDatagram, writeGoaway,
  writePingPong, writeSeqFrame, writeWindow, type FrameVisitor, type SeqFrame,
} from './frames.js';
import { PolyStream, ResetCode, type StreamHost } from './stream.js';
import { leaseDone, releaseRecordBuffer, takeRecordBuffer, type RecordLease } from '../secure/record-pool.js';
import { SessionPath, type PathOptions, type PathStats } from './path.js';

export type { PathOptions, PathStats } from './path.js';

export type SessionState = 'open' | 'detached' | 'closing' | 'closed';

export interface SessionInit {
  role: 'client' | 'server';
  /** 16-byte session id (random; the resume handle). */
  id: Buffer;
  logger?: Logger;
  /**
   * Receive window of a stream whose reader keeps up. Every stream starts
   * with a smaller one, initialStreamWindow(): what a paused reader may hold.
   * @default 1 MiB
   */
  streamWindow?: number;
  /**
   * Receive window for the whole session: bytes in flight towards us. Also
   * the budget that stream windows beyond their initial one share (see
   * windowCap), so a session buffers at most sessionWindow plus
   * maxStreams × initialStreamWindow() unread bytes. @default 16 MiB
   */
  sessionWindow?: number;
  /** A stream's window grows up to this when its reader keeps up. @default sessionWindow / 2 */
  maxStreamWindow?: number;
  /** The peer's windows (from the handshake). @default same as ours */
  peerStreamWindow?: number;
  peerSessionWindow?: number;
  /** Concurrent streams the peer may open. @default 1024 */
  maxStreams?: number;
  /** Largest DATA payload per frame (capped so one frame fits a record). @default 65536: a bulk read leaves as one frame in one record */
  maxFramePayload?: number;
  /** Sent-but-unacknowledged bytes kept for resend. @default 16 MiB */
  maxUnacked?: number;
  /** Out-of-order frames held for reordering. @default 8192 */
  maxReorder?: number;
  /** Datagram bytes queued for sending before new ones are dropped. @default 1 MiB */
  maxDatagramQueue?: number;
  /** Write-side buffer per stream before write() returns false. @default 256 KiB */
  streamHighWaterMark?: number;
  /** @default 10000 */
  pingIntervalMs?: number;
  /** @default 5000 */
  pingTimeoutMs?: number;
  /** @default 3 */
  maxMissedPongs?: number;
  /** How long a detached session waits for a new path. @default 60000 */
  graceMs?: number;
  /** A joining path carries traffic after answering pings for this long. @default 0 */
  pathUpAfterMs?: number;
  /** Close the session (code CloseCode.idle) after this long with no stream and no datagram; 0 = never. @default 0 */
  idleTimeoutMs?: number;
}

/** The smallest initial stream window we advertise (a stream that small makes small frames). */
const MIN_INITIAL_WINDOW = 16 * 1024;

/**
 * The window every new stream gets before its reader has shown it keeps up:
 * what the handshake advertises as the stream window. It is what a paused
 * reader may end up holding, so it is small enough that maxStreams of them
 * fit in the session window (16 KiB with the defaults), but never below 16
 * KiB nor above `streamWindow`.
 */
export function initialStreamWindow(opts: Pick<SessionInit, 'streamWindow' | 'sessionWindow' | 'maxStreams'> = {}): number {
  const stream = opts.streamWindow ?? 1 << 20;
  const session = opts.sessionWindow ?? 16 << 20;
  const streams = opts.maxStreams ?? 1024;
  return Math.min(stream, Math.max(MIN_INITIAL_WINDOW, Math.floor(session / streams)));
}

/** Codes of a session CLOSE frame. A client renews after idle/shutdown, not after the others. */
export const CloseCode = {
  normal: 0,
  idle: 1,
  shutdown: 2,
  kicked: 3,
  quota: 4,
  expired: 5,
} as const;

/** The tunables of a session (what a server or client config sets). */
export type SessionOptions = Omit<SessionInit, 'role' | 'id' | 'logger' | 'peerStreamWindow' | 'peerSessionWindow'>;

export class SessionClosedError extends PolytunError {
  readonly closeCode: number;
  /** Which side closed it. */
  readonly by: 'local' | 'remote';
  constructor(code: number, reason: string, by: 'local' | 'remote') {
    super('ERR_SESSION_CLOSED', `session closed by ${by} (code ${code}${reason ? `: ${reason}` : ''})`);
    this.closeCode = code;
    this.by = by;
  }
}

export interface SessionStats {
  state: SessionState;
  streams: number;
  rttMs: number | undefined;
  bytesSent: number;
  bytesReceived: number;
  framesResent: number;
  attaches: number;
  unackedBytes: number;
  datagramsDropped: number;
  paths: PathStats[];
}

/** A sequenced frame plus the path it last went on (0: not sent on a live path). */
interface PathFrame extends SeqFrame {
  pathId: number;
  /**
   * On the last DATA frame of a record: that record, whose DATA payloads are
   * kept as its slices (see emitSeq); back to the pool when this frame is
   * acknowledged, as every earlier one of the record then is.
   */
  record: Buffer | undefined;
}

interface Held {
  type: SeqFrame['type'];
  sid: number;
  payload: Buffer | undefined;
  code: number;
}

const ACK_FRAMES = 32;
const ACK_BYTES = 128 * 1024;
const ACK_DELAY_MS = 5;
/** Records up to this size keep their DATA payloads in a copy of their own (see keepSmall). */
const SMALL_RECORD = 4096;
/** `scratch` outside a flush. */
const NO_SCRATCH = Buffer.alloc(0);

export class Session extends EventEmitter implements StreamHost {
  readonly id: Buffer;
  readonly role: 'client' | 'server';
  private readonly log: Logger;
  private _state: SessionState = 'detached';
  private readonly paths = new Map<number, SessionPath>();
  private nextPathId = 1;
  private readonly pathUpAfterMs: number;
  /**
   * The record being assembled, during a flush only: taken from the pool
   * when it starts and given back when it ends, so an idle session holds no
   * 64 KiB buffer (a thousand sessions: 64 MiB). After a record (over
   * SMALL_RECORD bytes) whose DATA frames were kept as slices of it (see
   * emitSeq), it stays with its last DATA frame until acknowledged and a
   * fresh one from the pool takes its place.
   */
  private scratch: Buffer = NO_SCRATCH;
  private flushDepth = 0;
  /** The last DATA frame written into `scratch`, if any. */
  private scratchLastData: PathFrame | undefined;

  // limits
  /** A keeping-up stream's window (the configured streamWindow). */
  private readonly streamWindow: number;
  /** What a new stream is granted (and what the peer assumes): initialStreamWindow(). */
  private readonly initialWindow: number;
  private readonly sessionWindow: number;
  private readonly maxStreamWindow: number;
  private readonly peerStreamWindow: number;
  private readonly maxStreams: number;
  private readonly maxFramePayload: number;
  private readonly maxUnacked: number;
  private readonly maxReorder: number;
  private readonly maxDatagramQueue: number;
  private readonly streamHwm: number;

  // streams
  private readonly streams = new Map<number, PolyStream>();
  private nextStreamId: number;
  private peerMaxId = 0;
  private ring: PolyStream[] = [];
  private streamHandler: ((s: PolyStream) => void) | undefined;

  // sequenced send state: retransmit deque [head, length) of unacknowledged
  // frames (each remembers the path it last went on); resendQ holds those to
  // send again, in sequence order.
  private sendSeq = 0;
  private rtx: PathFrame[] = [];
  private rtxHead = 0;
  private peerAcked = 0;
  private resendQ: PathFrame[] = [];
  private unackedBytes = 0;
  private pendingRst: SeqFrame[] = [];

  // receive state
  private recvSeq = 0;
  private readonly reorder = new Map<number, Held>();
  private ackPending = false;
  private lastAckSent = 0;
  private bytesSinceAck = 0;
  private ackTimer: NodeJS.Timeout | undefined;

  // session-level credit
  // Session credit bounds what is in flight towards us: it is returned as
  // soon as DATA lands in a stream (or is dropped), not when the reader takes
  // it, so a paused reader holds none. What streams hold unread is bounded by
  // their own windows instead: beyond the initial window, those share the
  // budget of sessionWindow (`creditExcess`, see windowCap).
  private sendLimitSession: number;
  private sentSession = 0;
  private recvSession = 0;
  private releasedSession = 0;
  private recvLimitSession: number;
  /** Sum over streams of their outstanding credit beyond the initial window (PolyStream.creditExcess). */
  private creditExcess = 0;
  private readonly windowQueue = new Set<number>();

  // control lane (pings and pongs live on each path)
  private goawayToSend: number | undefined;
  private peerGoaway = false;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly maxMissed: number;
  private pingSeq = 0;
  private readonly pingWaiters = new Map<number, { at: number; resolve: (rtt: number) => void }>();

  // datagrams
  private dgQueue: { flow: number; payload: Buffer }[] = [];
  private dgQueued = 0;
  private datagramHandler: ((flow: number, payload: Buffer) => void) | undefined;

  // lifecycle
  private readonly graceMs: number;
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly idleTimeoutMs: number;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastActivity = Date.now();
  private flushScheduled = false;
  private closeError: Error | undefined;

  // stats
  private bytesSent = 0;
  private bytesReceived = 0;
  private framesResent = 0;
  private attaches = 0;
  private datagramsDropped = 0;

  constructor(init: SessionInit) {
    super();
    this.id = init.id;
    this.role = init.role;
    this.log = (init.logger ?? nullLogger).child({ session: init.id.toString('hex').slice(0, 8) });
    this.streamWindow = init.streamWindow ?? 1 << 20;
    this.sessionWindow = init.sessionWindow ?? 16 << 20;
    this.initialWindow = initialStreamWindow(init);
    this.peerStreamWindow = init.peerStreamWindow ?? this.initialWindow;
    this.maxStreamWindow = init.maxStreamWindow ?? Math.max(this.streamWindow, this.sessionWindow / 2);
    this.sendLimitSession = init.peerSessionWindow ?? this.sessionWindow;
    this.recvLimitSession = this.sessionWindow;
    this.maxStreams = init.maxStreams ?? 1024;
    this.maxFramePayload = Math.min(init.maxFramePayload ?? 65536, MAX_RECORD_PLAINTEXT - 1 - DATA_HEADER);
    this.maxUnacked = init.maxUnacked ?? 16 << 20;
    this.maxReorder = init.maxReorder ?? 8192;
    this.maxDatagramQueue = init.maxDatagramQueue ?? 1 << 20;
    this.streamHwm = init.streamHighWaterMark ?? 256 * 1024;
    this.pingIntervalMs = init.pingIntervalMs ?? 10_000;
    this.pingTimeoutMs = init.pingTimeoutMs ?? 5_000;
    this.maxMissed = init.maxMissedPongs ?? 3;
    this.graceMs = init.graceMs ?? 60_000;
    this.idleTimeoutMs = init.idleTimeoutMs ?? 0;
    if (this.idleTimeoutMs > 0) {
      this.idleTimer = setInterval(() => this.checkIdle(), Math.max(50, Math.min(this.idleTimeoutMs / 4, 30_000)));
      this.idleTimer.unref();
    }
    this.pathUpAfterMs = init.pathUpAfterMs ?? 0;
    this.nextStreamId = init.role === 'client' ? 1 : 2;
  }

  get state(): SessionState {
    return this._state;
  }

  /** Highest sequence number delivered in order (sent in resume handshakes). */
  get receivedSeq(): number {
    return this.recvSeq;
  }

  /** Smoothed RTT of the fastest usable path. */
  get rttMs(): number | undefined {
    let best: number | undefined;
    for (const p of this.paths.values()) if (p.up && p.srtt !== undefined && (best === undefined || p.srtt < best)) best = p.srtt;
    return best;
  }

  /** Number of live paths. */
  get pathCount(): number {
    return this.paths.size;
  }

  get stats(): SessionStats {
    return {
      state: this._state,
      streams: this.streams.size,
      rttMs: this.rttMs,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      framesResent: this.framesResent,
      attaches: this.attaches,
      unackedBytes: this.unackedBytes,
      datagramsDropped: this.datagramsDropped,
      paths: [...this.paths.values()].map((p) => p.stats()),
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
    if (this.peerGoaway) throw new ClosedError('session (draining)');
    if (openPayload.length > this.maxFramePayload) throw new LimitError('openPayload', `open payload of ${openPayload.length} bytes exceeds ${this.maxFramePayload}`);
    if (this.streams.size >= this.maxStreams) throw new LimitError('streams', `stream limit of ${this.maxStreams} reached`);
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const s = new PolyStream(this, id, openPayload, {
      window: this.initialWindow,
      fastWindow: this.streamWindow,
      maxWindow: this.maxStreamWindow,
      peerWindow: this.peerStreamWindow,
      locallyOpened: true,
      highWaterMark: this.streamHwm,
    });
    this.streams.set(id, s);
    this.wake(s);
    return s;
  }

  /** Handles streams the peer opens. Without a handler they are refused. */
  onStream(handler: (s: PolyStream) => void): void {
    this.streamHandler = handler;
  }

  /**
   * Sends a datagram (unreliable, unordered with respect to streams). Returns
   * false when it was dropped (no path, queue full, too large).
   */
  sendDatagram(flow: number, payload: Buffer): boolean {
    if (this._state !== 'open' || payload.length > MAX_RECORD_PLAINTEXT - 1 - DATAGRAM_HEADER || this.dgQueued + payload.length > this.maxDatagramQueue) {
      this.datagramsDropped++;
      return false;
    }
    this.dgQueue.push({ flow, payload });
    this.dgQueued += payload.length;
    this.lastActivity = Date.now();
    this.scheduleFlush();
    return true;
  }

  onDatagram(handler: (flow: number, payload: Buffer) => void): void {
    this.datagramHandler = handler;
  }

  /** Measures one round trip on the control lane. */
  ping(signal?: AbortSignal): Promise<number> {
    if (this._state !== 'open') return Promise.reject(new ClosedError('session path'));
    const id = this.nextPingId();
    return new Promise((resolve, reject) => {
      this.pingWaiters.set(id, { at: performance.now(), resolve });
      signal?.addEventListener('abort', () => {
        this.pingWaiters.delete(id);
        reject(toError(signal.reason));
      }, { once: true });
      const path = this.bestControlPath();
      if (!path) {
        this.pingWaiters.delete(id);
        reject(new ClosedError('session path'));
        return;
      }
      path.pingToSend = id;
      this.scheduleFlush();
    });
  }

  /** Tells the peer to open no new streams (drain); existing streams go on. */
  goaway(code = 0): void {
    if (this._state === 'closed') return;
    this.goawayToSend = code;
    this.scheduleFlush();
  }

  /**
   * Drains: sends GOAWAY, waits until every stream has ended (or `timeoutMs`
   * passed), then closes. Resolves when the session is closed.
   */
  async drain(timeoutMs = 30_000): Promise<void> {
    if (this._state === 'closed') return;
    this.goaway();
    const deadline = Date.now() + timeoutMs;
    while (this.streams.size > 0 && Date.now() < deadline && (this._state as SessionState) !== 'closed') {
      await new Promise((r) => setTimeout(r, 50));
    }
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
    if (this.paths.size > 0) {
      this.flush();
      // The reason's length is one byte on the wire: at most 200 bytes of it go.
      const why = Buffer.from(reason);
      const buf = Buffer.allocUnsafe(1 + CLOSE_HEADER + 200);
      buf[0] = RECORD_DATA;
      const len = writeClose(buf, 1, code, why.length > 200 ? why.subarray(0, 200) : why);
      // Written on every path even when a carrier wants a drain: it is the last record.
      for (const path of this.paths.values()) {
        path.channel.write(buf, len);
        path.channel.close();
      }
    }
    // A local close ends our own streams quietly (like socket.destroy());
    // readers see 'close' without 'end'. Remote closes and aborts carry errors.
    for (const s of [...this.streams.values()]) s.destroy();
    this.finish(err);
  }

  /** Immediate teardown. Idempotent. */
  abort(err: Error = new ClosedError('session')): void {
    if (this._state === 'closed') return;
    for (const p of this.paths.values()) p.channel.abort(err);
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
    if (peerReceivedSeq > this.sendSeq || peerReceivedSeq < 0) {
      channel.abort();
      this.abort(new ProtocolError(`peer claims seq ${peerReceivedSeq} but only ${this.sendSeq} were sent`));
      return undefined;
    }
    // Joining a session that has no path left is a resume.
    const replace = !opts.join || this.paths.size === 0;
    if (replace) {
      for (const old of [...this.paths.values()]) {
        this.paths.delete(old.id);
        old.stopTimers();
        old.channel.abort(new ClosedError('superseded path'));
      }
    }
    this.applyAck(peerReceivedSeq);
    const alone = this.paths.size === 0;
    const path = new SessionPath(this.nextPathId++, channel, opts, alone || this.pathUpAfterMs === 0);
    if (path.up) path.healthySince = performance.now();
    this.paths.set(path.id, path);
    if (replace) {
      // Everything unacknowledged goes again, in order.
      this.resendQ = this.rtx.slice(this.rtxHead);
      for (const f of this.resendQ) f.pathId = 0;
    }
    // Window state and our ack are idempotent: restate them on the new path.
    this.windowQueue.add(0);
    for (const s of this.streams.values()) this.windowQueue.add(s.id);
    this.ackPending = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    channel.onRecord((pt, pooled) => this.onRecord(pt, path, pooled));
    channel.onDrain(() => this.flush());
    channel.onClose((err) => this.onPathClosed(path, err));
    this._state = 'open';
    this.attaches++;
    this.startLiveness(path);
    this.livenessTick(path); // an RTT (and a liveness verdict) right away, not after the first interval
    channel.start();
    this.emit('attached', channel);
    this.emit('path', path.stats());
    this.flush();
    return path;
  }

  /** Sends what `path` holds unacknowledged again on the other paths (the receiver drops duplicates). */
  private moveInflight(path: SessionPath, why: string): void {
    const lost = this.rtx.slice(this.rtxHead).filter((f) => f.pathId === path.id);
    if (lost.length === 0) return;
    for (const f of lost) {
      f.pathId = 0;
      path.inflight -= seqFrameSize(f);
    }
    this.resendQ = mergeBySeq(this.resendQ, lost);
    this.log.debug({ path: path.label, frames: lost.length, why }, 'resending a path\'s frames on the other paths');
  }

  private onPathClosed(path: SessionPath, err?: Error): void {
    if (this.paths.get(path.id) !== path) return;
    this.paths.delete(path.id);
    path.stopTimers();
    this.emit('pathClosed', path.stats(), err);
    if (this.paths.size > 0) {
      // A suspect path is better than none: if no path is up any more, take suspended ones back.
      if (![...this.paths.values()].some((o) => o.up)) {
        for (const o of this.paths.values()) {
          if (o.suspended) {
            o.suspended = false;
            o.up = true;
          }
        }
      }
      // Bonding: what this path still held goes again on the others, now.
      this.moveInflight(path, 'path lost');
      // WINDOW and ACK are unsequenced: one sent on the dead path may be
      // lost, so restate them (idempotent) on the others.
      this.windowQueue.add(0);
      for (const s of this.streams.values()) this.windowQueue.add(s.id);
      this.ackPending = true;
      this.flush();
      return;
    }
    this.dgQueue = [];
    this.dgQueued = 0;
    if (this._state !== 'open') return;
    this._state = 'detached';
    this.log.debug({ err: err?.message }, 'path lost, waiting for resume');
    this.graceTimer = setTimeout(() => this.abort(new TimeoutError('session resume grace period')), this.graceMs);
    this.graceTimer.unref();
    this.emit('detached', err);
  }

  // ───────────────────────────── StreamHost ─────────────────────────────

  wake(s: PolyStream): void {
    if (!s.queued) {
      s.queued = true;
      this.ring.push(s);
    }
    this.scheduleFlush();
  }

  consumed(s: PolyStream, _delta: number): void {
    if (s.destroyed) return;
    // Session credit went back on receipt; here only the stream's own window is accounted.
    const excess = Math.max(0, s.advertisedLimit - s.consumedBytes - this.initialWindow);
    this.creditExcess += excess - s.creditExcess;
    s.creditExcess = excess;
    // Only a raised limit is news to the peer.
    if (s.advertisedLimit > s.windowSent) {
      this.windowQueue.add(s.id);
      this.scheduleFlush();
    }
  }

  /**
   * A stream's fair share: beyond the initial window every stream has, it
   * may take half of the budget (sessionWindow) that the other streams'
   * windows leave free. k streams that keep up settle at sessionWindow/(k+1)
   * each, a newcomer always finds a part free, and all windows together stay
   * within sessionWindow + streams × initial window. A stream whose reader
   * stalls keeps what it was granted (credit cannot be taken back) but gets
   * no more, and gives it back as it reads.
   */
  windowCap(s: PolyStream, wanted: number): number {
    const free = Math.max(0, this.sessionWindow - (this.creditExcess - s.creditExcess));
    return Math.max(this.initialWindow, Math.min(wanted, this.maxStreamWindow, this.initialWindow + Math.floor(free / 2)));
  }

  /** Returns session credit for `n` bytes that arrived (into a stream's buffer, or dropped). */
  private releaseSession(n: number): void {
    this.releasedSession += n;
    if (this.releasedSession + this.sessionWindow - this.recvLimitSession >= this.sessionWindow / 4) {
      this.recvLimitSession = this.releasedSession + this.sessionWindow;
      this.windowQueue.add(0);
    }
  }

  windowRttMs(): number {
    let worst = 0;
    for (const p of this.paths.values()) if (p.up && p.srtt !== undefined && p.srtt > worst) worst = p.srtt;
    return worst > 0 ? worst : 10;
  }

  private checkIdle(): void {
    if (this._state !== 'open' && this._state !== 'detached') return;
    if (this.streams.size > 0) {
      this.lastActivity = Date.now();
      return;
    }
    if (Date.now() - this.lastActivity >= this.idleTimeoutMs) {
      this.log.debug({ idleMs: this.idleTimeoutMs }, 'closing idle session');
      this.close(CloseCode.idle, 'idle');
    }
  }

  remove(s: PolyStream, sendReset: number | undefined): void {
    this.lastActivity = Date.now();
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    this.windowQueue.delete(s.id);
    this.creditExcess -= s.creditExcess;
    s.creditExcess = 0;
    if (sendReset !== undefined && !s.openPending && this._state !== 'closed' && this._state !== 'closing') {
      this.pendingRst.push({ type: F_RST, seq: 0, sid: s.id, payload: undefined, code: sendReset });
      this.scheduleFlush();
    }
    this.emit('streamClosed', s);
  }

  // ───────────────────────────── sending ─────────────────────────────

  private scheduleFlush(): void {
    if (this.flushScheduled || this.paths.size === 0) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** The usable paths new frames may use: primaries, or backups when no primary is up. */
  private usablePaths(): SessionPath[] {
    const up = [...this.paths.values()].filter((p) => p.up);
    const primaries = up.filter((p) => p.role === 'primary');
    return primaries.length > 0 ? primaries : up;
  }

  /** The writable path with the earliest expected delivery (caps apply only when bonding). */
  private pickPath(): SessionPath | undefined {
    // Hot path (one record each): a single path needs no arrays and no scheduling.
    if (this.paths.size === 1) {
      const only = this.paths.values().next().value as SessionPath;
      return only.up && only.channel.writable ? only : undefined;
    }
    // Bonding probes (path.ts): flush() writes pings first, so a probe whose
    // PING has left is settled here, before any data of this flush.
    const now = performance.now();
    for (const p of this.paths.values()) p.settleProbe(now);
    const usable = this.usablePaths();
    if (usable.length === 1) {
      const only = usable[0] as SessionPath;
      return only.channel.writable ? only : undefined;
    }
    let best: SessionPath | undefined;
    let bestT = Infinity;
    let feedback = 0;
    for (const p of usable) feedback = Math.max(feedback, p.minRtt ?? p.srtt ?? 100);
    for (const p of usable) {
      p.feedbackRttMs = feedback;
      if (p.pingToSend === undefined && p.probeDue(now)) {
        p.pingToSend = p.requestProbe(this.nextPingId());
        this.scheduleFlush();
      }
      if (!p.channel.writable || p.load >= p.cap) continue;
      const t = p.expectedDelivery(16384);
      if (t < bestT) {
        bestT = t;
        best = p;
      }
    }
    return best;
  }

  /** Any writable path, fastest first: for control frames and datagrams. */
  private bestControlPath(): SessionPath | undefined {
    let best: SessionPath | undefined;
    for (const p of this.paths.values()) {
      if (!p.channel.writable) continue;
      if (!best || (p.up && !best.up) || (p.up === best.up && (p.srtt ?? 1e9) < (best.srtt ?? 1e9))) best = p;
    }
    return best;
  }

  private flush(): void {
    if (this.paths.size === 0) return;
    if (this.flushDepth++ === 0) this.scratch = takeRecordBuffer();
    try {
      this.flushRecords();
    } finally {
      if (--this.flushDepth === 0) {
        releaseRecordBuffer(this.scratch);
        this.scratch = NO_SCRATCH;
      }
    }
  }

  private flushRecords(): void {
    let buf = this.scratch;
    buf[0] = RECORD_DATA;
    // Pings and pongs answer on their own path: per-path RTT and liveness.
    for (const p of this.paths.values()) {
      if ((p.pongs.length > 0 || p.pingToSend !== undefined) && p.channel.writable) {
        let off = 1;
        while (p.pongs.length > 0 && off + PING_SIZE <= 64) off = writePingPong(buf, off, F_PONG, p.pongs.shift() as number);
        if (p.pingToSend !== undefined) {
          off = writePingPong(buf, off, F_PING, p.pingToSend);
          p.pingToSend = undefined;
        }
        p.channel.write(buf, off);
      }
    }
    for (;;) {
      const p = this.pickPath();
      if (!p) {
        // No path may take data now; control frames still go on any writable one.
        const c = this.bestControlPath();
        if (!c) return;
        const off = this.fillControl(1);
        if (off > 1) c.channel.write(buf, off);
        return;
      }
      const firstNew = this.rtx.length;
      let off = this.fillControl(1);
      off = this.fillResend(off, p);
      off = this.fillDatagrams(off);
      off = this.fillStreams(off, p);
      if (off === 1) return;
      // A record leaves anyway: acknowledge what arrived since the last ACK
      // for 7 bytes, instead of a record of its own when the delay runs out
      // (in request/response traffic, that record was one write in four).
      if (this.recvSeq !== this.lastAckSent && buf.length - off >= ACK_SIZE) off = this.appendAck(off);
      p.channel.write(buf, off);
      const lastData = this.scratchLastData;
      if (lastData) {
        this.scratchLastData = undefined;
        if (off <= SMALL_RECORD) this.keepSmall(buf, off, firstNew);
        else {
          lastData.record = buf;
          buf = this.scratch = takeRecordBuffer();
          buf[0] = RECORD_DATA;
        }
      }
    }
  }

  /**
   * A small record's DATA payloads are kept in a copy of its own size, and
   * the 64 KiB record buffer serves the next record: a session that sends a
   * few bytes (an OPEN with a request, a keystroke) does not pin a whole
   * pooled buffer until the ACK, nor do a thousand such sessions grow the pool.
   */
  private keepSmall(buf: Buffer, len: number, firstNew: number): void {
    const copy = Buffer.from(buf.subarray(0, len));
    for (let i = firstNew; i < this.rtx.length; i++) {
      const f = this.rtx[i] as PathFrame;
      if (f.type !== F_DATA || f.payload === undefined || f.payload.buffer !== buf.buffer) continue;
      const at = f.payload.byteOffset - buf.byteOffset;
      f.payload = copy.subarray(at, at + f.payload.length);
    }
  }

  private fillControl(off: number): number {
    const buf = this.scratch;
    const cap = buf.length;
    if (this.ackPending && cap - off >= ACK_SIZE) off = this.appendAck(off);
    if (this.goawayToSend !== undefined && cap - off >= GOAWAY_SIZE) {
      off = writeGoaway(buf, off, this.goawayToSend);
      this.goawayToSend = undefined;
    }
    for (const sid of this.windowQueue) {
      if (cap - off < WINDOW_SIZE) break;
      this.windowQueue.delete(sid);
      if (sid === 0) off = writeWindow(buf, off, 0, this.recvLimitSession);
      else {
        const s = this.streams.get(sid);
        if (s) {
          off = writeWindow(buf, off, sid, s.advertisedLimit);
          s.windowSent = s.advertisedLimit;
        }
      }
    }
    return off;
  }

  private appendAck(off: number): number {
    off = writeAck(this.scratch, off, this.recvSeq);
    this.ackPending = false;
    this.lastAckSent = this.recvSeq;
    this.bytesSinceAck = 0;
    return off;
  }

  private fillResend(off: number, p: SessionPath): number {
    const buf = this.scratch;
    const q = this.resendQ;
    let i = 0;
    for (; i < q.length; i++) {
      const f = q[i] as PathFrame;
      if (f.seq <= this.peerAcked) continue; // acknowledged meanwhile
      if (buf.length - off < seqFrameSize(f)) break;
      off = writeSeqFrame(buf, off, f);
      f.pathId = p.id;
      p.inflight += seqFrameSize(f);
      this.framesResent++;
    }
    if (i > 0) this.resendQ = i === q.length ? [] : q.slice(i);
    return off;
  }

  private fillDatagrams(off: number): number {
    const buf = this.scratch;
    let i = 0;
    const q = this.dgQueue;
    for (; i < q.length; i++) {
      const d = q[i] as { flow: number; payload: Buffer };
      if (buf.length - off < DATAGRAM_HEADER + d.payload.length) break;
      off = writeDatagram(buf, off, d.flow, d.payload);
      this.dgQueued -= d.payload.length;
    }
    if (i > 0) this.dgQueue = i === q.length ? [] : q.slice(i);
    return off;
  }

  /** Assigns the next sequence number, keeps the frame for resend, writes it. */
  private emitSeq(off: number, f: SeqFrame, p: SessionPath): number {
    const pf = f as PathFrame;
    pf.seq = ++this.sendSeq;
    pf.pathId = p.id;
    pf.record = undefined;
    this.rtx.push(pf);
    const size = seqFrameSize(pf);
    this.unackedBytes += size;
    p.inflight += size;
    const end = writeSeqFrame(this.scratch, off, pf);
    // The payload is kept as the copy in this record (recycled once
    // acknowledged), so the caller's chunk is free as soon as it is taken:
    // relays reuse their read buffers (PolyStream.chunksFreeAfterWrite).
    if (pf.type === F_DATA) {
      pf.payload = this.scratch.subarray(off + DATA_HEADER, end);
      this.scratchLastData = pf;
    }
    return end;
  }

  private fillStreams(off: number, p: SessionPath): number {
    const buf = this.scratch;
    const cap = buf.length;
    if (this.resendQ.length > 0) return off; // finish resending first: the reorder buffer is bounded
    while (this.pendingRst.length > 0 && cap - off >= 15) off = this.emitSeq(off, this.pendingRst.shift() as SeqFrame, p);
    const ring = this.ring;
    // Bounded by bytes and by frames: the peer reorders at most maxReorder frames.
    while (ring.length > 0 && this.unackedBytes < this.maxUnacked && this.rtx.length - this.rtxHead < this.maxReorder && cap - off >= DATA_HEADER + 1) {
      const s = ring[0] as PolyStream;
      if (s.destroyed || !s.sendable) {
        ring.shift();
        s.queued = false;
        continue;
      }
      if (s.openPending) {
        if (cap - off < DATA_HEADER + s.openPayload.length) break;
        s.openPending = false;
        off = this.emitSeq(off, { type: F_OPEN, seq: 0, sid: s.id, payload: s.openPayload, code: 0 }, p);
      } else if (s.takeFin()) {
        // The loop condition left room for a DATA header, so a FIN always fits.
        off = this.emitSeq(off, { type: F_FIN, seq: 0, sid: s.id, payload: undefined, code: 0 }, p);
      } else {
        const room = Math.min(cap - off - DATA_HEADER, this.maxFramePayload, this.sendLimitSession - this.sentSession);
        if (room <= 0) break; // record full or session credit exhausted
        const data = s.takeData(room);
        if (data) {
          this.sentSession += data.length;
          this.bytesSent += data.length;
          off = this.emitSeq(off, { type: F_DATA, seq: 0, sid: s.id, payload: data, code: 0 }, p);
        }
      }
      // Round-robin: one frame per stream per turn.
      ring.shift();
      if (s.sendable && !s.destroyed) ring.push(s);
      else s.queued = false;
    }
    return off;
  }

  // ───────────────────────────── receiving ─────────────────────────────

  private readonly visitor: FrameVisitor = {
    seq: (type, seq, sid, payload, code) => {
      if (seq <= this.recvSeq) return; // already delivered (resend after resume)
      if (seq !== this.recvSeq + 1) {
        if (this.reorder.size >= this.maxReorder) throw new ProtocolError('reorder buffer overflow');
        if (this.rxLease) this.rxLease.poisoned = true; // the payload outlives this record's parse
        this.reorder.set(seq, { type, sid, payload, code });
        return;
      }
      this.deliver(type, sid, payload, code, this.rxLease);
      this.recvSeq = seq;
      for (let h = this.reorder.get(this.recvSeq + 1); h; h = this.reorder.get(this.recvSeq + 1)) {
        this.reorder.delete(this.recvSeq + 1);
        this.deliver(h.type, h.sid, h.payload, h.code, undefined);
        this.recvSeq++;
      }
    },
    window: (sid, max) => {
      if (sid === 0) {
        if (max > this.sendLimitSession) this.sendLimitSession = max;
      } else {
        const s = this.streams.get(sid);
        if (s && max > s.sendLimit) {
          s.sendLimit = max;
          if (s.sendable) this.wake(s);
        }
      }
    },
    ack: (seq) => {
      if (seq > this.sendSeq) throw new ProtocolError(`ack ${seq} beyond last sent ${this.sendSeq}`);
      this.applyAck(seq);
    },
    ping: (id) => {
      const p = this.rxPath;
      if (p && p.pongs.length < 64) p.pongs.push(id);
    },
    pong: (id) => {
      const p = this.rxPath;
      // A bonding probe's answer (path.ts), else liveness or ping().
      if (p && !p.onProbePong(id, performance.now())) this.onPong(p, id);
    },
    datagram: (flow, payload) => {
      if (this.rxLease) this.rxLease.poisoned = true; // handlers may keep the payload
      this.lastActivity = Date.now();
      this.datagramHandler?.(flow, payload);
    },
    goaway: (code) => {
      this.peerGoaway = true;
      this.emit('goaway', code);
    },
    close: (code, reason) => {
      const err = new SessionClosedError(code, reason, 'remote');
      this._state = 'closing';
      for (const s of [...this.streams.values()]) s.destroy(err);
      for (const p of this.paths.values()) p.channel.close();
      this.finish(err);
    },
  };

  /** The path the record being parsed arrived on. */
  private rxPath: SessionPath | undefined;
  /** The pool buffer of the record being parsed, if it lies in one (see RecordLease). */
  private rxLease: RecordLease | undefined;

  private onRecord(pt: Buffer, path: SessionPath, pooled: Buffer | undefined): void {
    const before = this.recvSeq;
    this.rxPath = path;
    const lease: RecordLease | undefined = pooled ? { buf: pooled, refs: 1, poisoned: false } : undefined;
    this.rxLease = lease;
    try {
      parseFrames(pt, 1, this.visitor);
    } catch (err) {
      if (lease) lease.poisoned = true;
      this.log.warn({ err: toError(err).message }, 'protocol error from peer; closing session');
      this.abort(toError(err));
      return;
    } finally {
      this.rxLease = undefined;
      if (lease) leaseDone(lease);
    }
    if (this.recvSeq !== before) {
      this.bytesSinceAck += pt.length;
      if (this.recvSeq - this.lastAckSent >= ACK_FRAMES || this.bytesSinceAck >= ACK_BYTES) this.ackPending = true;
      else if (!this.ackTimer) {
        this.ackTimer = setTimeout(() => {
          this.ackTimer = undefined;
          if (this.recvSeq !== this.lastAckSent) {
            this.ackPending = true;
            this.scheduleFlush();
          }
        }, ACK_DELAY_MS);
        this.ackTimer.unref();
      }
    }
    this.scheduleFlush();
  }

  private deliver(type: SeqFrame['type'], sid: number, payload: Buffer | undefined, code: number, lease: RecordLease | undefined): void {
    switch (type) {
      case F_OPEN:
        // The open payload may be kept: from a pool record, a copy of its own.
        return this.onOpen(sid, lease ? Buffer.from(payload as Buffer) : (payload as Buffer));
      case F_DATA: {
        const len = (payload as Buffer).length;
        this.recvSession += len;
        this.bytesReceived += len;
        if (this.recvSession > this.recvLimitSession) throw new ProtocolError('peer exceeded the session flow-control window');
        const s = this.streams.get(sid);
        if (!s) this.checkKnownId(sid); // data for a stream we already closed: dropped
        // In a stream's buffer (bounded by its window) or dropped: no longer in flight.
        this.releaseSession(len);
        if (!s) return;
        if (!s.onData(payload as Buffer, lease)) {
          this.log.debug({ sid }, 'stream exceeded its flow-control window; resetting it');
          s.reset(ResetCode.flowControl);
        }
        return;
      }
      case F_FIN: {
        const s = this.streams.get(sid);
        if (s) s.onFin();
        else this.checkKnownId(sid);
        return;
      }
      case F_RST: {
        const s = this.streams.get(sid);
        if (s) s.onReset(code);
        return;
      }
    }
  }

  private isPeerId(sid: number): boolean {
    return (sid % 2 === 1) === (this.role === 'server');
  }

  private checkKnownId(sid: number): void {
    const known = this.isPeerId(sid) ? sid <= this.peerMaxId : sid < this.nextStreamId;
    if (!known) throw new ProtocolError(`frame for stream ${sid} that was never opened`);
  }

  private onOpen(sid: number, payload: Buffer): void {
    if (!this.isPeerId(sid) || sid <= this.peerMaxId) throw new ProtocolError(`bad stream id ${sid} in OPEN`);
    this.peerMaxId = sid;
    const refuse = this.streams.size >= this.maxStreams || !this.streamHandler || this._state !== 'open';
    if (refuse) {
      this.pendingRst.push({ type: F_RST, seq: 0, sid, payload: undefined, code: ResetCode.refused });
      return;
    }
    // The OPEN payload is a view into the record: copy it, it outlives the record.
    const s = new PolyStream(this, sid, Buffer.from(payload), {
      window: this.initialWindow,
      fastWindow: this.streamWindow,
      maxWindow: this.maxStreamWindow,
      peerWindow: this.peerStreamWindow,
      locallyOpened: false,
      highWaterMark: this.streamHwm,
    });
    this.streams.set(sid, s);
    (this.streamHandler as (s: PolyStream) => void)(s);
  }

  private applyAck(seq: number): void {
    if (seq > this.peerAcked) this.peerAcked = seq;
    const rtx = this.rtx;
    let h = this.rtxHead;
    while (h < rtx.length && (rtx[h] as PathFrame).seq <= seq) {
      const f = rtx[h] as PathFrame;
      const size = seqFrameSize(f);
      this.unackedBytes -= size;
      if (f.pathId !== 0) this.paths.get(f.pathId)?.onAcked(size);
      if (f.record !== undefined) releaseRecordBuffer(f.record);
      h++;
    }
    if (h === this.rtxHead) return;
    this.rtxHead = h;
    if (h > 4096 && h * 2 > rtx.length) {
      this.rtx = rtx.slice(h);
      this.rtxHead = 0;
    }
    if (this.ring.length > 0 || this.resendQ.length > 0) this.scheduleFlush();
  }

  // ───────────────────────────── liveness ─────────────────────────────

  private nextPingId(): number {
    this.pingSeq = (this.pingSeq + 1) >>> 0;
    return this.pingSeq;
  }

  private startLiveness(p: SessionPath): void {
    p.stopTimers();
    p.pingTimer = setInterval(() => this.livenessTick(p), this.pathUpAfterMs > 0 && !p.up ? Math.min(this.pingIntervalMs, Math.max(50, this.pathUpAfterMs / 4)) : this.pingIntervalMs);
    p.pingTimer.unref();
  }

  private livenessTick(p: SessionPath): void {
    if (this.paths.get(p.id) !== p || p.pingOutstanding) return;
    const id = this.nextPingId();
    p.pingOutstanding = { id, at: performance.now() };
    p.pingToSend = id;
    const deliveredAtPing = p.deliveredBytes;
    const receivedAtPing = p.channel.bytesIn;
    this.scheduleFlush();
    p.pingDeadline = setTimeout(() => {
      p.pingDeadline = undefined;
      if (p.pingOutstanding?.id !== id) return;
      p.pingOutstanding = undefined;
      // A path whose frames are being acknowledged, or on which data keeps
      // arriving, is alive: its pong is just queued behind that data (a
      // downloading client sends almost nothing to be acknowledged).
      if (p.deliveredBytes > deliveredAtPing || p.channel.bytesIn > receivedAtPing + 1024) {
        this.livenessTick(p);
        return;
      }
      p.missed++;
      p.healthySince = undefined;
      this.log.debug({ path: p.label, missed: p.missed }, 'pong missed');
      // Bonding: a path that missed a pong is suspect; stop giving it data and
      // send what it holds on the others now, instead of waiting for the verdict.
      if (p.up && [...this.paths.values()].some((o) => o !== p && o.up)) {
        p.up = false;
        p.suspended = true;
        this.moveInflight(p, 'pong missed');
        // WINDOW and ACK frames it carried may be lost with it: restate them (idempotent).
        this.windowQueue.add(0);
        for (const s of this.streams.values()) this.windowQueue.add(s.id);
        this.ackPending = true;
        this.scheduleFlush();
      }
      if (p.missed >= this.maxMissed) {
        this.log.info({ path: p.label, missed: p.missed }, 'path unresponsive; dropping it');
        p.channel.abort(new TimeoutError('liveness (missed pongs)'));
      } else this.livenessTick(p);
    }, this.pingTimeoutMs);
    p.pingDeadline.unref();
  }

  private onPong(p: SessionPath, id: number): void {
    const now = performance.now();
    if (p.pingOutstanding?.id === id) {
      p.onRtt(now - p.pingOutstanding.at);
      p.pingOutstanding = undefined;
      p.missed = 0;
      if (p.pingDeadline) clearTimeout(p.pingDeadline);
      p.pingDeadline = undefined;
      p.healthySince ??= now;
      if (p.suspended) {
        // It answered after all: take it back at once (it was up before).
        p.suspended = false;
        p.up = true;
        this.scheduleFlush();
      } else if (!p.up && now - p.healthySince >= this.pathUpAfterMs) {
        p.up = true;
        this.startLiveness(p); // back to the normal probe interval
        this.log.info({ path: p.label }, 'path up');
        this.emit('pathUp', p.stats());
        this.scheduleFlush();
      }
    }
    const w = this.pingWaiters.get(id);
    if (w) {
      this.pingWaiters.delete(id);
      const sample = now - w.at;
      p.onRtt(sample);
      p.missed = 0;
      w.resolve(sample);
    }
  }

  // ───────────────────────────── teardown ─────────────────────────────

  private finish(err: Error): void {
    if (this._state === 'closed') return;
    this._state = 'closed';
    this.closeError = err;
    for (const p of this.paths.values()) p.stopTimers();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    for (const s of [...this.streams.values()]) s.destroy(err);
    this.streams.clear();
    this.ring = [];
    this.rtx = [];
    this.rtxHead = 0;
    this.resendQ = [];
    this.unackedBytes = 0;
    this.reorder.clear();
    this.dgQueue = [];
    this.pingWaiters.clear();
    this.emit('closed', err);
  }
}

/** Merges two frame lists that are each in sequence order. */
function mergeBySeq(a: PathFrame[], b: PathFrame[]): PathFrame[] {
  if (a.length === 0) return b;
  const out: PathFrame[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && (a[i] as PathFrame).seq < (b[j] as PathFrame).seq)) out.push(a[i++] as PathFrame);
    else out.push(b[j++] as PathFrame);
  }
  return out;
}
