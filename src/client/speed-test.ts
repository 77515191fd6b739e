/**
 * The client end of a speed test (SPEED streams, src/proxy/wire.ts): bytes
 * through the session to the server and back, with its encryption and flow
 * control, measured for a time budget.
 *
 *   down: OPEN SPEED(down, max) ─▶ count until the budget runs out or the server ends
 *                                  rate = bytes / (first to last byte)
 *   up:   OPEN SPEED(up, max)   ─▶ write until the budget runs out or max is sent, end
 *                                  ◀─ | received u32 | ms u32 |   rate = the server's count / its time
 *
 * A server that predates speed tests resets the OPEN with noHandler:
 * NotOfferedError.
 */
import { NotOfferedError, StreamResetError, TimeoutError } from '../core/errors.js';
import { encodeOpen, MAX_SPEED_TEST_BYTES } from '../proxy/wire.js';
import { writeZeros } from '../proxy/zeros.js';
import type { Session } from '../session/session.js';
import { ResetCode } from '../session/stream.js';

/** One measured direction. */
export interface SpeedResult {
  readonly direction: 'down' | 'up';
  /** Bytes that arrived. */
  readonly bytes: number;
  /** Over this long, ms (first to last byte). */
  readonly ms: number;
  /** bytes / ms, in bytes per second; 0 when nothing arrived. */
  readonly bytesPerSec: number;
}

export interface SpeedTestInit {
  readonly direction: 'down' | 'up';
  /** How long to measure, ms. @default 2000 */
  readonly budgetMs?: number;
  /** The most to move, bytes. @default MAX_SPEED_TEST_BYTES */
  readonly maxBytes?: number;
  readonly signal?: AbortSignal;
}

/** After the budget, how long the server's answer (upload) or its end (download) may take, ms. */
const GRACE_MS = 5000;

const result = (direction: 'down' | 'up', bytes: number, ms: number): SpeedResult => ({ direction, bytes, ms, bytesPerSec: bytes > 0 && ms > 0 ? (bytes * 1000) / ms : 0 });

/** Measures one direction of `session`. Rejects with NotOfferedError, TimeoutError, or the stream's error. */
export function speedTest(session: Session, init: SpeedTestInit): Promise<SpeedResult> {
  const budgetMs = init.budgetMs ?? 2000;
  const max = Math.min(init.maxBytes ?? MAX_SPEED_TEST_BYTES, MAX_SPEED_TEST_BYTES);
  const s = session.openStream(encodeOpen({ kind: 'speed', direction: init.direction, bytes: max }));
  return new Promise<SpeedResult>((resolve, reject) => {
    let settled = false;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = (err: Error | undefined, r?: SpeedResult): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      init.signal?.removeEventListener('abort', onAbort);
      if (!s.destroyed && (err !== undefined || init.direction === 'down')) s.reset(ResetCode.cancel);
      if (err !== undefined) reject(err);
      else resolve(r as SpeedResult);
    };
    const onAbort = (): void => finish(init.signal?.reason instanceof Error ? init.signal.reason : new TimeoutError('speed test aborted'));
    if (init.signal?.aborted) return onAbort();
    init.signal?.addEventListener('abort', onAbort, { once: true });
    s.on('error', (err: Error) => finish(err instanceof StreamResetError && err.resetCode === ResetCode.noHandler ? new NotOfferedError('speed tests') : err));
    timers.push(setTimeout(() => finish(new TimeoutError(`speed test ${init.direction}: no answer within ${(budgetMs + GRACE_MS) / 1000} s`)), budgetMs + GRACE_MS));

    if (init.direction === 'down') {
      let got = 0;
      let first = 0;
      let last = 0;
      s.on('data', (d: Buffer) => {
        last = performance.now();
        if (got === 0) {
          first = last;
          timers.push(setTimeout(() => finish(undefined, result('down', got, last - first)), budgetMs));
        }
        got += d.length;
      });
      s.once('end', () => finish(undefined, result('down', got, last - first)));
      return;
    }

    const reply: Buffer[] = [];
    s.on('data', (d: Buffer) => reply.push(d));
    s.once('end', () => {
      const r = Buffer.concat(reply);
      if (r.length !== 8) return finish(new Error(`speed test up: an answer of ${r.length} bytes (8 expected)`));
      finish(undefined, result('up', r.readUInt32BE(0), r.readUInt32BE(4)));
    });
    writeZeros(s, max);
    // The writes wait for 'drain' when the window is full: the budget's end ends the stream, and the writing with it.
    timers.push(setTimeout(() => {
      if (!s.destroyed && !s.writableEnded) s.end();
    }, budgetMs));
  });
}
