/**
 * Session-level credit (flow control across all streams) and the WINDOW
 * frames that advertise credit, per stream and per session.
 *
 * Session credit bounds what is in flight towards us: it is returned as soon
 * as DATA lands in a stream (or is dropped), not when the reader takes it,
 * so a paused reader holds none. What streams hold unread is bounded by
 * their own windows instead: beyond the initial window, those share the
 * budget of sessionWindow (`excess`, see windowCap).
 */
import { ProtocolError } from '../core/errors.js';
import { WINDOW_SIZE, writeWindow } from './frames.js';
import type { PolyStream } from './stream.js';

export class SessionCredit {
  /** Send side: what the peer lets us have sent in total, and what we sent. */
  private sendLimit: number;
  private sent = 0;
  /** Receive side: DATA bytes received, returned, and the limit we advertised. */
  private recv = 0;
  private released = 0;
  private recvLimit: number;
  /** Sum over streams of their outstanding credit beyond the initial window (PolyStream.creditExcess). */
  private excess = 0;
  /** WINDOW frames to send: 0 for the session, else stream ids. */
  private readonly windowQueue = new Set<number>();

  constructor(
    private readonly sessionWindow: number,
    private readonly initialWindow: number,
    private readonly maxStreamWindow: number,
    peerSessionWindow: number,
  ) {
    this.sendLimit = peerSessionWindow;
    this.recvLimit = sessionWindow;
  }

  // ── send side ──

  /** Bytes of DATA the session may still send. */
  get sendRoom(): number {
    return this.sendLimit - this.sent;
  }

  onSent(n: number): void {
    this.sent += n;
  }

  /** A session WINDOW from the peer (only a raise counts). */
  onPeerWindow(max: number): void {
    if (max > this.sendLimit) this.sendLimit = max;
  }

  // ── receive side ──

  /** DATA of `n` bytes arrived. Throws when the peer overran the session window. */
  onReceived(n: number): void {
    this.recv += n;
    if (this.recv > this.recvLimit) throw new ProtocolError('peer exceeded the session flow-control window');
  }

  /** Returns session credit for `n` bytes that arrived (into a stream's buffer, or dropped). */
  release(n: number): void {
    this.released += n;
    if (this.released + this.sessionWindow - this.recvLimit >= this.sessionWindow / 4) {
      this.recvLimit = this.released + this.sessionWindow;
      this.windowQueue.add(0);
    }
  }

  /** A stream consumed bytes or raised its limit; true when a WINDOW frame for it is now due. */
  consumed(s: PolyStream): boolean {
    // Session credit went back on receipt; here only the stream's own window is accounted.
    const excess = Math.max(0, s.advertisedLimit - s.consumedBytes - this.initialWindow);
    this.excess += excess - s.creditExcess;
    s.creditExcess = excess;
    // Only a raised limit is news to the peer.
    if (s.advertisedLimit > s.windowSent) {
      this.windowQueue.add(s.id);
      return true;
    }
    return false;
  }

  /**
   * A stream's fair share: beyond the initial window every stream has, it
   * may take half of the budget (sessionWindow) that the other streams'
   * windows leave free. k streams that keep up settle at sessionWindow/(k+1)
   * each, a newcomer always finds a part free, and all windows together stay
   * within sessionWindow + streams × initial window. A stream whose reader
   * stalls keeps what it was granted (credit cannot be taken back) but gets
   * no more, and gives it back as it reads.
   */
  windowCap(s: PolyStream, wanted: number): number {
    const free = Math.max(0, this.sessionWindow - (this.excess - s.creditExcess));
    return Math.max(this.initialWindow, Math.min(wanted, this.maxStreamWindow, this.initialWindow + Math.floor(free / 2)));
  }

  /** A stream is gone: its window is no longer counted nor advertised. */
  forget(s: PolyStream): void {
    this.windowQueue.delete(s.id);
    this.excess -= s.creditExcess;
    s.creditExcess = 0;
  }

  /** WINDOW frames are idempotent: restate the session's and every stream's (a new path, or one that may have lost them). */
  restate(streams: Iterable<number>): void {
    this.windowQueue.add(0);
    for (const id of streams) this.windowQueue.add(id);
  }

  /** Writes the due WINDOW frames into `buf` from `off` (as many as fit); returns the end. */
  writeWindows(buf: Buffer, off: number, streams: ReadonlyMap<number, PolyStream>): number {
    const cap = buf.length;
    for (const sid of this.windowQueue) {
      if (cap - off < WINDOW_SIZE) break;
      this.windowQueue.delete(sid);
      if (sid === 0) off = writeWindow(buf, off, 0, this.recvLimit);
      else {
        const s = streams.get(sid);
        if (s) {
          off = writeWindow(buf, off, sid, s.advertisedLimit);
          s.windowSent = s.advertisedLimit;
        }
      }
    }
    return off;
  }
}
