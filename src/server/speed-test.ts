/**
 * The server end of a speed test (SPEED streams, src/proxy/wire.ts): no
 * target, just bytes through the session, so that a client (the setup
 * wizard's check) can measure each path to this server.
 *
 *   down: write `bytes` zero bytes as fast as the stream takes them ─▶ end
 *   up:   read until the client ends ─▶ | received u32 | ms u32 | ─▶ end   (ms: first to last byte, as seen here)
 *
 * Bounded: at most MAX_SPEED_TEST_BYTES (the decoder refuses more), one
 * test at a time per session (the proxy resets a second one), a deadline
 * after which the stream is reset, and every byte counted as the user's
 * traffic (bytesUp / bytesDown), so quotas hold.
 */
import type { Logger } from '../core/logger.js';
import { writeZeros } from '../proxy/zeros.js';
import type { PolyStream } from '../session/stream.js';
import type { Tally } from './proxy-counters.js';

/** A speed test stream is reset after this long, ms. */
export const SPEED_TEST_DEADLINE_MS = 60_000;
/** Reset code: the client sent more than it asked to, or the deadline passed (application range). */
export const SPEED_TEST_RESET = 0x105;

/** Serves one speed test on `s`; `done` runs once when it ends, whichever way. */
export function serveSpeedTest(s: PolyStream, req: { direction: 'down' | 'up'; bytes: number }, tally: Tally, log: Logger, done: () => void): void {
  const deadline = setTimeout(() => {
    log.debug({ sid: s.id, direction: req.direction }, 'speed test past its deadline; resetting');
    s.reset(SPEED_TEST_RESET);
  }, SPEED_TEST_DEADLINE_MS);
  deadline.unref?.();
  s.once('close', () => {
    clearTimeout(deadline);
    done();
  });
  if (req.direction === 'down') {
    // The client writes nothing on a download; whatever it sends is read and dropped.
    s.resume();
    writeZeros(s, req.bytes, (n) => tally('bytesDown', n));
    return;
  }
  let received = 0;
  let first = 0;
  s.on('data', (d: Buffer) => {
    if (received === 0) first = performance.now();
    received += d.length;
    tally('bytesUp', d.length);
    if (received > req.bytes) {
      log.debug({ sid: s.id, asked: req.bytes, received }, 'speed test upload longer than announced; resetting');
      s.reset(SPEED_TEST_RESET);
    }
  });
  s.once('end', () => {
    if (s.destroyed) return;
    const reply = Buffer.allocUnsafe(8);
    reply.writeUInt32BE(received, 0);
    reply.writeUInt32BE(received === 0 ? 0 : Math.min(0xffffffff, Math.round(performance.now() - first)), 4);
    s.end(reply);
  });
}
