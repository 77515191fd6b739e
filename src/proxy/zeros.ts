/**
 * The bytes of a speed test (SPEED streams, wire.ts), for both ends: the
 * server's download and the client's upload write zeros as fast as the
 * stream takes them. One shared buffer serves every write: the session
 * copies each DATA payload into its record (PolyStream.chunksFreeAfterWrite),
 * and nothing writes to this one.
 */
import type { PolyStream } from '../session/stream.js';

const CHUNK = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

/**
 * Writes `bytes` zero bytes on `s` with backpressure, then ends it. Stops
 * when `s` is ended (a caller's deadline) or destroyed meanwhile. `onChunk`
 * sees each chunk's size as it is written.
 */
export function writeZeros(s: PolyStream, bytes: number, onChunk?: (n: number) => void): void {
  let left = bytes;
  const pump = (): void => {
    if (s.writableEnded) return;
    while (left > 0 && !s.destroyed) {
      const n = Math.min(CHUNK, left);
      left -= n;
      onChunk?.(n);
      if (!s.write(n === CHUNK ? ZEROS : ZEROS.subarray(0, n))) {
        s.once('drain', pump);
        return;
      }
    }
    if (!s.destroyed) s.end();
  };
  pump();
}
