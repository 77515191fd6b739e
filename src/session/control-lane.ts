/**
 * The control lane: ping ids (shared by liveness, probes and ping()), the
 * waiters of ping(), GOAWAY both ways and the CLOSE record. PINGs and PONGs
 * themselves travel per path (multipath/path.ts), so an RTT is a path's.
 */
import type { Clock } from '../core/clock.js';
import { ClosedError, toError } from '../core/errors.js';
import { RECORD_DATA } from '../secure/record.js';
import { CLOSE_HEADER, GOAWAY_SIZE, writeClose, writeGoaway } from './frames.js';
import type { SessionPath } from './multipath/path.js';

/** The longest CLOSE reason sent (its length is one byte on the wire). */
const MAX_REASON = 200;

export class ControlLane {
  private pingSeq = 0;
  private readonly waiters = new Map<number, { at: number; resolve: (rtt: number) => void }>();
  private goawayToSend: number | undefined;
  /** The peer sent GOAWAY: open no new streams. */
  peerGoaway = false;

  constructor(private readonly clock: Clock) {}

  nextPingId(): number {
    this.pingSeq = (this.pingSeq + 1) >>> 0;
    return this.pingSeq;
  }

  /** Measures one round trip on `p` (none writable: rejects); the caller flushes. */
  ping(p: SessionPath | undefined, signal: AbortSignal | undefined): Promise<number> {
    const id = this.nextPingId();
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { at: this.clock.now(), resolve });
      signal?.addEventListener('abort', () => {
        this.waiters.delete(id);
        reject(toError(signal.reason));
      }, { once: true });
      if (!p) {
        this.waiters.delete(id);
        reject(new ClosedError('session path'));
        return;
      }
      p.requestPing(id);
    });
  }

  /** A PONG that may answer a ping() on `p`. */
  onPong(p: SessionPath, id: number, now: number): void {
    const w = this.waiters.get(id);
    if (!w) return;
    this.waiters.delete(id);
    const sample = now - w.at;
    p.answerOther(sample);
    w.resolve(sample);
  }

  goaway(code: number): void {
    this.goawayToSend = code;
  }

  /** Writes a pending GOAWAY into `buf` at `off` if it fits; returns the end. */
  writeGoaway(buf: Buffer, off: number): number {
    if (this.goawayToSend !== undefined && buf.length - off >= GOAWAY_SIZE) {
      off = writeGoaway(buf, off, this.goawayToSend);
      this.goawayToSend = undefined;
    }
    return off;
  }

  /** Writes the last record of a session, a CLOSE frame (reason cut to 200 bytes), on every path and closes them. */
  sendClose(paths: Iterable<SessionPath>, code: number, reason: string): void {
    const why = Buffer.from(reason);
    const buf = Buffer.allocUnsafe(1 + CLOSE_HEADER + MAX_REASON);
    buf[0] = RECORD_DATA;
    const len = writeClose(buf, 1, code, why.length > MAX_REASON ? why.subarray(0, MAX_REASON) : why);
    // Written on every path even when a carrier wants a drain: it is the last record.
    for (const path of paths) {
      path.channel.write(buf, len);
      path.channel.close();
    }
  }

  clear(): void {
    this.waiters.clear();
  }
}
