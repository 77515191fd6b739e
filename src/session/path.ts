/**
 * One path of a session: a secure channel plus what the scheduler and the
 * link tracker know about it. A session sends each record on the path with
 * the earliest expected delivery (RTT/2 + bytes ahead of it / delivery rate),
 * so a slow or lossy path only gets what it can deliver in time.
 *
 * Tracker states (hysteresis, like omr-tracker):
 * ```
 *   joining ──healthy for upAfterMs──▶ up ──downMisses pongs missed──▶ (closed)
 *      └──────────────── downMisses pongs missed ─────────────────────▶ (closed)
 * ```
 * A closed path's unacknowledged frames are sent again on the others.
 */
import type { SecureChannel } from '../secure/channel.js';

export type PathRole = 'primary' | 'backup';

export interface PathOptions {
  /** @default 'primary' */
  role?: PathRole;
  /** Preference among equals: expected delivery is divided by it. @default 1 */
  weight?: number;
  /** A name for logs and status (e.g. the local interface). */
  label?: string;
}

export interface PathStats {
  id: number;
  label: string;
  role: PathRole;
  state: 'joining' | 'up';
  remote: string;
  rttMs: number | undefined;
  inflightBytes: number;
  rateBytesPerSec: number;
  bytesSent: number;
  bytesReceived: number;
  pingsMissed: number;
}

const MIN_CAP = 256 * 1024;

export class SessionPath {
  readonly id: number;
  readonly channel: SecureChannel;
  readonly role: PathRole;
  readonly weight: number;
  readonly label: string;
  /** Carries new frames only when up. */
  up: boolean;
  /** Missed a pong while others were up: no new data until it answers. */
  suspended = false;
  /** Lowest RTT seen: the path's RTT without our own queue in it. */
  minRtt: number | undefined;
  healthySince: number | undefined;
  srtt: number | undefined;
  /** Bytes of sequenced frames last sent on this path and not yet acknowledged. */
  inflight = 0;
  /** Delivery rate estimate in bytes per ms (a slowly decaying maximum). */
  rate = 0;
  private delivered = 0;
  private sampleAt = performance.now();
  private sampleDelivered = 0;
  // control lane, per path (a pong answers on the path its ping came on)
  pongs: number[] = [];
  pingToSend: number | undefined;
  pingOutstanding: { id: number; at: number } | undefined;
  missed = 0;
  pingTimer: NodeJS.Timeout | undefined;
  pingDeadline: NodeJS.Timeout | undefined;
  bytesSent = 0;

  constructor(id: number, channel: SecureChannel, opts: PathOptions, up: boolean) {
    this.id = id;
    this.channel = channel;
    this.role = opts.role ?? 'primary';
    this.weight = opts.weight && opts.weight > 0 ? opts.weight : 1;
    this.label = opts.label ?? channel.info.remote;
    this.up = up;
  }

  /** Milliseconds until `bytes` more would be delivered on this path. */
  expectedDelivery(bytes: number): number {
    // minRtt, not srtt: srtt already contains the queue that inflight/rate
    // accounts for, and counting it twice drives traffic off the fast path.
    const rtt = this.minRtt ?? this.srtt ?? 100;
    const rate = this.rate > 0 ? this.rate : 1000; // 1 MB/s until measured
    return (rtt / 2 + (this.inflight + this.channel.queuedBytes + bytes) / rate) / this.weight;
  }

  /**
   * In-flight bytes allowed when several paths share the load: four delivery-
   * rate × RTT products, never below 256 KiB. The RTT is the slowest usable
   * path's minimum (`feedbackRttMs`, set by the session): acknowledgements
   * may come back on any path, so a fast path's feedback loop is as long as
   * the slowest one's, and a cap on its own RTT would keep its rate estimate
   * from ever growing. Minimum RTTs, not srtt: srtt contains our own queue.
   */
  get cap(): number {
    return Math.max(MIN_CAP, 4 * this.rate * (this.feedbackRttMs + 10));
  }

  /** See {@link cap}. */
  feedbackRttMs = 100;

  /** Bytes sent on this path that the peer has acknowledged (proof of life). */
  get deliveredBytes(): number {
    return this.delivered;
  }

  onAcked(bytes: number): void {
    this.inflight -= bytes;
    this.delivered += bytes;
    const now = performance.now();
    const dt = now - this.sampleAt;
    if (dt >= Math.max(20, this.srtt ?? 20)) {
      const sample = (this.delivered - this.sampleDelivered) / dt;
      this.rate = Math.max(sample, this.rate * 0.9);
      this.sampleAt = now;
      this.sampleDelivered = this.delivered;
    }
  }

  onRtt(sample: number): void {
    if (this.minRtt === undefined || sample < this.minRtt) this.minRtt = sample;
    this.srtt = this.srtt === undefined ? sample : this.srtt * 0.875 + sample * 0.125;
  }

  stopTimers(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.pingDeadline) clearTimeout(this.pingDeadline);
    this.pingTimer = this.pingDeadline = undefined;
  }

  stats(): PathStats {
    return {
      id: this.id,
      label: this.label,
      role: this.role,
      state: this.up ? 'up' : 'joining',
      remote: this.channel.info.remote,
      rttMs: this.srtt,
      inflightBytes: this.inflight,
      rateBytesPerSec: Math.round(this.rate * 1000),
      bytesSent: this.channel.bytesOut,
      bytesReceived: this.channel.bytesIn,
      pingsMissed: this.missed,
    };
  }
}
