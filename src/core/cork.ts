/**
 * Batches a pipe's writes per tick. A session record carries up to four
 * stream frames, delivered as four synchronous pushes; piped as is, each is
 * its own write syscall on the destination socket. Corking the destination
 * on the first chunk of a tick and uncorking on the next tick sends them in
 * one writev. Register before `src.pipe(dst)` so the cork precedes the write.
 */
import type { Readable, Writable } from 'node:stream';

export function corkPerTick(src: Readable, dst: Writable): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    if (!dst.destroyed) dst.uncork();
  };
  src.on('data', () => {
    if (corked || dst.destroyed || dst.writableEnded) return;
    corked = true;
    dst.cork();
    process.nextTick(uncork);
  });
}
