/**
 * Write headroom: room a writer leaves in front of the bytes it writes, so a
 * framing carrier (WebSocket) can put its header there in place and send
 * header and payload as one contiguous buffer. Without it the frame goes out
 * as two buffers, and over TLS Node joins a multi-buffer write into a fresh
 * allocation (one per record: GC pressure on the sender).
 *
 * A writer allocates a buffer with {@link HEADROOM} spare bytes at its start,
 * registers it, and writes views that begin exactly HEADROOM bytes in; the
 * carrier checks {@link hasHeadroom} before touching the bytes in front. The
 * writer must not reuse the buffer before the write's callback (which the
 * carriers that use this run once the socket has taken the bytes).
 */

/** Room reserved in front of a registered buffer's payload: the longest WebSocket header. */
export const HEADROOM = 14;

const registered = new WeakSet<ArrayBufferLike>();

/** Allocates a buffer of `size` payload bytes with HEADROOM in front; returns the payload view. */
export function allocWithHeadroom(size: number): Buffer {
  const whole = Buffer.allocUnsafeSlow(HEADROOM + size);
  registered.add(whole.buffer);
  return whole.subarray(HEADROOM);
}

/** True when the HEADROOM bytes before `chunk` are a registered writer's spare room. */
export function hasHeadroom(chunk: Buffer): boolean {
  return chunk.byteOffset === HEADROOM && registered.has(chunk.buffer);
}
