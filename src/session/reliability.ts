/**
 * Session-level reliability: every stream-carrying frame (OPEN, DATA, FIN,
 * RST) gets a session sequence number, is kept until the peer acknowledges
 * it (cumulative ACK), and is sent again after a path loss; the receiver
 * delivers frames in sequence order, holding early ones (bounded) and
 * dropping duplicates. Like quic-go's ackhandler, but over ordered paths:
 * a frame is lost only with its path.
 *
 * Send side: a retransmit deque [rtxHead, rtx.length) of unacknowledged
 * frames, each remembering the path it last went on; resendQ holds those to
 * send again, in sequence order.
 * Receive side: recvSeq (delivered in order), the reorder buffer, and when
 * to acknowledge (every ACK_FRAMES frames or ACK_BYTES bytes, else after
 * ACK_DELAY_MS, or on any record that leaves anyway).
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { ProtocolError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { releaseRecordBuffer, type RecordLease } from '../secure/record-pool.js';
import { seqFrameSize, writeAck, writeSeqFrame, type SeqFrame } from './frames.js';
import type { SessionPath } from './multipath/path.js';

/** A sequenced frame plus the path it last went on (0: not sent on a live path). */
export interface PathFrame extends SeqFrame {
  pathId: number;
  /**
   * On the last DATA frame of a record: that record, whose DATA payloads are
   * kept as its slices (record-writer.ts); back to the pool when this frame
   * is acknowledged, as every earlier one of the record then is.
   */
  record: Buffer | undefined;
}

interface Held {
  type: SeqFrame['type'];
  sid: number;
  payload: Buffer | undefined;
  code: number;
}

/** Receives in-order frames (the session's receive dispatch). */
export interface Deliverer {
  deliver(type: SeqFrame['type'], sid: number, payload: Buffer | undefined, code: number, lease: RecordLease | undefined): void;
}

const ACK_FRAMES = 32;
const ACK_BYTES = 128 * 1024;
const ACK_DELAY_MS = 5;

export class Reliability {
  // send side
  private sendSeq = 0;
  private rtx: PathFrame[] = [];
  private rtxHead = 0;
  private peerAcked = 0;
  private resendQ: PathFrame[] = [];
  /** Bytes of sequenced frames sent and not yet acknowledged. */
  unackedBytes = 0;
  framesResent = 0;
  // receive side
  private recvSeq = 0;
  private readonly reorder = new Map<number, Held>();
  private ackPending = false;
  private lastAckSent = 0;
  private bytesSinceAck = 0;
  private ackTimer: TimerHandle | undefined;

  constructor(
    /** The session's live paths, to account acknowledged bytes to. */
    private readonly paths: ReadonlyMap<number, SessionPath>,
    private readonly host: { scheduleFlush(): void },
    private readonly log: Logger,
    private readonly maxUnacked: number,
    private readonly maxReorder: number,
    private readonly clock: Clock,
  ) {}

  /** Last sequence number sent. */
  get lastSent(): number {
    return this.sendSeq;
  }

  /** Highest sequence number delivered in order. */
  get received(): number {
    return this.recvSeq;
  }

  /** New frames may be sent: bounded by bytes, and by frames (the peer reorders at most maxReorder). */
  get canSend(): boolean {
    return this.unackedBytes < this.maxUnacked && this.rtx.length - this.rtxHead < this.maxReorder;
  }

  get resending(): boolean {
    return this.resendQ.length > 0;
  }

  /** Index just past the newest frame kept (see frameAt). */
  get end(): number {
    return this.rtx.length;
  }

  frameAt(i: number): PathFrame {
    return this.rtx[i] as PathFrame;
  }

  // ── send side ──

  /** Assigns the next sequence number to `f`, keeps it for resend and counts it in flight on `p`. */
  track(f: SeqFrame, p: SessionPath): PathFrame {
    const pf = f as PathFrame;
    pf.seq = ++this.sendSeq;
    pf.pathId = p.id;
    pf.record = undefined;
    this.rtx.push(pf);
    const size = seqFrameSize(pf);
    this.unackedBytes += size;
    p.addInflight(size);
    return pf;
  }

  /** An ACK from the peer. Throws on one beyond what was sent. */
  onAck(seq: number): boolean {
    if (seq > this.sendSeq) throw new ProtocolError(`ack ${seq} beyond last sent ${this.sendSeq}`);
    return this.applyAck(seq);
  }

  /** Frees every frame up to `seq`; true when that freed any. */
  applyAck(seq: number): boolean {
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
    if (h === this.rtxHead) return false;
    this.rtxHead = h;
    if (h > 4096 && h * 2 > rtx.length) {
      this.rtx = rtx.slice(h);
      this.rtxHead = 0;
    }
    return true;
  }

  /** A resume: everything unacknowledged goes again, in order. */
  resendAll(): void {
    this.resendQ = this.rtx.slice(this.rtxHead);
    for (const f of this.resendQ) f.pathId = 0;
  }

  /** What `path` holds unacknowledged goes again on the other paths (the receiver drops duplicates). */
  moveInflight(path: SessionPath, why: string): void {
    const lost = this.rtx.slice(this.rtxHead).filter((f) => f.pathId === path.id);
    if (lost.length === 0) return;
    for (const f of lost) {
      f.pathId = 0;
      path.dropInflight(seqFrameSize(f));
    }
    this.resendQ = mergeBySeq(this.resendQ, lost);
    this.log.debug({ path: path.label, frames: lost.length, why }, 'resending a path\'s frames on the other paths');
  }

  /** Writes frames to resend into `buf` from `off` (as many as fit), now on path `p`; returns the end. */
  writeResend(buf: Buffer, off: number, p: SessionPath): number {
    const q = this.resendQ;
    let i = 0;
    for (; i < q.length; i++) {
      const f = q[i] as PathFrame;
      if (f.seq <= this.peerAcked) continue; // acknowledged meanwhile
      if (buf.length - off < seqFrameSize(f)) break;
      off = writeSeqFrame(buf, off, f);
      f.pathId = p.id;
      p.addInflight(seqFrameSize(f));
      this.framesResent++;
    }
    if (i > 0) this.resendQ = i === q.length ? [] : q.slice(i);
    return off;
  }

  // ── receive side ──

  /** A sequenced frame arrived: delivered now (with any it unblocks), held, or dropped as a duplicate. */
  onSeq(type: SeqFrame['type'], seq: number, sid: number, payload: Buffer | undefined, code: number, lease: RecordLease | undefined, d: Deliverer): void {
    if (seq <= this.recvSeq) return; // already delivered (resend after resume)
    if (seq !== this.recvSeq + 1) {
      if (this.reorder.size >= this.maxReorder) throw new ProtocolError('reorder buffer overflow');
      if (lease) lease.poisoned = true; // the payload outlives this record's parse
      this.reorder.set(seq, { type, sid, payload, code });
      return;
    }
    d.deliver(type, sid, payload, code, lease);
    this.recvSeq = seq;
    for (let h = this.reorder.get(this.recvSeq + 1); h; h = this.reorder.get(this.recvSeq + 1)) {
      this.reorder.delete(this.recvSeq + 1);
      d.deliver(h.type, h.sid, h.payload, h.code, undefined);
      this.recvSeq++;
    }
  }

  /** Frames held for reordering. */
  get held(): number {
    return this.reorder.size;
  }

  /** After a record of `len` bytes was parsed, with `before` the in-order seq then: when to acknowledge. */
  afterRecord(before: number, len: number): void {
    if (this.recvSeq === before) return;
    this.bytesSinceAck += len;
    if (this.recvSeq - this.lastAckSent >= ACK_FRAMES || this.bytesSinceAck >= ACK_BYTES) this.ackPending = true;
    else if (!this.ackTimer) {
      this.ackTimer = this.clock.setTimeout(this.onAckDelay, ACK_DELAY_MS);
    }
  }

  private readonly onAckDelay = (): void => {
    this.ackTimer = undefined;
    if (this.recvSeq !== this.lastAckSent) {
      this.ackPending = true;
      this.host.scheduleFlush();
    }
  };

  /** Restate our ACK (idempotent) at the next flush: a new path, or one that may have lost it. */
  requestAck(): void {
    this.ackPending = true;
  }

  get ackPendingNow(): boolean {
    return this.ackPending;
  }

  /** Something arrived since the last ACK we sent. */
  get ackOwed(): boolean {
    return this.recvSeq !== this.lastAckSent;
  }

  writeAck(buf: Buffer, off: number): number {
    off = writeAck(buf, off, this.recvSeq);
    this.ackPending = false;
    this.lastAckSent = this.recvSeq;
    this.bytesSinceAck = 0;
    return off;
  }

  /** The session ended: drop every frame and timer. */
  clear(): void {
    this.clock.clear(this.ackTimer);
    this.ackTimer = undefined;
    this.rtx = [];
    this.rtxHead = 0;
    this.resendQ = [];
    this.unackedBytes = 0;
    this.reorder.clear();
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
