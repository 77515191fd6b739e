/**
 * A multiplexed stream: a Node Duplex whose contract is honoured end to end.
 * write() returns false once `writableHighWaterMark` bytes wait to be sent;
 * the write callback fires when the bytes have been handed to the session (so
 * a stalled peer stalls the writer). On the receiving side the peer may send
 * only as far as the credit we advertised (consumed + window); stream credit
 * is advertised as the application reads, so an unread stream stops its
 * sender. It does not stop the others: the session returns session credit as
 * soon as bytes land in a stream (SessionCredit.release, credit.ts), and the session
 * decides how large each stream's window may be (StreamHost.windowCap).
 *
 * Data written must not be mutated before its write callback: it is
 * referenced until the session copies it into a record, where it stays
 * until acknowledged (it may be sent again after a path loss).
 *
 * States (send side): open → finQueued → finSent; any → reset.
 */
import { Duplex } from 'node:stream';
import { realClock, type Clock } from '../core/clock.js';
import { StreamResetError } from '../core/errors.js';
import { leaseDone, type RecordLease } from '../secure/record-pool.js';

/** Wire reset codes (applications may use codes ≥ 0x100). */
export const ResetCode = {
  cancel: 0,
  refused: 1,
  flowControl: 2,
  internal: 3,
  sessionClosed: 4,
  tooLarge: 5,
  /**
   * The session takes streams, but no application on it takes this open
   * kind (the first byte of the OPEN payload; see session/lanes.ts): e.g. a
   * VPN control stream to a server without --tun.
   */
  noHandler: 6,
} as const;

/** What a stream needs from its session (keeps stream.ts free of session.ts). */
export interface StreamHost {
  /** A stream has something to send (data with credit, FIN, RST). */
  wake(s: PolyStream): void;
  /** The stream consumed bytes or raised its limit; account for it and advertise credit if worthwhile. */
  consumed(s: PolyStream, delta: number): void;
  /** The largest window `s` may have now (its fair share of the session's buffer budget), given what it wants. */
  windowCap(s: PolyStream, wanted: number): number;
  /** The stream is finished with; forget it. */
  remove(s: PolyStream, sendReset: number | undefined): void;
  /** The round trip a window must cover (ms): the slowest usable path's. */
  windowRttMs(): number;
}

type OutItem = { kind: 'data'; buf: Buffer; off: number; cb: ((err?: Error | null) => void) | undefined } | { kind: 'fin'; cb: (err?: Error | null) => void };

export class PolyStream extends Duplex {
  readonly id: number;
  /** Opaque payload carried by the OPEN frame (e.g. the destination). */
  readonly openPayload: Buffer;
  /** Bytes the peer allows us to have sent in total. */
  sendLimit: number;
  sentOffset = 0;
  /** Receive accounting. */
  recvOffset = 0;
  recvLimit: number;
  private consumedTotal = 0;
  /**
   * Receive window the reader has earned: starts at the initial window every
   * stream is granted (small: a paused reader holds no more), jumps to
   * `fastWindow` once the reader drains it within a few RTTs, then doubles
   * (up to maxWindow) each time it does so again. What is advertised is
   * further capped by the session (StreamHost.windowCap).
   */
  private window: number;
  private readonly fastWindow: number;
  private readonly maxWindow: number;
  private tuneAt: number;
  private readonly clock: Clock;
  private tuneConsumed = 0;
  /**
   * Since the last tune, the reader had taken everything while the sender
   * was nearly out of credit, and never paused: the window, not the reader,
   * was the limit. (A relay into a slow socket pauses, then takes a whole
   * window at once: that is not a fast reader.)
   */
  private windowLimited = false;
  private pausedSinceTune = false;
  /** Outgoing items in order. `openPending` is sent before any of them. */
  readonly out: OutItem[] = [];
  openPending: boolean;
  finSent = false;
  finReceived = false;
  resetCode: number | undefined;
  private removed = false;
  /** Set by the session's scheduler (ring membership). */
  queued = false;
  /** The session's bookkeeping: outstanding credit beyond the initial window, as last counted (see SessionCredit.windowCap). */
  creditExcess = 0;
  /**
   * A chunk written here is not referenced once its write callback has run:
   * the session copies each DATA payload into its record (and keeps that
   * copy for resend), so a relay may reuse its read buffers.
   */
  readonly chunksFreeAfterWrite = true;

  constructor(
    private readonly host: StreamHost,
    id: number,
    openPayload: Buffer,
    opts: { window: number; fastWindow?: number; maxWindow?: number; peerWindow: number; locallyOpened: boolean; highWaterMark: number; clock?: Clock },
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: opts.window, writableHighWaterMark: opts.highWaterMark, decodeStrings: true });
    this.id = id;
    this.openPayload = openPayload;
    this.window = opts.window;
    this.maxWindow = Math.max(opts.window, opts.maxWindow ?? opts.window);
    this.fastWindow = Math.min(this.maxWindow, Math.max(opts.window, opts.fastWindow ?? opts.window));
    this.recvLimit = opts.window;
    this.windowSent = opts.window;
    this.sendLimit = opts.peerWindow;
    this.openPending = opts.locallyOpened;
    this.clock = opts.clock ?? realClock;
    this.tuneAt = this.clock.now();
  }

  /** Bytes we may still send. */
  get credit(): number {
    return this.sendLimit - this.sentOffset;
  }

  /** True when the scheduler has something to send right now. */
  get sendable(): boolean {
    if (this.resetCode !== undefined) return false;
    if (this.openPending) return true;
    const head = this.out[0];
    if (!head) return false;
    return head.kind === 'fin' || this.credit > 0;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) return cb();
    this.out.push({ kind: 'data', buf: chunk, off: 0, cb });
    this.host.wake(this);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const n = chunks.length;
    for (let i = 0; i < n; i++) {
      const c = (chunks[i] as { chunk: Buffer }).chunk;
      this.out.push({ kind: 'data', buf: c, off: 0, cb: i === n - 1 ? cb : undefined });
    }
    this.host.wake(this);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.out.push({ kind: 'fin', cb });
    this.host.wake(this);
  }

  override _read(): void {
    this.scheduleReport();
  }

  /**
   * Every consumption goes through read() (flowing mode drains the buffer by
   * calling it too), but _read() is only called while Node wants more data:
   * after a pause with less than a window buffered it is not called again, so
   * credit must be counted here or the peer stalls for good. Counted a
   * microtask later because read() removes the bytes after calling _read().
   */
  override read(size?: number): ReturnType<Duplex['read']> {
    const r = super.read(size) as ReturnType<Duplex['read']>;
    this.scheduleReport();
    return r;
  }

  override pause(): this {
    this.pausedSinceTune = true;
    return super.pause();
  }

  private reportScheduled = false;
  private scheduleReport(): void {
    if (this.reportScheduled) return;
    this.reportScheduled = true;
    queueMicrotask(() => {
      this.reportScheduled = false;
      this.reportConsumed();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Release write callbacks so the Writable machinery is not left waiting.
    for (const item of this.out.splice(0)) item.cb?.(err ?? new StreamResetError(ResetCode.cancel, 'local'));
    if (!this.removed) {
      this.removed = true;
      const clean = this.finSent && this.finReceived;
      let code: number | undefined;
      if (!clean && this.resetCode === undefined) {
        code = err instanceof StreamResetError ? err.resetCode : ResetCode.cancel;
      }
      // Session credit for bytes never read was returned on receipt; remove() forgets this stream's window.
      this.host.remove(this, code);
    }
    cb(err);
  }

  /**
   * Takes up to `max` bytes of data for one DATA frame (caller has checked
   * credit). Returns the slice, or undefined when the head is not data.
   */
  takeData(max: number): Buffer | undefined {
    const head = this.out[0];
    if (!head || head.kind !== 'data') return undefined;
    const n = Math.min(max, head.buf.length - head.off, this.credit);
    if (n <= 0) return undefined;
    const slice = head.buf.subarray(head.off, head.off + n);
    head.off += n;
    this.sentOffset += n;
    if (head.off === head.buf.length) {
      this.out.shift();
      head.cb?.();
    }
    return slice;
  }

  /** Takes the FIN if it is next. */
  takeFin(): boolean {
    const head = this.out[0];
    if (!head || head.kind !== 'fin') return false;
    this.out.shift();
    this.finSent = true;
    head.cb();
    this.maybeDone();
    return true;
  }

  /** Session → stream: data arrived. Returns false on a flow-control violation. */
  onData(payload: Buffer, lease?: RecordLease): boolean {
    if (this.finReceived) return false;
    this.recvOffset += payload.length;
    if (this.recvOffset > this.recvLimit) return false;
    if (this.destroyed) return true; // dropped (the session returned its credit on receipt)
    // A payload is a view of a received buffer (a carrier read, or a pool
    // record). One that has to wait for a reader that is behind is copied
    // when it is a small part of that buffer, so that data held within the
    // window never keeps much more memory alive than its own size.
    if ((this.readableFlowing !== true || this.readableLength > 0) && payload.buffer.byteLength > 4 * payload.length) {
      payload = Buffer.from(payload);
      lease = undefined; // nothing refers to the record any more
    }
    if (this.leases !== undefined) {
      // One entry per chunk the reader will see ('data' skips empty ones), so its releases line up.
      if (payload.length > 0) {
        if (lease !== undefined) lease.refs++;
        this.leases.push(lease ?? null);
      }
    } else if (lease !== undefined) lease.poisoned = true; // a reader that never gives back: never reused
    this.push(payload);
    this.reportConsumed();
    return true;
  }

  /** Pool records of the chunks pushed since enableLeases(), in order; see releaseChunk. */
  private leases: (RecordLease | null)[] | undefined;

  /**
   * The reader (a relay) will call releaseChunk() once per 'data' chunk, in
   * order, when nothing refers to it any more; nothing may be buffered now
   * (the relay has read what was). Chunks that lie in received pool records
   * are then not copied, and their records are reused.
   */
  enableLeases(): void {
    this.leases ??= [];
  }

  /**
   * The reader stops giving chunks back (a relay that stopped): records of
   * chunks not yet given back are never reused, and later ones are not leased.
   */
  disableLeases(): void {
    for (const l of this.leases ?? []) if (l) l.poisoned = true;
    this.leases = undefined;
  }

  /** The oldest chunk emitted since enableLeases() is free (see there). */
  releaseChunk(): void {
    const l = this.leases?.shift();
    if (l) leaseDone(l);
  }

  onFin(): void {
    this.finReceived = true;
    this.push(null);
    this.maybeDone();
  }

  onReset(code: number): void {
    this.resetCode = code;
    this.destroy(new StreamResetError(code, 'remote'));
  }

  /** Resets the stream with a wire code (sent to the peer). */
  reset(code: number = ResetCode.cancel): void {
    this.destroy(new StreamResetError(code, 'local'));
  }

  private reportConsumed(): void {
    const consumed = this.recvOffset - this.readableLength;
    const delta = consumed - this.consumedTotal;
    if (delta <= 0) return;
    this.consumedTotal = consumed;
    if (!this.pausedSinceTune && this.readableLength === 0 && this.recvLimit - this.recvOffset < this.window / 4) this.windowLimited = true;
    // Auto-tuning: a reader that drains a whole window within 4 RTTs (and
    // at least 50 ms: the credit loop also runs through two event loops,
    // which a ping RTT on an idle link does not show), or that kept taking
    // everything until the sender ran out of credit (which holds on a loaded
    // machine too), is limited by the window, not by itself: grow it, up to
    // maxWindow. A paused or slow reader never is, so it keeps the small
    // initial window.
    if (consumed - this.tuneConsumed >= this.window) {
      const now = this.clock.now();
      if (this.window < this.maxWindow && (this.windowLimited || now - this.tuneAt < Math.max(50, 4 * this.host.windowRttMs()))) {
        this.window = this.window < this.fastWindow ? this.fastWindow : Math.min(this.window * 2, this.maxWindow);
      }
      this.tuneAt = now;
      this.tuneConsumed = consumed;
      this.windowLimited = false;
      this.pausedSinceTune = this.isPaused();
    }
    // Advertise more credit once a quarter of the window has been read. The
    // window is what the session lets this stream have: its share of the
    // session's receive budget, which other streams may hold (it is
    // never below the initial window, so the stream always moves).
    const w = this.host.windowCap(this, this.window);
    if (consumed + w - this.recvLimit >= w / 4) this.recvLimit = consumed + w;
    this.host.consumed(this, delta);
  }

  /** Bytes the reader has taken (what credit is counted from). */
  get consumedBytes(): number {
    return this.consumedTotal;
  }

  /** The receive window the reader has earned so far (before the session's cap). */
  get earnedWindow(): number {
    return this.window;
  }

  /** The credit limit to advertise (for WINDOW frames and resume). */
  get advertisedLimit(): number {
    return this.recvLimit;
  }

  /** The limit last put in a WINDOW frame (the session skips unchanged ones); the peer starts from our initial window. */
  windowSent: number;

  private maybeDone(): void {
    if (this.finSent && this.finReceived && this.readableEnded && !this.destroyed) this.destroy();
  }
}
