/**
 * Moves bytes from a readable into a writable, like `Readable#pipe`, but
 * with the batching a relay of session streams needs:
 *
 * - pipe() pauses the source as soon as the destination holds its
 *   highWaterMark, 16 KiB for a socket: exactly one session frame, so every
 *   frame of a record became its own write syscall (and its own wake-up of
 *   the process on the other end). Here the source pauses only once
 *   `maxQueued` bytes wait in the destination (still bounded; 'drain'
 *   resumes it).
 * - The chunks delivered in one go (a record's frames are pushed
 *   synchronously) are corked and leave in one writev as soon as that
 *   synchronous run ends (a microtask: before the session's own flush, so
 *   relayed bytes are not queued behind a record write).
 * - What the source already holds when the relay starts (0-RTT bytes that
 *   arrived before the destination connected) is written at once.
 *
 * Ends the destination when the source ends (half-close passes through).
 * Errors and closes are the caller's business, as with pipe().
 */
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { RELAY_MAX_QUEUED } from './limits.js';
import { enableSlabReads, type SlabReader } from './slab-reads.js';

export { RELAY_MAX_QUEUED };

/** Starts relaying; the returned function stops it (idempotent). */
export function relay(src: Readable, dst: Writable, maxQueued = RELAY_MAX_QUEUED): () => void {
  let corked = false;
  let waiting = false;
  let stopped = false;
  const uncork = (): void => {
    corked = false;
    if (!dst.destroyed) dst.uncork();
  };
  const onDrain = (): void => {
    waiting = false;
    if (!stopped) src.resume();
  };
  let triedSlab = false;
  // Slabs are reused only for a destination that holds no chunk after its
  // write callback (a session stream copies each into its record).
  const recycle = (dst as { chunksFreeAfterWrite?: boolean }).chunksFreeAfterWrite === true;
  let release: SlabReader['release'] | undefined;
  const onData = (chunk: Buffer): void => {
    const done = release ?? leased; // slab: undefined for the chunk that switches to slab reads (Node's own buffer)
    if (dst.destroyed || dst.writableEnded) {
      done?.(); // dropped: released in order all the same
      return;
    }
    if (!triedSlab && chunk.length === 65536 && src instanceof Socket) {
      triedSlab = true;
      release = enableSlabReads(src, { recycle })?.release; // a no-op without recycle
    }
    if (!corked) {
      corked = true;
      dst.cork();
      queueMicrotask(uncork);
    }
    if (done) dst.write(chunk, done);
    else dst.write(chunk);
    if (!waiting && dst.writableLength >= maxQueued) {
      waiting = true;
      src.pause();
      dst.once('drain', onDrain);
    }
  };
  const onEnd = (): void => {
    if (!dst.destroyed && !dst.writableEnded) dst.end();
  };
  if (src.readableLength > 0 && !dst.destroyed && !dst.writableEnded) {
    for (let c = src.read() as Buffer | null; c !== null; c = src.read() as Buffer | null) dst.write(c);
  }
  // A session stream into a socket: chunks that lie in received pool records
  // are given back from the write callbacks (in order, as a socket runs them).
  const leasing = src as { enableLeases?: () => void; releaseChunk?: () => void; disableLeases?: () => void };
  let leased: (() => void) | undefined;
  if (
    dst instanceof Socket &&
    typeof leasing.enableLeases === 'function' &&
    typeof leasing.releaseChunk === 'function' &&
    typeof leasing.disableLeases === 'function' &&
    src.readableLength === 0
  ) {
    leasing.enableLeases();
    const releaseChunk = leasing.releaseChunk.bind(src);
    leased = () => {
      if (!stopped) releaseChunk();
    };
  }
  src.on('data', onData);
  // Like pipe(): a source that already ended (its EOF read with the head of a request) still ends dst.
  if (src.readableEnded) process.nextTick(onEnd);
  else src.once('end', onEnd);
  src.resume();
  return () => {
    if (stopped) return;
    stopped = true;
    // Chunks this relay would have given back stay out of the pool: no later reader's releases can line up with them.
    if (leased) leasing.disableLeases?.();
    src.off('data', onData);
    src.off('end', onEnd);
    dst.off('drain', onDrain);
  };
}

/**
 * Closes a socket with RST when it can (the peer sees ECONNRESET), else
 * plainly. For a relayed connection whose other side failed: a plain close
 * would deliver what the kernel still buffers and then a FIN, and the
 * application would take a cut-off transfer for a complete one.
 */
export function abortSocket(sock: Socket): void {
  if (sock.destroyed) return;
  // After end(), while the FIN is pending, libuv refuses the RST (EINVAL) and
  // Node 20 then never closes the handle: the fd leaks and, at exit, the
  // process spins at 100% CPU in its handle cleanup. A socket that already
  // sent (or is sending) its FIN is closed plainly.
  if (sock.writableEnded) {
    sock.destroy();
    return;
  }
  try {
    sock.resetAndDestroy();
  } catch {
    // Not a TCP handle (an injected connect in tests may hand us a pipe): no RST possible.
    sock.destroy();
  }
}
