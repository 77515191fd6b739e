/**
 * Stream helpers for carrier tests: write with backpressure honoured, read to
 * the end while hashing, and a liveness guard for events that must happen.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

/** Writes `data` in `chunkSize` slices, waiting for 'drain' whenever write() says so; ends if asked. */
export async function writeAll(stream: Writable, data: Buffer, chunkSize = 65_536, end = true): Promise<void> {
  for (let off = 0; off < data.length; off += chunkSize) {
    if (!stream.write(data.subarray(off, off + chunkSize))) await once(stream, 'drain');
  }
  if (end) stream.end();
}

/**
 * Calls `onChunk` for every chunk until 'end'; rejects on 'error' or a close
 * without 'end'. Unlike `for await`, it does not destroy the stream at the
 * end, so the stream's write side stays usable (half-close tests need that).
 */
export function consume(stream: Readable, onChunk: (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onEnd = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('stream closed before end'));
    };
    const cleanup = (): void => {
      stream.off('data', onChunk);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    stream.on('data', onChunk);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}

/** Reads until 'end'; resolves with the byte count and SHA-256 (hex). */
export async function hashUntilEnd(stream: Readable): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  await consume(stream, (chunk) => {
    h.update(chunk);
    bytes += chunk.length;
  });
  return { bytes, sha256: h.digest('hex') };
}

/** Reads until 'end' and returns everything. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  await consume(stream, (chunk) => parts.push(chunk));
  return Buffer.concat(parts);
}

/** SHA-256 hex of a buffer. */
export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Rejects if `p` has not settled after `ms`. A liveness guard (something
 * that must happen eventually), not a timing claim: keep `ms` generous.
 */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves on 'close' (immediately if already closed), whether or not an error came first. */
export function closed(stream: Duplex): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

/** Resolves after `ms` (cleared timer on settle; never rejects). */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Resolves after `n` setImmediate turns: for waiting out work an in-memory
 * fake schedules with setImmediate. Immediates run in FIFO order, so this is
 * exact under any load, where a short timer (delay(5)) can fire first.
 */
export async function immediates(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}
