/**
 * Waits until two ends of a session have stopped talking: their byte
 * counters stayed put for a few polls (longer than the session's
 * delayed-ACK timer). Tests that count
 * records or wire bytes call it instead of a fixed "let the handshake
 * settle" sleep, which a loaded machine can outrun.
 */
import type { Session } from '../../src/session/session.js';
import { waitSettled } from './eventually.js';

function wire(s: Session): number {
  let n = 0;
  for (const p of s.stats.paths) n += p.bytesSent + p.bytesReceived;
  return n;
}

export async function sessionsQuiet(a: Session, b: Session): Promise<void> {
  // The two ends' counters cannot be matched against each other (the
  // handshake's bytes count on one side only), so "quiet" is: no byte moved
  // either way for 4 polls 50 ms apart, far longer than the delayed-ACK timer.
  await waitSettled(() => wire(a) + wire(b), 'the session pair to go quiet', { intervalMs: 50, stableChecks: 4 });
}
