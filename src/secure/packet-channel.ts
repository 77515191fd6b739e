/**
 * The packet secure channel: the record-channel seam (record-channel.ts)
 * over datagrams, one record per datagram, `reliable: false`. Groundwork for
 * issue 17: nothing builds sessions on it yet; the reliability layer
 * (src/arq) is meant to sit above it.
 *
 * A record travels as one transport datagram (packet-crypt.ts,
 * packet-wire.ts): masked header, then AEAD(record ‖ kind ‖ zero padding).
 * Kinds: 1 a record, 2 a close notice (sent a few times, as it may be lost;
 * a peer that misses every copy ends by its own liveness timeout).
 *
 * Sending: write() seals at once and queues the datagram; the queue goes to
 * the carrier in batches (`burst` datagrams per event-loop turn, so a
 * receiver in the same process or behind a small socket buffer gets to read
 * in between). write() returns false once `maxQueuedPackets` wait, and the
 * drain handler runs when the queue is empty again. Nothing waits on the
 * peer: datagrams have no flow control (that is the layer above's).
 *
 * Receiving never throws and never answers: a datagram that is short,
 * not ours, forged, replayed or too old is dropped and counted in `stats`.
 *
 * ```
 *  created ──start()──► open ──close()──► closing (queue flushes, close notices) ──► closed
 *                         └──abort(err) / close notice / counter spent───────────────► closed
 * ```
 */
import type { Clock } from '../core/clock.js';
import { LimitError, toError } from '../core/errors.js';
import type { RecordCipher } from './aead.js';
import { PacketOpener, PacketSealer } from './packet-crypt.js';
import type { ChannelInfo, RecordChannel } from './record-channel.js';
import { DEFAULT_DATAGRAM_SIZE, TRANSPORT_OVERHEAD, type TransportHeader } from './packet-wire.js';

export const KIND_RECORD = 1;
export const KIND_CLOSE = 2;
const CLOSE_COPIES = 3;
const EMPTY = Buffer.alloc(0);

/**
 * What the secure layer needs of a datagram association: the shape of
 * carriers' PacketConn (the secure layer may not import carriers).
 */
export interface DatagramPort {
  readonly remote: string;
  readonly local: string;
  readonly maxPacketSize: number;
  send(packets: readonly Buffer[]): boolean;
  onPackets(handler: (packets: Buffer[]) => void): void;
  onClose(handler: (err?: Error) => void): void;
  close(): void;
}

/** Tuning of a packet channel (both ends of a pair should agree on epochPackets). */
export interface PacketChannelInit {
  clock: Clock;
  /** Largest datagram sent, bytes (capped by the port's maxPacketSize). @default 1200 */
  maxDatagramSize?: number;
  /** Random zero padding per datagram, at most this many bytes (within the datagram size): varies sizes further. @default 0 */
  maxPadding?: number;
  /** Datagrams queued before write() returns false. @default 256 */
  maxQueuedPackets?: number;
  /** Datagrams handed to the carrier per event-loop turn. @default 64 */
  burst?: number;
  /** Replay window, datagrams. @default 2048 */
  replayWindow?: number;
  /** Datagrams per key epoch (packet-crypt.ts). @default 2^20 */
  epochPackets?: number;
  /** Next key after this long under one, ms. @default 120000 */
  rekeyAfterMs?: number;
  /** Highest packet counter before the channel must be replaced (tests lower it). @default 2^53 - 1 */
  counterLimit?: number;
  /** Records held before start() (beyond: dropped, counted). @default 1024 */
  maxEarlyRecords?: number;
  /** AEAD implementation (tests). @default aead.ts's choice */
  aeadImpl?: 'native' | 'node:crypto';
}

/** The keys and indices a packet handshake produces for one end. */
export interface PacketChannelKeys {
  cipher: RecordCipher;
  sendKey: Buffer;
  recvKey: Buffer;
  /** Header protection keys (16 bytes): what we mask with, what the peer masks with. */
  sendMask: Buffer;
  recvMask: Buffer;
  /** The index the peer put in its handshake message, written in our headers; and ours, expected in its. */
  remoteIndex: number;
  localIndex: number;
  handshakeHash: Buffer;
}

/** Drops and traffic of one channel (plain counters, all monotonic). */
export interface PacketChannelStats {
  datagramsIn: number;
  datagramsOut: number;
  /** Too short, a counter past 2^53, no kind byte, or an index not ours. */
  malformed: number;
  /** Seen before, or older than the replay window. */
  replayed: number;
  /** Did not authenticate (wrong key, altered, garbage). */
  forged: number;
  /** Records that arrived before start() beyond the bound, and records of unknown kind. */
  ignored: number;
}

type State = 'created' | 'open' | 'closing' | 'closed';

/** See the file comment. */
export class PacketRecordChannel implements RecordChannel {
  readonly reliable = false;
  readonly maxRecord: number;
  readonly stats: PacketChannelStats = { datagramsIn: 0, datagramsOut: 0, malformed: 0, replayed: 0, forged: 0, ignored: 0 };
  #bytesIn = 0;
  #bytesOut = 0;
  #port: DatagramPort;
  readonly #carrier: string;
  readonly #hash: Buffer;
  readonly #cipher: RecordCipher;
  readonly #sealer: PacketSealer;
  readonly #opener: PacketOpener;
  readonly #keys: PacketChannelKeys;
  readonly #maxPadding: number;
  readonly #maxQueued: number;
  readonly #burst: number;
  readonly #maxEarly: number;
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #flushScheduled = false;
  #wantDrain = false;
  #state: State = 'created';
  #early: Buffer[] = [];
  #recordHandler: (pt: Buffer, pooled: Buffer | undefined) => void = () => undefined;
  #drainHandler: () => void = () => undefined;
  #closeHandlers: ((err?: Error) => void)[] = [];
  #closeErr: Error | undefined;

  constructor(keys: PacketChannelKeys, port: DatagramPort, carrier: string, init: PacketChannelInit) {
    this.#keys = keys;
    this.#port = port;
    this.#carrier = carrier;
    this.#hash = Buffer.from(keys.handshakeHash);
    this.#cipher = keys.cipher;
    const crypt = { cipher: keys.cipher, ...(init.epochPackets !== undefined && { epochPackets: init.epochPackets }), ...(init.aeadImpl !== undefined && { impl: init.aeadImpl }) };
    this.#sealer = new PacketSealer(keys.sendKey, keys.sendMask, crypt, init.clock, init.rekeyAfterMs, init.counterLimit);
    this.#opener = new PacketOpener(keys.recvKey, keys.recvMask, crypt, init.replayWindow);
    const size = Math.min(init.maxDatagramSize ?? DEFAULT_DATAGRAM_SIZE, port.maxPacketSize);
    this.maxRecord = size - TRANSPORT_OVERHEAD;
    if (this.maxRecord < 1024) throw new LimitError('maxDatagramSize', `datagrams of ${size} bytes leave records under 1024 bytes`);
    this.#maxPadding = init.maxPadding ?? 0;
    this.#maxQueued = init.maxQueuedPackets ?? 256;
    this.#burst = init.burst ?? 64;
    this.#maxEarly = init.maxEarlyRecords ?? 1024;
  }

  get info(): ChannelInfo {
    return { remote: this.#port.remote, local: this.#port.local, carrier: this.#carrier, handshakeHash: this.#hash, protection: 'aead', cipher: this.#cipher };
  }

  get bytesIn(): number {
    return this.#bytesIn;
  }

  get bytesOut(): number {
    return this.#bytesOut;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  get writable(): boolean {
    return (this.#state === 'open' || this.#state === 'created') && this.#queue.length < this.#maxQueued;
  }

  /** Our index, the one the peer writes in its headers (the responder finds us by it). */
  get localIndex(): number {
    return this.#keys.localIndex;
  }

  /** The association datagrams go out on now. */
  get port(): DatagramPort {
    return this.#port;
  }

  /** Sends from now on through `port` (a client's rebound socket; a server following its roaming peer). */
  moveTo(port: DatagramPort): void {
    this.#port = port;
  }

  /** The header of `datagram` as the peer masked it, or undefined when it cannot be a transport datagram. */
  peek(datagram: Buffer): TransportHeader | undefined {
    return this.#opener.peek(datagram);
  }

  write(buf: Buffer, len: number): boolean {
    if (len < 1 || len > this.maxRecord) throw new LimitError('record', `record of ${len} bytes is out of range (1..${this.maxRecord})`);
    if (this.#state === 'closing' || this.#state === 'closed') return false;
    this.#enqueue(buf, len, KIND_RECORD);
    if (this.#queue.length >= this.#maxQueued) {
      this.#wantDrain = true;
      return false;
    }
    return true;
  }

  #enqueue(buf: Buffer, len: number, kind: number): void {
    const room = this.maxRecord - len;
    const pad = Math.min(room, this.#maxPadding > 0 ? Math.floor(Math.random() * (this.#maxPadding + 1)) : 0);
    let d: Buffer;
    try {
      d = this.#sealer.seal(this.#keys.remoteIndex, buf, 0, len, kind, pad);
    } catch (err) {
      this.abort(toError(err));
      return;
    }
    this.#queue.push(d);
    this.#queuedBytes += d.length;
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#state === 'closed') return;
    const batch = this.#queue.length <= this.#burst ? this.#queue : this.#queue.slice(0, this.#burst);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(this.#burst);
    this.#sendNow(batch);
    for (const d of batch) this.#queuedBytes -= d.length;
    if (this.#queue.length > 0) return this.#scheduleFlush();
    if (this.#state === 'closing') return this.#finish(undefined);
    if (this.#wantDrain) {
      this.#wantDrain = false;
      this.#drainHandler();
    }
  }

  #sendNow(batch: Buffer[]): void {
    if (batch.length === 0) return;
    for (const d of batch) this.#bytesOut += d.length;
    this.stats.datagramsOut += batch.length;
    this.#port.send(batch);
  }

  /** A few sealed close notices (none once the counter is spent: the peer then ends by its own timeout). */
  #closeNotices(): Buffer[] {
    const notices: Buffer[] = [];
    try {
      for (let i = 0; i < CLOSE_COPIES; i++) notices.push(this.#sealer.seal(this.#keys.remoteIndex, EMPTY, 0, 0, KIND_CLOSE, 0));
    } catch {
      // counter spent
    }
    return notices;
  }

  /**
   * Takes one datagram from the carrier (the client's port, or the
   * responder once it found us by index; `hdr` when it already unmasked
   * it). Returns true when it authenticated and was fresh, and it was the
   * newest yet ('newest': the responder moves our peer to its source).
   */
  receive(datagram: Buffer, hdr?: TransportHeader): 'newest' | boolean {
    if (this.#state === 'closed') return false;
    const h = hdr ?? this.#opener.peek(datagram);
    if (h === undefined || h.index !== this.#keys.localIndex) {
      this.stats.malformed++;
      return false;
    }
    const r = this.#opener.open(datagram, h);
    if (typeof r === 'string') {
      this.stats[r]++;
      return false;
    }
    this.stats.datagramsIn++;
    this.#bytesIn += datagram.length;
    if (r.kind === KIND_CLOSE) this.#finish(undefined);
    else if (r.kind === KIND_RECORD && r.record.length > 0) this.#deliver(r.record);
    else this.stats.ignored++;
    return r.newest ? 'newest' : true;
  }

  #deliver(record: Buffer): void {
    if (this.#state === 'created') {
      if (this.#early.length < this.#maxEarly) this.#early.push(record);
      else this.stats.ignored++;
      return;
    }
    if (this.#state === 'open' || this.#state === 'closing') this.#recordHandler(record, undefined);
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
    if (this.#state !== 'created') return;
    this.#state = 'open';
    const early = this.#early;
    this.#early = [];
    for (const r of early) {
      if (this.#state !== 'open') break;
      this.#recordHandler(r, undefined);
    }
  }

  close(): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    // The notices go after the queued records, in the same order on the wire; the last flush ends the channel.
    for (const d of this.#closeNotices()) {
      this.#queue.push(d);
      this.#queuedBytes += d.length;
    }
    this.#scheduleFlush();
  }

  abort(err?: Error): void {
    if (this.#state === 'closed') return;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#sendNow(this.#closeNotices());
    this.#finish(err);
  }

  #finish(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeErr = err;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#early = [];
    const handlers = this.#closeHandlers;
    this.#closeHandlers = [];
    for (const h of handlers) h(err);
  }
}
