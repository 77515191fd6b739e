/**
 * A session's configuration, its close codes and the public shapes around it
 * (kept apart from session.ts so the facade stays about behaviour).
 */
import { PolytunError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { PathStats } from './multipath/path.js';
import { MAX_STREAMS, MIN_INITIAL_STREAM_WINDOW, SESSION_WINDOW, STREAM_WINDOW } from '../core/limits.js';

export type SessionState = 'open' | 'detached' | 'closing' | 'closed';

export interface SessionInit {
  role: 'client' | 'server';
  /** 16-byte session id (random; the resume handle). */
  id: Buffer;
  logger?: Logger;
  /** Time for the session and every component under it (tests pass a ManualClock). @default realClock */
  clock?: Clock;
  /**
   * Receive window of a stream whose reader keeps up. Every stream starts
   * with a smaller one, initialStreamWindow(): what a paused reader may hold.
   * @default 1 MiB
   */
  streamWindow?: number;
  /**
   * Receive window for the whole session: bytes in flight towards us. Also
   * the budget that stream windows beyond their initial one share (see
   * windowCap), so a session buffers at most sessionWindow plus
   * maxStreams × initialStreamWindow() unread bytes. @default 16 MiB
   */
  sessionWindow?: number;
  /** A stream's window grows up to this when its reader keeps up. @default sessionWindow / 2 */
  maxStreamWindow?: number;
  /** The peer's windows (from the handshake). @default same as ours */
  peerStreamWindow?: number;
  peerSessionWindow?: number;
  /** Concurrent streams the peer may open. @default 1024 */
  maxStreams?: number;
  /** Largest DATA payload per frame (capped so one frame fits a record). @default 65536: a bulk read leaves as one frame in one record */
  maxFramePayload?: number;
  /** Sent-but-unacknowledged bytes kept for resend. @default 16 MiB */
  maxUnacked?: number;
  /** Out-of-order frames held for reordering. @default 8192 */
  maxReorder?: number;
  /** Datagram bytes queued for sending before new ones are dropped. @default 1 MiB */
  maxDatagramQueue?: number;
  /** Write-side buffer per stream before write() returns false. @default 256 KiB */
  streamHighWaterMark?: number;
  /** @default 10000 */
  pingIntervalMs?: number;
  /** @default 5000 */
  pingTimeoutMs?: number;
  /** @default 3 */
  maxMissedPongs?: number;
  /** How long a detached session waits for a new path. @default 60000 */
  graceMs?: number;
  /** A joining path carries traffic after answering pings for this long. @default 0 */
  pathUpAfterMs?: number;
  /** Close the session (code CloseCode.idle) after this long with no stream and no datagram; 0 = never. @default 0 */
  idleTimeoutMs?: number;
}

/**
 * The window every new stream gets before its reader has shown it keeps up:
 * what the handshake advertises as the stream window. It is what a paused
 * reader may end up holding, so it is small enough that maxStreams of them
 * fit in the session window (16 KiB with the defaults), but never below 16
 * KiB nor above `streamWindow`.
 */
export function initialStreamWindow(opts: Pick<SessionInit, 'streamWindow' | 'sessionWindow' | 'maxStreams'> = {}): number {
  const stream = opts.streamWindow ?? STREAM_WINDOW;
  const session = opts.sessionWindow ?? SESSION_WINDOW;
  const streams = opts.maxStreams ?? MAX_STREAMS;
  return Math.min(stream, Math.max(MIN_INITIAL_STREAM_WINDOW, Math.floor(session / streams)));
}

/** Codes of a session CLOSE frame. A client renews after idle/shutdown, not after the others. */
export const CloseCode = {
  normal: 0,
  idle: 1,
  shutdown: 2,
  kicked: 3,
  quota: 4,
  expired: 5,
} as const;

/** The tunables of a session (what a server or client config sets). */
export type SessionOptions = Omit<SessionInit, 'role' | 'id' | 'logger' | 'clock' | 'peerStreamWindow' | 'peerSessionWindow'>;

export class SessionClosedError extends PolytunError {
  readonly closeCode: number;
  /** Which side closed it. */
  readonly by: 'local' | 'remote';
  constructor(code: number, reason: string, by: 'local' | 'remote') {
    super('ERR_SESSION_CLOSED', `session closed by ${by} (code ${code}${reason ? `: ${reason}` : ''})`);
    this.closeCode = code;
    this.by = by;
  }
}

export interface SessionStats {
  state: SessionState;
  streams: number;
  rttMs: number | undefined;
  bytesSent: number;
  bytesReceived: number;
  framesResent: number;
  attaches: number;
  unackedBytes: number;
  datagramsDropped: number;
  paths: PathStats[];
}
