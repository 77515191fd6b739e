/**
 * One reliable, ordered, congestion-controlled record stream over packets
 * that may be lost, reordered or duplicated: the parts of this folder put
 * together. Sans-IO: the caller hands it received packets and the time,
 * asks it for packets to send ({@link ArqConnection.poll}) and arms one
 * timer at {@link ArqConnection.nextWake}; arq-channel.ts does that over a
 * packet record channel.
 *
 * A packet is the plaintext of one secure datagram (so everything here is
 * encrypted and authenticated before it is read):
 *
 * ```
 *   packet  = pn:varint frame+
 *   frame   = 0x01 ack-frame            (ack-frame.ts; at most one per packet)
 *           | 0x02 offset:varint length:varint bytes   (STREAM: the byte stream, stream-buffers.ts)
 *           | 0x03                       (PING: ack-eliciting, nothing else)
 *           | 0x04 length:varint bytes   (DATAGRAM: one unreliable record, never resent)
 * ```
 *
 * DATAGRAM frames carry the session's datagram lane (VPN packets, UDP
 * flows) outside the byte stream, as QUIC's DATAGRAM extension does: they
 * wait behind nothing, are congestion controlled with everything else, and
 * a lost one is gone — no TCP-over-TCP for the VPN.
 *
 * Packets with STREAM or PING frames are ack-eliciting and in flight;
 * ACK-only packets are neither (they are never acknowledged nor resent; a
 * lost ACK is replaced by the next). Lost packets give their STREAM ranges
 * back to the send stream, which sends again only what is still
 * unacknowledged, in new packets with new numbers.
 *
 * Flow control: the receiver holds at most `recvWindow` bytes past what it
 * delivered in order; the sender never sends past its first unacknowledged
 * byte + that window, so an honest sender never overruns it, and a packet
 * that would (a peer with another window) is dropped unacknowledged and
 * sent again later. Above this, the session's own per-stream credit bounds
 * what the application has not read.
 *
 * Bad input from an authenticated peer never throws out of `receive`: a
 * packet that does not parse is counted and dropped; a byte stream that
 * breaks the record framing (a zero length) ends the connection
 * (`failure` is set; the caller aborts).
 */
import { ProtocolError, toError } from '../core/errors.js';
import { decodeAckFrame, encodeAckFrame, type AckFrame } from './ack-frame.js';
import { AckTracker } from './ack-tracker.js';
import { MAX_ACK_FRAME_BYTES } from './constants.js';
import type { CongestionController } from './congestion.js';
import { LossDetector } from './loss-detection.js';
import type { SentPacket } from './packet-numbers.js';
import { ReceiveStream, SendStream, type ByteRange } from './stream-buffers.js';
import { readVarint, varintLength, writeVarint, type Cursor } from './varint.js';

export const FRAME_ACK = 0x01;
export const FRAME_STREAM = 0x02;
export const FRAME_PING = 0x03;
export const FRAME_DATAGRAM = 0x04;
/** Bytes a DATAGRAM frame needs besides its data, and the packet number's most, in a packet of its own. */
const DATAGRAM_OVERHEAD = 1 + 2 + 8;
/** Unreliable records queued at most; beyond, new ones are dropped (a datagram late by a queue is worth little). */
const MAX_QUEUED_DATAGRAMS = 256;

/** Bytes a STREAM frame needs besides its data, at most (type, 8-byte offset, 2-byte length). */
const STREAM_HEADER_MAX = 1 + 8 + 2;
/** Smallest STREAM payload worth a frame of its own when a packet is nearly full. */
const MIN_STREAM_PAYLOAD = 32;
/** Default receive window (bytes past the in-order point); both ends must use the same. */
export const ARQ_RECV_WINDOW = 4 * 1024 * 1024;

/** Options of an {@link ArqConnection}. */
export interface ArqConnectionInit {
  cc: CongestionController;
  /** Largest packet plaintext (the packet channel's maxRecord). */
  maxPacket: number;
  /** Bytes each packet costs on the wire besides its plaintext (secure header, tag, UDP/IP), for the controller's accounting. @default 0 */
  packetOverhead?: number | undefined;
  /** @default ARQ_RECV_WINDOW */
  recvWindow?: number | undefined;
  /** Our ACK delay promise (the peer's `peerMaxAckDelayMs` should match). @default 25 */
  maxAckDelayMs?: number | undefined;
  /** Ack-eliciting packets before an ACK is due at once. @default 2 */
  ackElicitingThreshold?: number | undefined;
  /** The same once the flow is under way (AckTracker). @default 10 */
  bulkAckThreshold?: number | undefined;
  initialRttMs?: number | undefined;
  /** Each complete record, in order. */
  onRecord: (record: Buffer) => void;
  /** Each unreliable record, as it arrives (out of order with the stream). @default dropped */
  onDatagram?: ((record: Buffer) => void) | undefined;
}

/** Counters for status (all monotonic). */
export interface ArqStats {
  packetsIn: number;
  packetsOut: number;
  /** Did not parse (an authenticated peer's bug, or ours). */
  malformed: number;
  /** STREAM data past our window: dropped unacknowledged. */
  overWindow: number;
  /** Stream bytes sent, first time and again. */
  streamBytesSent: number;
  /** Stream bytes sent again (lost, or a probe). */
  retransmittedBytes: number;
  /** ACK-only packets sent. */
  ackOnly: number;
  datagramsSent: number;
  datagramsReceived: number;
  /** Unreliable records refused: too large, or the queue full. */
  datagramsDropped: number;
}

/** See the file comment. */
export class ArqConnection {
  readonly ld: LossDetector<ByteRange>;
  readonly acks: AckTracker;
  readonly send = new SendStream();
  readonly recv: ReceiveStream;
  readonly stats: ArqStats = { packetsIn: 0, packetsOut: 0, malformed: 0, overWindow: 0, streamBytesSent: 0, retransmittedBytes: 0, ackOnly: 0, datagramsSent: 0, datagramsReceived: 0, datagramsDropped: 0 };
  readonly maxPacket: number;
  /** Largest unreliable record sendDatagram takes (it fits a packet of its own). */
  readonly maxDatagram: number;
  #dgrams: Buffer[] = [];
  readonly #onDatagram: (record: Buffer) => void;
  readonly #overhead: number;
  readonly #window: number;
  /** Set when the byte stream broke its framing: the connection cannot go on. */
  failure: Error | undefined;
  // Scratch of receive(): the frames of one packet, validated before any is applied.
  readonly #offs: number[] = [];
  readonly #starts: number[] = [];
  readonly #ends: number[] = [];
  readonly #dStarts: number[] = [];
  readonly #dEnds: number[] = [];

  constructor(init: ArqConnectionInit) {
    this.maxPacket = init.maxPacket;
    this.maxDatagram = init.maxPacket - DATAGRAM_OVERHEAD;
    this.#onDatagram = init.onDatagram ?? (() => undefined);
    this.#overhead = init.packetOverhead ?? 0;
    this.#window = init.recvWindow ?? ARQ_RECV_WINDOW;
    this.ld = new LossDetector<ByteRange>({ cc: init.cc, peerMaxAckDelayMs: init.maxAckDelayMs, initialRttMs: init.initialRttMs });
    this.acks = new AckTracker({ maxAckDelayMs: init.maxAckDelayMs, ackElicitingThreshold: init.ackElicitingThreshold, bulkAckThreshold: init.bulkAckThreshold });
    const onRecord = init.onRecord;
    this.recv = new ReceiveStream(this.#window, onRecord);
  }

  /** Queues one record (copied) for reliable, ordered delivery. */
  write(buf: Buffer, len: number): void {
    this.send.writeRecord(buf, len);
  }

  /** Queues one unreliable record (kept as given: pass a copy); false, and dropped, when too large or the queue is full. */
  sendDatagram(record: Buffer): boolean {
    if (record.length < 1 || record.length > this.maxDatagram || this.#dgrams.length >= MAX_QUEUED_DATAGRAMS) {
      this.stats.datagramsDropped++;
      return false;
    }
    this.#dgrams.push(record);
    return true;
  }

  /** True when an ack-eliciting packet could carry something now or once the window opens. */
  get hasData(): boolean {
    return this.#dgrams.length > 0 || this.send.hasRetransmit || (this.send.backlog > 0 && this.send.sent < this.#sendLimit) || this.ld.probesOwed > 0;
  }

  get #sendLimit(): number {
    return this.send.ackedBase + this.#window;
  }

  /** Takes one received packet plaintext. */
  receive(p: Buffer, now: number): void {
    this.stats.packetsIn++;
    const c: Cursor = { buf: p, pos: 0, end: p.length };
    let pn: number;
    let ack: AckFrame | undefined;
    let ping = false;
    const offs = this.#offs;
    const starts = this.#starts;
    const ends = this.#ends;
    const dStarts = this.#dStarts;
    const dEnds = this.#dEnds;
    offs.length = 0;
    starts.length = 0;
    ends.length = 0;
    dStarts.length = 0;
    dEnds.length = 0;
    try {
      pn = readVarint(c, 'packet number');
      if (c.pos >= c.end) throw new ProtocolError('arq: packet without frames');
      while (c.pos < c.end) {
        const type = p[c.pos++] as number;
        if (type === FRAME_STREAM) {
          const off = readVarint(c, 'stream offset');
          const len = readVarint(c, 'stream length');
          if (len === 0 || c.pos + len > c.end) throw new ProtocolError('arq: bad stream frame length');
          if (!Number.isSafeInteger(off + len)) throw new ProtocolError('arq: stream offset too large');
          offs.push(off);
          starts.push(c.pos);
          ends.push(c.pos + len);
          c.pos += len;
        } else if (type === FRAME_ACK) {
          if (ack !== undefined) throw new ProtocolError('arq: two ACK frames in one packet');
          const r = decodeAckFrame(p, c.pos, c.end);
          ack = r.frame;
          c.pos = r.end;
        } else if (type === FRAME_PING) {
          ping = true;
        } else if (type === FRAME_DATAGRAM) {
          const len = readVarint(c, 'datagram length');
          if (len === 0 || c.pos + len > c.end) throw new ProtocolError('arq: bad datagram frame length');
          dStarts.push(c.pos);
          dEnds.push(c.pos + len);
          c.pos += len;
        } else {
          throw new ProtocolError(`arq: unknown frame type ${type}`);
        }
      }
    } catch {
      this.stats.malformed++;
      return;
    }
    for (let i = 0; i < offs.length; i++) {
      if (!this.recv.accepts(offs[i] as number, (ends[i] as number) - (starts[i] as number))) {
        this.stats.overWindow++;
        return;
      }
    }
    const eliciting = ping || offs.length > 0 || dStarts.length > 0;
    if (!this.acks.onPacket(pn, eliciting, now)) return; // a duplicate: its ACK is old news, its data already taken
    if (ack !== undefined) this.#onAck(ack, now);
    for (let i = 0; i < dStarts.length; i++) {
      this.stats.datagramsReceived++;
      this.#onDatagram(p.subarray(dStarts[i], dEnds[i]));
    }
    try {
      for (let i = 0; i < offs.length; i++) this.recv.insert(offs[i] as number, p.subarray(starts[i], ends[i]));
    } catch (err) {
      this.failure ??= toError(err);
    }
  }

  #onAck(frame: AckFrame, now: number): void {
    const out = this.ld.onAck(frame, now);
    // The peer has our ACK frames these packets carried: it need not hear of what they covered again,
    // so our ACKs stay a few ranges long instead of repeating the last 32 gaps in every packet.
    let seen = -1;
    for (const sp of out.acked) {
      seen = Math.max(seen, sp.ackLargest);
      for (const r of sp.frames) this.send.acked(r.lo, r.hi);
    }
    if (seen >= 0) this.acks.forgetBelow(seen + 1);
    // A spurious loss was delivered after all: its ranges are acknowledged (a resend may still be queued; takeRetransmit skips it).
    for (const sp of out.spurious) for (const r of sp.frames) this.send.acked(r.lo, r.hi);
    this.#lost(out.lost);
  }

  #lost(lost: readonly SentPacket<ByteRange>[]): void {
    for (const sp of lost) for (const r of sp.frames) this.send.lost(r.lo, r.hi);
  }

  /** The loss/probe timer: call at or after {@link nextWake} (early calls do nothing). */
  onTimer(now: number): void {
    const d = this.ld.timerDeadline;
    if (d === undefined || now < d) return;
    this.#lost(this.ld.onTimeout(now).lost);
  }

  /**
   * Writes the next packet to send into `out` (at least maxPacket bytes)
   * and returns its length; 0 when nothing may or need go now (then wait
   * for nextWake, a received packet or a write).
   */
  poll(now: number, out: Buffer): number {
    this.onTimer(now);
    const probe = this.ld.probesOwed > 0;
    const dataWaiting = this.hasData;
    let mayData = false;
    if (dataWaiting) {
      mayData = probe || (this.ld.cc.canSend(this.ld.bytesInFlight) && this.ld.nextSendTime(this.maxPacket + this.#overhead, now) <= now);
    } else if (this.ld.cc.canSend(this.ld.bytesInFlight)) {
      this.ld.onAppLimited();
    }
    const ackPending = this.acks.ackDeadline !== undefined;
    if (!mayData && !this.acks.ackDue(now)) return 0;

    let pos = writeVarint(out, 0, this.ld.nextPacketNumber);
    let ackLargest = -1;
    // An ACK rides along with data, but not in front of a waiting datagram it would leave no
    // room for unless it is due: else every poll sent the ACK again, alone, and the datagram
    // never went (a storm of ACK-only packets for as long as the socket took them).
    const head = mayData ? this.#dgrams[0] : undefined;
    const crowds = head !== undefined && pos + 1 + varintLength(head.length) + head.length + 1 + MAX_ACK_FRAME_BYTES > this.maxPacket;
    if (this.acks.ackDue(now) || ((ackPending || mayData) && !crowds)) {
      const f = this.acks.takeAck(now);
      if (f !== undefined) {
        out[pos++] = FRAME_ACK;
        pos = encodeAckFrame(f, out, pos);
        ackLargest = f.largest;
      }
    }
    const frames: ByteRange[] = [];
    let eliciting = false;
    if (mayData) {
      // Datagrams first: they wait behind nothing (and a probe may carry them too).
      while (this.#dgrams.length > 0) {
        const d = this.#dgrams[0] as Buffer;
        if (pos + 1 + varintLength(d.length) + d.length > this.maxPacket) break;
        this.#dgrams.shift();
        out[pos++] = FRAME_DATAGRAM;
        pos = writeVarint(out, pos, d.length);
        d.copy(out, pos);
        pos += d.length;
        eliciting = true;
        this.stats.datagramsSent++;
      }
      const limit = this.#sendLimit;
      for (;;) {
        const room = this.maxPacket - pos - STREAM_HEADER_MAX;
        if (room < MIN_STREAM_PAYLOAD) break;
        let again = true;
        let r = this.send.takeRetransmit(room);
        if (r === undefined) {
          again = false;
          r = this.send.takeNew(room, limit);
        }
        if (r === undefined && probe && frames.length === 0) {
          again = true;
          r = this.send.oldestUnacked(room);
        }
        if (r === undefined) break;
        const len = r.hi - r.lo;
        out[pos++] = FRAME_STREAM;
        pos = writeVarint(out, pos, r.lo);
        pos = writeVarint(out, pos, len);
        this.send.copy(r.lo, r.hi, out, pos);
        pos += len;
        frames.push(r);
        this.stats.streamBytesSent += len;
        if (again) this.stats.retransmittedBytes += len;
      }
      eliciting ||= frames.length > 0;
      if (!eliciting && probe) {
        out[pos++] = FRAME_PING;
        eliciting = true;
      }
    }
    if (pos === varintLength(this.ld.nextPacketNumber)) return 0; // nothing to say after all
    if (!eliciting) this.stats.ackOnly++;
    this.ld.onPacketSent({ size: pos + this.#overhead, ackEliciting: eliciting, frames, ackLargest }, now);
    this.stats.packetsOut++;
    return pos;
  }

  /**
   * When the caller should next call poll() without another event (ms), or
   * undefined: the loss/probe timer, a delayed ACK, or the pacer letting
   * the next packet go.
   */
  nextWake(now: number): number | undefined {
    let t = this.ld.timerDeadline;
    const a = this.acks.ackDeadline;
    if (a !== undefined && (t === undefined || a < t)) t = a;
    if (this.hasData && this.ld.cc.canSend(this.ld.bytesInFlight)) {
      const p = this.ld.nextSendTime(this.maxPacket + this.#overhead, now);
      if (t === undefined || p < t) t = p;
    }
    return t;
  }
}
