/**
 * Relaying a local connection and a proxy stream both ways.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ClosedError } from '../core/errors.js';
import { abortSocket, relay } from '../core/relay.js';

/** Options of {@link splice}. */
export interface SpliceInit {
  /** Pipe only a → b until `startBtoA()` (a 0-RTT connect whose status is pending). @default false */
  deferBtoA?: boolean;
  /** Called once: when both directions finished (no error), or on the first error or early close. */
  onDone?: (err: Error | undefined) => void;
}

/** Control over a running {@link splice}. */
export interface Splice {
  /** Starts the b → a direction (after `deferBtoA`). Idempotent. */
  startBtoA(): void;
  /** Tears both sides down now. Idempotent. */
  destroy(err?: Error): void;
}

/**
 * Relays bytes both ways between two duplexes with backpressure (see
 * core/relay.ts) and passes half-closes through: 'end' on one side ends the other's writable.
 * Once both directions have finished, or either side errors or closes
 * early, both are destroyed and `onDone` runs once. On an error or an early
 * close, a socket side is reset (RST), so its application sees the transfer
 * fail instead of a clean end after what its kernel still buffered. Sockets
 * given here must allow half-open connections, or their automatic end()
 * races the relay.
 */
export function splice(a: Duplex, b: Duplex, init: SpliceInit = {}): Splice {
  let done = false;
  let finished = 0;
  let bToA = false;
  const stops: (() => void)[] = [];
  const settle = (err?: Error): void => {
    if (done) return;
    done = true;
    for (const stop of stops) stop();
    for (const s of [a, b]) {
      if (err !== undefined && s instanceof Socket) abortSocket(s);
      else s.destroy();
    }
    init.onDone?.(err);
  };
  const onFinish = (): void => {
    if (++finished === 2) settle();
  };
  const watch = (s: Duplex): void => {
    s.on('error', settle);
    s.once('finish', onFinish);
    s.once('close', () => {
      // A clean close of one side leaves the other to finish flushing.
      if (!(s.writableFinished && s.readableEnded)) settle(s.errored ?? new ClosedError('relayed connection (closed early)'));
    });
  };
  watch(a);
  watch(b);
  stops.push(relay(a, b));
  const startBtoA = (): void => {
    if (bToA || done) return;
    bToA = true;
    stops.push(relay(b, a));
  };
  if (!init.deferBtoA) startBtoA();
  return { startBtoA, destroy: settle };
}

// ───────────────────────────── local listeners ─────────────────────────────
