/**
 * Frames go into records here (like quic-go's framer). A flush fills
 * records until nothing is left to send or no path may take more:
 *
 * ```
 *   per path: PONGs + PING (answers and RTT are per path)
 *   then, per record on the path the scheduler picks:
 *     control (ACK, GOAWAY, WINDOW) → resends → datagrams → streams round-robin, one frame each
 *     (+ an ACK if one is owed and fits: the record leaves anyway)
 * ```
 * Control is thus never queued behind bulk data in our own buffers.
 *
 * Buffers. The record being assembled (`scratch`) exists during a flush
 * only: taken from the pool when it starts and given back when it ends, so
 * an idle session holds no 64 KiB buffer (a thousand sessions: 64 MiB). The
 * DATA payloads of a sent record are kept for resend as slices of it (see
 * emitSeq): after a record over SMALL_RECORD bytes it stays with its last
 * DATA frame until acknowledged (reliability.ts gives it back) and a fresh
 * one from the pool takes its place; a smaller one's payloads are copied
 * (keepSmall).
 *
 * This is the hot path: no allocation per frame beyond the frame object
 * kept for resend, no copy beyond the one into the record.
 */
import type { RecordChannel } from '../secure/record-channel.js';
import { RECORD_DATA } from '../secure/record.js';
import { releaseRecordBuffer, takeRecordBuffer } from '../secure/record-pool.js';
import type { SessionCredit } from './credit.js';
import type { ControlLane } from './control-lane.js';
import type { DatagramLane } from './datagram-lane.js';
import { ACK_SIZE, DATA_HEADER, F_DATA, F_FIN, F_OPEN, writeSeqFrame, type SeqFrame } from './frames.js';
import type { SessionPath } from './multipath/path.js';
import type { PathScheduler } from './multipath/scheduler.js';
import type { PathFrame, Reliability } from './reliability.js';
import type { StreamTable } from './stream-table.js';
import type { PolyStream } from './stream.js';

/** Records up to this size keep their DATA payloads in a copy of their own (see keepSmall). */
const SMALL_RECORD = 4096;
/** `scratch` outside a flush. */
const NO_SCRATCH = Buffer.alloc(0);

export interface WriterParts {
  scheduler: PathScheduler;
  reliability: Reliability;
  credit: SessionCredit;
  streams: StreamTable;
  datagrams: DatagramLane;
  control: ControlLane;
}

export class RecordWriter {
  private scratch: Buffer = NO_SCRATCH;
  private flushDepth = 0;
  /** The last DATA frame written into `scratch`, if any. */
  private scratchLastData: PathFrame | undefined;
  /** Stream payload bytes sent. */
  bytesSent = 0;
  private readonly scheduler: PathScheduler;
  private readonly rel: Reliability;
  private readonly credit: SessionCredit;
  private readonly table: StreamTable;
  private readonly datagrams: DatagramLane;
  /** Scratch of unreliable records (a udp path's datagram size). */
  private unreliable = Buffer.alloc(0);
  private readonly control: ControlLane;

  constructor(
    parts: WriterParts,
    private readonly maxFramePayload: number,
  ) {
    this.scheduler = parts.scheduler;
    this.rel = parts.reliability;
    this.credit = parts.credit;
    this.table = parts.streams;
    this.datagrams = parts.datagrams;
    this.control = parts.control;
  }

  /** Sends everything that may go now. Re-entrant (a write may drain synchronously). */
  flush(): void {
    if (this.scheduler.size === 0) return;
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
    for (const p of this.scheduler.paths.values()) {
      if (p.hasControl && p.channel.writable) p.channel.write(buf, p.writeControl(buf));
    }
    const rel = this.rel;
    for (;;) {
      const p = this.scheduler.pickPath();
      if (!p) {
        // No path may take data now; control frames still go on any writable one.
        const c = this.scheduler.bestControlPath();
        if (!c) return;
        const off = this.fillControl(1);
        if (off > 1) c.channel.write(buf, off);
        return;
      }
      const firstNew = rel.end;
      if (this.datagrams.pending && p.channel.writeUnreliable !== undefined) this.flushUnreliable(p.channel);
      let off = this.fillControl(1);
      off = rel.writeResend(buf, off, p);
      off = this.datagrams.write(buf, off);
      off = this.fillStreams(off, p);
      if (off === 1) return;
      // A record leaves anyway: acknowledge what arrived since the last ACK
      // for 7 bytes, instead of a record of its own when the delay runs out
      // (in request/response traffic, that record was one write in four).
      if (rel.ackOwed && buf.length - off >= ACK_SIZE) off = rel.writeAck(buf, off);
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
   * Datagrams over a channel that can send records unreliably (a udp path)
   * go in records of their own that way, never behind a lost stream packet;
   * one too large for that stays queued for the reliable record.
   */
  private flushUnreliable(ch: RecordChannel): void {
    const max = ch.maxUnreliableRecord ?? 0;
    if (this.unreliable.length !== max) this.unreliable = Buffer.allocUnsafe(max);
    const b = this.unreliable;
    b[0] = RECORD_DATA;
    for (;;) {
      const end = this.datagrams.write(b, 1);
      if (end === 1) return;
      ch.writeUnreliable?.(b, end);
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
    const rel = this.rel;
    for (let i = firstNew; i < rel.end; i++) {
      const f = rel.frameAt(i);
      if (f.type !== F_DATA || f.payload === undefined || f.payload.buffer !== buf.buffer) continue;
      const at = f.payload.byteOffset - buf.byteOffset;
      f.payload = copy.subarray(at, at + f.payload.length);
    }
  }

  private fillControl(off: number): number {
    const buf = this.scratch;
    if (this.rel.ackPendingNow && buf.length - off >= ACK_SIZE) off = this.rel.writeAck(buf, off);
    off = this.control.writeGoaway(buf, off);
    return this.credit.writeWindows(buf, off, this.table.streams);
  }

  /** Assigns the next sequence number, keeps the frame for resend, writes it. */
  private emitSeq(off: number, f: SeqFrame, p: SessionPath): number {
    const pf = this.rel.track(f, p);
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
    const rel = this.rel;
    const cap = this.scratch.length;
    if (rel.resending) return off; // finish resending first: the reorder buffer is bounded
    const pendingRst = this.table.pendingRst;
    while (pendingRst.length > 0 && cap - off >= 15) off = this.emitSeq(off, pendingRst.shift() as SeqFrame, p);
    const ring = this.table.ring;
    const credit = this.credit;
    while (ring.length > 0 && rel.canSend && cap - off >= DATA_HEADER + 1) {
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
        const room = Math.min(cap - off - DATA_HEADER, this.maxFramePayload, credit.sendRoom);
        if (room <= 0) break; // record full or session credit exhausted
        const data = s.takeData(room);
        if (data) {
          credit.onSent(data.length);
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
}
