/**
 * Stream capabilities: what a carrier's byte stream can do beyond Node's
 * Duplex contract, declared by the carrier where it creates the stream, so
 * the layers above (the secure channel, the handshake) never sniff socket
 * classes (`instanceof Socket/TLSSocket`) or import a carrier.
 *
 * Every capability is optional and an optimisation or a fact: a stream that
 * declares none (a memory pair, a test's PassThrough, a stream some future
 * carrier forgot to describe) still works, on the plain path (fresh buffers,
 * no slab reads, no TLS binding). A reader looks them up once, when it takes
 * the stream over, never per write or per read.
 */
import type { SlabReadOptions, SlabReader } from './slab-reads.js';

/** What a carrier declares about one of its streams. */
export interface StreamCapabilities {
  /**
   * A write's callback runs once the stream has taken the bytes (into the
   * kernel, OpenSSL's buffer, or a copy), and callbacks run in write order:
   * a writer may reuse a written buffer from its write callback on. A
   * net.Socket (TCP, TLS) and the WebSocket stream behave so; a stream that
   * may keep a view of the written buffer after the callback must not say so.
   */
  readonly buffersFreeOnWriteCallback?: boolean;
  /**
   * Switches the stream to reading its socket into recycled slabs (see
   * core/slab-reads.ts): 'data' chunks are then views of the slabs, which the
   * caller gives back with `release()`, once per chunk, in order. Returns null
   * (and changes nothing) when it cannot. Called at most once per stream.
   */
  readonly slabReads?: (opts: Omit<SlabReadOptions, 'recycle'>) => SlabReader | null;
  /**
   * The TLS 1.3 exporter value (16 bytes, polytun's label) of the TLS session
   * this stream rides in end to end from this process, for the handshake's
   * TLS binding; undefined when there is none (plain TCP, TLS 1.2, closed).
   * Absent on streams with no TLS underneath.
   */
  readonly tlsBinding?: () => Buffer | undefined;
  /**
   * Asks the stream to hand queued writes to its socket one buffer at a
   * time rather than joined in one writev (over TLS, a multi-buffer write
   * is copied into a fresh allocation before encryption). For a writer whose
   * writes are each a whole, reused record buffer. Idempotent.
   */
  readonly singleWrites?: () => void;
}

/** The capabilities of a stream that declared none: every optimisation off. */
export const NO_CAPABILITIES: StreamCapabilities = Object.freeze({});

const declared = new WeakMap<object, StreamCapabilities>();

/**
 * Records what `stream` can do (replacing an earlier declaration: a carrier
 * layered on another, as TLS on TCP, states the whole set). Returns the stream.
 */
export function declareCapabilities<T extends object>(stream: T, caps: StreamCapabilities): T {
  declared.set(stream, caps);
  return stream;
}

/** What the carrier declared about `stream`; {@link NO_CAPABILITIES} when nothing. */
export function capabilitiesOf(stream: object): StreamCapabilities {
  return declared.get(stream) ?? NO_CAPABILITIES;
}
