/**
 * Waits until two ends of a session have stopped talking: every byte each
 * side sent has arrived at the other, and the counters stayed put for a few
 * polls (longer than the session's delayed-ACK timer). Tests that count
 * records or wire bytes call it instead of a fixed "let the handshake
 * settle" sleep, which a loaded machine can outrun.
 */
import type { Session } from '../../src/session/session.js';
import { waitSettled } from './eventually.js';

function wire(s: Session): { sent: number; received: number } {
  let sent = 0;
  let received = 0;
  for (const p of s.stats.paths) {
    sent += p.bytesSent;
    received += p.bytesReceived;
  }
  return { sent, received };
}

export async function sessionsQuiet(a: Session, b: Session): Promise<void> {
  await waitSettled(() => {
    const x = wire(a);
    const y = wire(b);
    // NaN (never equal to itself) while anything is in flight: only a drained, unchanging pair settles.
    return x.sent === y.received && y.sent === x.received ? x.sent + y.sent : Number.NaN;
  }, 'the session pair to go quiet');
}
