/**
 * The receive dispatch: a record's frames, parsed in place (frames.ts),
 * go to the component that owns them. Sequenced frames pass through the
 * reliability layer (order, duplicates) before they reach a stream.
 *
 * Hot path: one call per frame, no allocation per frame (this object is
 * the parser's visitor; the path and pool lease of the record being parsed
 * are fields, not closures).
 */
import type { Clock } from '../core/clock.js';
import { toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { leaseDone, type RecordLease } from '../secure/record-pool.js';
import type { SessionCredit } from './credit.js';
import type { ControlLane } from './control-lane.js';
import type { DatagramLane } from './datagram-lane.js';
import type { IdleWatch } from './idle.js';
import type { LaneRegistry } from './lanes.js';
import { F_DATA, F_FIN, F_OPEN, F_RST, parseFrames, type FrameVisitor, type SeqFrame } from './frames.js';
import type { Liveness } from './multipath/liveness.js';
import type { SessionPath } from './multipath/path.js';
import type { Deliverer, Reliability } from './reliability.js';
import type { StreamTable } from './stream-table.js';
import { ResetCode } from './stream.js';

/** What the receive dispatch asks of its session. */
export interface ReceiverHost {
  /** Whether new streams from the peer may be accepted now (open, with applications that take streams). */
  acceptsStreams(): boolean;
  scheduleFlush(): void;
  goawayReceived(code: number): void;
  closedByPeer(code: number, reason: string): void;
  /** The peer broke the protocol: the session ends with `err`. */
  abort(err: Error): void;
}

export interface ReceiverParts {
  reliability: Reliability;
  credit: SessionCredit;
  streams: StreamTable;
  datagrams: DatagramLane;
  control: ControlLane;
  liveness: Liveness;
  idle: IdleWatch;
  clock: Clock;
  lanes: LaneRegistry;
}

export class Receiver implements FrameVisitor, Deliverer {
  /** The path the record being parsed arrived on. */
  private rxPath: SessionPath | undefined;
  /** The pool buffer of the record being parsed, if it lies in one (see RecordLease). */
  private rxLease: RecordLease | undefined;
  /** Stream payload bytes received. */
  bytesReceived = 0;
  private readonly rel: Reliability;
  private readonly credit: SessionCredit;
  private readonly table: StreamTable;
  private readonly datagrams: DatagramLane;
  private readonly control: ControlLane;
  private readonly liveness: Liveness;
  private readonly idle: IdleWatch;
  private readonly clock: Clock;
  private readonly lanes: LaneRegistry;

  constructor(
    private readonly host: ReceiverHost,
    parts: ReceiverParts,
    private readonly log: Logger,
  ) {
    this.rel = parts.reliability;
    this.credit = parts.credit;
    this.table = parts.streams;
    this.datagrams = parts.datagrams;
    this.control = parts.control;
    this.liveness = parts.liveness;
    this.idle = parts.idle;
    this.clock = parts.clock;
    this.lanes = parts.lanes;
  }

  /** A record arrived on `path` (`pooled`: the pool buffer it lies in, if any). */
  onRecord(pt: Buffer, path: SessionPath, pooled: Buffer | undefined): void {
    const before = this.rel.received;
    this.rxPath = path;
    const lease: RecordLease | undefined = pooled ? { buf: pooled, refs: 1, poisoned: false } : undefined;
    this.rxLease = lease;
    try {
      parseFrames(pt, 1, this);
    } catch (err) {
      if (lease) lease.poisoned = true;
      this.log.warn({ err: toError(err).message }, 'protocol error from peer; closing session');
      this.host.abort(toError(err));
      return;
    } finally {
      this.rxLease = undefined;
      if (lease) leaseDone(lease);
    }
    this.rel.afterRecord(before, pt.length);
    this.host.scheduleFlush();
  }

  // ── FrameVisitor ──

  seq(type: SeqFrame['type'], seq: number, sid: number, payload: Buffer | undefined, code: number): void {
    this.rel.onSeq(type, seq, sid, payload, code, this.rxLease, this);
  }

  window(sid: number, max: number): void {
    if (sid === 0) {
      this.credit.onPeerWindow(max);
      return;
    }
    const s = this.table.get(sid);
    if (s && max > s.sendLimit) {
      s.sendLimit = max;
      if (s.sendable) {
        this.table.wake(s);
        this.host.scheduleFlush();
      }
    }
  }

  ack(seq: number): void {
    if (this.rel.onAck(seq) && (this.table.ring.length > 0 || this.rel.resending)) this.host.scheduleFlush();
  }

  ping(id: number): void {
    this.rxPath?.queuePong(id);
  }

  pong(id: number): void {
    const p = this.rxPath;
    if (!p) return;
    const now = this.clock.now();
    // A bonding probe's answer (probes.ts), else liveness or ping().
    if (p.onProbePong(id, now)) return;
    this.liveness.onPong(p, id, now);
    this.control.onPong(p, id, now);
  }

  datagram(flow: number, payload: Buffer): void {
    if (this.rxLease) this.rxLease.poisoned = true; // handlers may keep the payload
    this.idle.touch();
    this.lanes.deliverDatagram(flow, payload);
  }

  goaway(code: number): void {
    this.control.peerGoaway = true;
    this.host.goawayReceived(code);
  }

  close(code: number, reason: string): void {
    this.host.closedByPeer(code, reason);
  }

  // ── Deliverer: in-order sequenced frames ──

  deliver(type: SeqFrame['type'], sid: number, payload: Buffer | undefined, code: number, lease: RecordLease | undefined): void {
    switch (type) {
      case F_OPEN:
        // The open payload may be kept: from a pool record, a copy of its own.
        return this.onOpen(sid, lease ? Buffer.from(payload as Buffer) : (payload as Buffer));
      case F_DATA: {
        const len = (payload as Buffer).length;
        this.credit.onReceived(len);
        this.bytesReceived += len;
        const s = this.table.get(sid);
        if (!s) this.table.checkKnownId(sid); // data for a stream we already closed: dropped
        // In a stream's buffer (bounded by its window) or dropped: no longer in flight.
        this.credit.release(len);
        if (!s) return;
        if (!s.onData(payload as Buffer, lease)) {
          this.log.debug({ sid }, 'stream exceeded its flow-control window; resetting it');
          s.reset(ResetCode.flowControl);
        }
        return;
      }
      case F_FIN: {
        const s = this.table.get(sid);
        if (s) s.onFin();
        else this.table.checkKnownId(sid);
        return;
      }
      case F_RST: {
        const s = this.table.get(sid);
        if (s) this.log.debug({ sid, code, sent: s.sentOffset, received: s.recvOffset }, 'stream reset by peer');
        if (s) s.onReset(code);
        return;
      }
    }
  }

  private onOpen(sid: number, payload: Buffer): void {
    if (!this.table.admit(sid, this.host.acceptsStreams())) {
      this.table.queueReset(sid, ResetCode.refused);
      return;
    }
    const handler = this.lanes.streamHandler(payload);
    if (handler === undefined) {
      this.log.debug({ sid, kind: payload[0] }, 'stream of an open kind nobody handles; resetting it');
      this.table.queueReset(sid, ResetCode.noHandler);
      return;
    }
    handler(this.table.accept(sid, payload));
  }
}
