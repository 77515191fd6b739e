/**
 * The record-channel seam: all the session knows of one path's transport.
 * A record channel carries whole record plaintexts between two
 * authenticated ends; keys, nonces, rekeying, framing and the carrier
 * underneath are its own business.
 *
 * Implementations: the stream secure channel (channel.ts, over TCP, TLS,
 * WebSocket or memory); the packet secure channel (packet-channel.ts, over
 * UDP, `reliable: false`; groundwork for issue 17, no session uses it yet);
 * later a WebRTC channel. Every one runs the compliance suite in
 * test/unit/secure/record-channel-compliance.ts.
 *
 * Lifecycle (once each, in this order):
 *
 *   created ──start()──► open ──close() / abort(err) / peer ends / error──► closed
 *
 * Records that arrive before start() are held and delivered by it; the
 * close handlers run once, with undefined for a clean end (ours or the
 * peer's) and the error otherwise.
 */

/** What a channel tells about itself (logs, stats, resume proofs). */
export interface ChannelInfo {
  remote: string;
  local: string;
  carrier: string;
  /** Noise handshake hash (channel binding), for resume proofs and logs. */
  handshakeHash: Buffer;
  /** How records are protected: their own AEAD, or by the end-to-end TLS they ride in. */
  protection?: 'aead' | 'tls-bound';
  /** The record AEAD the handshake chose, when records use their own ('aead'); undefined when TLS-bound. */
  cipher?: 'chacha20-poly1305' | 'aes-256-gcm';
}

/**
 * What a channel with its own reliable transport (arq over UDP) tells of
 * it, for status and metrics: the figures a user tunes a lossy path by.
 */
export interface TransportStats {
  /** Congestion controller: 'bbr', 'cubic', 'fixed'. */
  cc: string;
  rttMs: number;
  minRttMs: number;
  cwndBytes: number;
  /** Bytes per second; Infinity when unpaced. */
  pacingBytesPerSec: number;
  bytesInFlight: number;
  packetsSent: number;
  packetsLost: number;
  /** Lost packets later found delivered after all (reordering mistaken for loss). */
  spuriousLosses: number;
  /** Bytes sent a second time (lost, or a probe). */
  retransmittedBytes: number;
  /** packetsLost / packetsSent. */
  lossRate: number;
  /** Wire bytes both ways (datagrams with UDP/IP headers) per byte of records delivered both ways. */
  wirePerUseful: number;
  /** Largest datagram payload, bytes. */
  mtu: number;
  /** Unreliable records (the session's datagram lane) sent and received as datagrams of their own. */
  datagramsSent: number;
  datagramsReceived: number;
}

/** One path's transport, as the session sees it. */
export interface RecordChannel {
  /** Who is at the other end, and how the records are protected. */
  readonly info: ChannelInfo;
  /**
   * True when records arrive complete, in order and without loss (a stream
   * carrier); false when they may be lost or reordered (a packet carrier),
   * so the session's own resend and reorder must cover them.
   */
  readonly reliable: boolean;
  /** Largest record plaintext `write` takes, in bytes (type byte included). */
  readonly maxRecord: number;
  /** Bytes received from the carrier so far, record overhead included (liveness, stats). */
  readonly bytesIn: number;
  /** Bytes handed to the carrier so far, record overhead included (probes, stats). */
  readonly bytesOut: number;
  /** Bytes written and not yet taken by the carrier (the scheduler's queue estimate). */
  readonly queuedBytes: number;
  /**
   * True while the channel takes records without growing a queue past its
   * bound; false once closed or closing. When false after a write, wait for
   * the drain handler.
   */
  readonly writable: boolean;
  /**
   * Sends one record whose plaintext is `buf[0..len)`, first byte the record
   * type (RECORD_DATA); `len` from 1 to `maxRecord` (else a LimitError is
   * thrown). Returns false when the writer should wait for drain before the
   * next one; the record itself is taken either way. Once closed, or closing
   * after close(), a write is refused: it returns false and sends nothing.
   * `buf` may be reused as soon as write returns.
   */
  write(buf: Buffer, len: number): boolean;
  /**
   * Sets the handler of received records (one handler; a later call
   * replaces it). `plaintext` starts with the type byte. `pooled` is the
   * record-pool buffer the plaintext lies in, for the receiver to give back
   * (record-pool.ts) once nothing refers to it; undefined when the channel
   * allocated it and the GC takes it back.
   */
  onRecord(handler: (plaintext: Buffer, pooled: Buffer | undefined) => void): void;
  /** Sets the handler called when a writer that saw write() false / writable false may write again. */
  onDrain(handler: () => void): void;
  /** Adds a handler called once when the channel ends; err undefined for a clean end. Runs at once if already closed. */
  onClose(handler: (err?: Error) => void): void;
  /** Starts delivering records (call after setting the handlers). */
  start(): void;
  /** Graceful: what was written still reaches the peer, then the channel ends. Idempotent. */
  close(): void;
  /** Immediate teardown; the close handlers get `err`. Idempotent. */
  abort(err?: Error): void;
  /** The transport's own figures, when it has its own reliability (udp paths); absent on stream carriers. */
  transportStats?(): TransportStats;
  /**
   * Largest record {@link writeUnreliable} takes; present only on channels
   * that can send a record unreliably (udp paths, beside their reliable
   * stream).
   */
  readonly maxUnreliableRecord?: number;
  /**
   * Sends one record that may be lost, and arrive out of order with the
   * others (the session's datagram lane: VPN packets, UDP flows, never
   * behind a lost stream packet). Returns false when it was dropped (too
   * large, queue full, closed). `buf` may be reused once it returns.
   */
  writeUnreliable?(buf: Buffer, len: number): boolean;
}
