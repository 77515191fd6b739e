/**
 * A secure channel: the record layer bound to one stream-carrier connection,
 * the stream implementation of the record-channel seam (record-channel.ts).
 * The session above hands it whole record plaintexts and receives whole
 * record plaintexts; the channel owns keys, nonces, rekeying and the socket.
 *
 * Lifecycle: 'open' → 'closed' (once). `close()` ends the carrier gracefully
 * after queued bytes; `abort(err)` destroys it at once. Both are idempotent.
 */
import type { Duplex } from 'node:stream';
import { ChunkList } from '../core/chunks.js';
import { toError } from '../core/errors.js';
import type { SlabReader } from '../core/slab-reads.js';
import { capabilitiesOf, type StreamCapabilities } from '../core/stream-caps.js';
import { releaseRecordBuffer, releaseSealedBuffer, takeRecordBuffer, takeSealedBuffer } from './record-pool.js';
import type { CipherChoice } from './cipher.js';
import type { ChannelInfo, RecordChannel } from './record-channel.js';
import { MAX_RECORD_PLAINTEXT, RECORD_DATA, RECORD_OVERHEAD, type RecordOpener, type RecordSealer } from './record.js';
import { CHANNEL_MAX_QUEUED_BYTES } from '../core/limits.js';

/** Records at least this big are built in reused buffers (where the carrier allows); smaller ones come from Node's shared slab. */
const POOL_FROM = 4096;
/** Largest carrier read once bulk (see onData). */
const CARRIER_READ = 256 * 1024;
/** Bytes received after which any carrier counts as bulk (a TLS read is at most 16 KiB, never the 64 KiB that marks bulk TCP). */
const BULK_AFTER = 1024 * 1024;

let pooledReceived = 0;
/** Records decrypted into record-pool buffers so far, by every channel of the process (tests, stats). */
export function pooledRecordsReceived(): number {
  return pooledReceived;
}

export interface ChannelInit {
  /** Send a key update after this many bytes under one key. @default 1 GiB */
  rekeyBytes?: number;
  /** Send a key update after this long under one key. @default 1 hour */
  rekeyMs?: number;
  /** Bytes queued on the carrier before the writer waits for drain. @default 256 KiB */
  maxQueuedBytes?: number;
  /**
   * Over TLS proven end to end (no front between the processes), let TLS
   * alone protect the records instead of encrypting them twice (see
   * handshake.ts). Off on either side means records keep their AEAD. @default true
   */
  tlsBound?: boolean;
  /**
   * Record cipher: 'auto' (AES-256-GCM when both ends have AES acceleration,
   * else ChaCha20-Poly1305) or one forced (see cipher.ts). @default 'auto'
   */
  cipher?: CipherChoice;
  /** Whether this machine has AES acceleration; tests play other machines with it. @default found out (cipher.ts) */
  aesAccelerated?: boolean;
}

export class SecureChannel implements RecordChannel {
  readonly info: ChannelInfo;
  /** A byte stream delivers every record, in order. */
  readonly reliable = true;
  readonly maxRecord = MAX_RECORD_PLAINTEXT;
  private readonly input = new ChunkList();
  private closed = false;
  /** No more writes: close() was called, or the channel closed. */
  private shut = false;
  private recordHandler: (plaintext: Buffer, pooled: Buffer | undefined) => void = () => undefined;
  private closeHandlers: ((err?: Error) => void)[] = [];
  private drainHandler: () => void = () => undefined;
  private readonly rekeyBytes: number;
  private readonly rekeyMs: number;
  private readonly maxQueued: number;
  bytesIn = 0;
  bytesOut = 0;
  /**
   * Large records are built in reused buffers when the carrier declares
   * `buffersFreeOnWriteCallback` (core/stream-caps.ts: TCP, TLS, the
   * WebSocket stream): write callbacks run in order once the bytes are in
   * the kernel (or in OpenSSL's buffer), so a buffer is free again then. A 64 KiB allocation per record was most of the
   * sender's GC time. The buffers come from a process-wide pool
   * (record-pool.ts: as many as were in flight, trimmed when idle), with room
   * in front for a WebSocket header (core/headroom.ts). Streams that declare
   * nothing (memory) get fresh ones.
   */
  private readonly reuse: boolean;
  /** Read once here: the carrier's declared slab reads (see onData), if any. */
  private readonly slabReads: StreamCapabilities['slabReads'];
  /** Buffers handed to the socket, in write order (undefined: not reusable). */
  private readonly written: (Buffer | undefined)[] = [];
  private readonly onWritten = (): void => {
    const b = this.written.shift();
    if (b !== undefined) releaseSealedBuffer(b);
  };

  constructor(
    private readonly stream: Duplex,
    private readonly sealer: RecordSealer,
    private readonly opener: RecordOpener,
    info: ChannelInfo,
    leftover: Buffer | undefined,
    init: ChannelInit = {},
  ) {
    this.info = info;
    this.rekeyBytes = init.rekeyBytes ?? 2 ** 30;
    this.rekeyMs = init.rekeyMs ?? 3_600_000;
    this.maxQueued = init.maxQueuedBytes ?? CHANNEL_MAX_QUEUED_BYTES;
    const caps = capabilitiesOf(stream);
    this.reuse = caps.buffersFreeOnWriteCallback === true;
    this.slabReads = caps.slabReads;
    // Over TLS, a write of several buffers is joined into a fresh allocation
    // before encryption (and the records were reused to avoid just that), so
    // records go to a TLS socket one write each; each is a whole TLS
    // write, encrypted straight from our buffer.
    caps.singleWrites?.();
    if (leftover && leftover.length > 0) this.input.push(leftover);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('drain', () => this.drainHandler());
    stream.on('error', (err: Error) => this.finish(err));
    stream.on('close', () => this.endAfterInput());
    stream.on('end', () => this.endAfterInput());
  }

  private started = false;
  private endPending = false;

  /** Starts delivering records (call after setting the handlers). */
  start(): void {
    this.started = true;
    if (this.input.length > 0 || this.endPending) {
      setImmediate(() => {
        this.pump();
        if (this.endPending) this.finish();
      });
    }
  }

  /**
   * A clean end: records already received still go up first. A peer that
   * closes a session sends its CLOSE record and FIN together, and under load
   * both arrive in the handshake's own read (the leftover) before start()'s
   * deferred pump: finishing first lost the reason, and the client went on
   * to resume a session the server had closed ("sessionUnknown").
   */
  private endAfterInput(): void {
    if (this.closed) return;
    if (!this.started) {
      this.endPending = true;
      return;
    }
    this.pump();
    this.finish();
  }

  /**
   * `pooled`: the record-pool buffer the plaintext lies in (bulk on a TCP
   * carrier, see onData), for the receiver to give back once nothing refers
   * to it; undefined otherwise.
   */
  onRecord(handler: (plaintext: Buffer, pooled: Buffer | undefined) => void): void {
    this.recordHandler = handler;
  }

  onDrain(handler: () => void): void {
    this.drainHandler = handler;
  }

  /** Called once when the channel ends; err is undefined for a clean end. */
  onClose(handler: (err?: Error) => void): void {
    if (this.closed) handler();
    else this.closeHandlers.push(handler);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes waiting in the carrier's userspace queue. */
  get queuedBytes(): number {
    return this.stream.writableLength;
  }

  /**
   * True while the carrier's userspace queue is below `maxQueued`. Node's
   * socket high-water mark (16 KiB) is below one record, so honouring
   * write() === false would cost a drain round trip per record; a few records
   * queued let libuv send them in one writev. Still bounded: past the limit
   * the session waits for 'drain' (write() has returned false by then).
   */
  get writable(): boolean {
    return !this.shut && this.stream.writableLength < this.maxQueued;
  }

  /**
   * Seals and writes one record whose plaintext is `buf[0..len)`, first byte
   * RECORD_DATA. Returns false when the carrier wants the writer to wait for
   * drain. Writing to a closed or closing channel is a no-op returning false
   * (the carrier's write side is ended: a write would fail it with an error).
   */
  write(buf: Buffer, len: number): boolean {
    if (this.shut) return false;
    if (this.sealer.bytesUnderKey >= this.rekeyBytes || Date.now() - this.sealer.keySince >= this.rekeyMs) {
      this.send(this.sealer.sealKeyUpdate(), undefined);
    }
    this.bytesOut += len + RECORD_OVERHEAD;
    if (!this.reuse || len < POOL_FROM) return this.send(this.sealer.seal(buf, len), undefined);
    const out = takeSealedBuffer();
    const n = this.sealer.sealInto(buf, len, out);
    return this.send(out.subarray(0, n), out);
  }

  private send(rec: Buffer, reusable: Buffer | undefined): boolean {
    if (!this.reuse) return this.stream.write(rec);
    this.written.push(reusable);
    return this.stream.write(rec, this.onWritten);
  }

  /** Graceful: ends the carrier after what is queued. */
  close(): void {
    if (this.shut) return;
    this.shut = true;
    this.stream.end();
    // A peer that never closes its side must not hold the socket forever.
    setTimeout(() => this.stream.destroy(), 5000).unref();
  }

  /** Immediate teardown. */
  abort(err?: Error): void {
    if (this.closed) return;
    this.stream.destroy();
    this.finish(err);
  }

  /** Slab reads of a bulk TCP carrier (see onData); null before or without. */
  private slabs: SlabReader | null = null;
  private slabTried = false;
  /**
   * Input chunks (counted as ChunkList.dropped counts them) handled so far:
   * set past the chunks pushed before slab reads began, whose drops are not
   * the reader's, then advanced with each chunk given back.
   */
  private released = 0;
  private pooledNow: Buffer | undefined;

  private onData(chunk: Buffer): void {
    // A carrier that delivers a full 64 KiB TCP read, or 1 MiB in all (TLS
    // reads are 16 KiB), carries bulk: from then on its socket reads (up to
    // 256 KiB at a time) go into reused slabs, and records
    // are decrypted out of them into record-pool buffers, which the session
    // gives back once their payloads are written on (or were copied). Fresh
    // 64 KiB read buffers and a fresh buffer for every record split across
    // two reads made V8 run a full mark-compact every ~90 ms on the receiving
    // side ("external memory pressure") in some runs, doubling its CPU.
    if (!this.slabTried && (chunk.length === 65536 || this.bytesIn >= BULK_AFTER)) {
      this.slabTried = true;
      this.slabs = this.startSlabReads();
      if (this.slabs) {
        this.released = this.input.dropped + this.input.chunkCount + 1;
        this.opener.outOfPlace = (len) => {
          if (len < POOL_FROM) return Buffer.allocUnsafe(len);
          this.pooledNow = takeRecordBuffer();
          pooledReceived++;
          return this.pooledNow;
        };
      }
    }
    this.bytesIn += chunk.length;
    this.input.push(chunk);
    this.pump();
  }

  /**
   * Slab reads with recycling, where the carrier declared them: on the socket
   * itself (TCP, TLS), or through a stream over one (WebSocket).
   */
  private startSlabReads(): SlabReader | null {
    return this.slabReads?.({ readSize: CARRIER_READ, slabSize: 4 * CARRIER_READ }) ?? null;
  }

  private pump(): void {
    if (!this.started) return; // start() pumps what came before the handlers were set
    try {
      while (!this.closed) {
        const pt = this.opener.next(this.input);
        if (this.slabs) this.releaseConsumed();
        if (pt === null) return;
        const pooled = this.pooledNow;
        this.pooledNow = undefined;
        if (pt[0] === RECORD_DATA) this.recordHandler(pt, pooled);
        else if (pooled) releaseRecordBuffer(pooled);
      }
    } catch (err) {
      this.abort(toError(err));
    }
  }

  /** Gives the slab reader back every chunk the opener consumed (nothing refers to them: records were copied out). */
  private releaseConsumed(): void {
    const slabs = this.slabs as SlabReader;
    for (; this.released < this.input.dropped; this.released++) slabs.release();
  }

  private finish(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.shut = true;
    if (!this.stream.destroyed) this.stream.destroy();
    const hs = this.closeHandlers;
    this.closeHandlers = [];
    for (const h of hs) h(err);
  }
}
