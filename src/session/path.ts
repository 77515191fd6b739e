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
 *
 * Probes (bonding). Cumulative ACKs cannot tell what one path delivered: a
 * frame is acknowledged only once every earlier frame has arrived, on
 * whichever path. So a fast path's acknowledged in-flight bytes include the
 * time its frames wait in the peer's reorder buffer for the slow path, and
 * the slow path's ack-based rate comes out as its cap divided by the fast
 * path's queue delay: the two paths' estimates hold each other down (the
 * bonding lab measured 0.74–0.93 of the links' sum that way). A probe is a
 * PING written after a path's data; the peer answers it on the same path
 * once it has read every byte before it. Its PONG therefore measures this
 * path alone: bytes delivered (`unprobed` = sent but not yet covered by an
 * answered probe), delivery rate and RTT, the way a TCP subflow's own ACKs
 * do for MPTCP. With probe data the cap is two rate × (min RTT + 50 ms)
 * products of the path's own loop (BBR's gain of 2; the 50 ms cover the two
 * ends' event loops and the probe spacing, which the probe loop contains).
 */
import type { RecordChannel } from '../secure/record-channel.js';

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
  /** Record protection: 'aead', or 'tls-bound' (inside TLS proven end to end; see secure/handshake.ts). */
  protection: 'aead' | 'tls-bound';
}

const MIN_CAP = 256 * 1024;
/** Probes go out at most this often per path (and at most every srtt/8). */
const PROBE_INTERVAL_MS = 10;
/** Unanswered probes kept per path (older ones are dropped). */
const MAX_PROBES = 32;
/** A delivery-rate sample spans at least this long: shorter ones mostly measure the jitter of the answers. */
const RATE_SAMPLE_MS = 100;
/** The probed rate is the largest sample of this long (a path briefly short of data keeps its rate). */
const RATE_WINDOW_MS = 1000;
const CAP_GAIN = 2;
const CAP_SLACK_MS = 50;

/** A probe PING: when it left and how many channel bytes were written before it. */
interface Probe {
  id: number;
  at: number;
  sent: number;
}

/** An answered probe, as a delivery-rate sample point. */
interface RatePoint {
  sentAt: number;
  answeredAt: number;
  sent: number;
}

export class SessionPath {
  readonly id: number;
  readonly channel: RecordChannel;
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
  // probes (see the file comment)
  private readonly probes: Probe[] = [];
  private pendingProbe: number | undefined;
  private lastProbeAt = -Infinity;
  private lastProbeSent = -1;
  /** channel.bytesOut before the newest answered probe: the peer has read all of it. */
  private probedSent: number;
  private readonly ratePoints: RatePoint[] = [];
  private readonly rateSamples: { at: number; rate: number }[] = [];
  /** Delivery rate measured by probes, in bytes per ms (0 until measured). */
  probeRate = 0;

  constructor(id: number, channel: RecordChannel, opts: PathOptions, up: boolean) {
    this.id = id;
    this.channel = channel;
    this.role = opts.role ?? 'primary';
    this.weight = opts.weight && opts.weight > 0 ? opts.weight : 1;
    this.label = opts.label ?? channel.info.remote;
    this.up = up;
    this.probedSent = channel.bytesOut;
  }

  /** Milliseconds until `bytes` more would be delivered on this path. */
  expectedDelivery(bytes: number): number {
    // minRtt, not srtt: srtt already contains the queue that inflight/rate
    // accounts for, and counting it twice drives traffic off the fast path.
    const rtt = this.minRtt ?? this.srtt ?? 100;
    if (this.probeRate > 0) {
      // Unprobed bytes are the queue plus about one RTT of bytes in flight.
      const queue = Math.max(0, this.unprobed - this.probeRate * rtt);
      return (rtt / 2 + (queue + bytes) / this.probeRate) / this.weight;
    }
    const rate = this.rate > 0 ? this.rate : 1000; // 1 MB/s until measured
    return (rtt / 2 + (this.inflight + this.channel.queuedBytes + bytes) / rate) / this.weight;
  }

  /**
   * Bytes this path may hold when several paths share the load (compared
   * with {@link load}). Probed: CAP_GAIN rate × (min RTT + CAP_SLACK_MS)
   * products of the path's own loop. Before the first probe rate: four
   * ack-based rate × RTT products, where the RTT is the slowest usable
   * path's minimum (`feedbackRttMs`, set by the session), because
   * acknowledgements wait for the slowest path. Never below 256 KiB.
   */
  get cap(): number {
    if (this.probeRate > 0) return Math.max(MIN_CAP, CAP_GAIN * this.probeRate * ((this.minRtt ?? this.feedbackRttMs) + CAP_SLACK_MS));
    return Math.max(MIN_CAP, 4 * this.rate * (this.feedbackRttMs + 10));
  }

  /** What the cap limits: bytes not yet known delivered on this path (probed), else unacknowledged. */
  get load(): number {
    return this.probeRate > 0 ? this.unprobed : this.inflight;
  }

  /** See {@link cap}. */
  feedbackRttMs = 100;

  /** Channel bytes sent on this path that no answered probe covers yet. */
  get unprobed(): number {
    return this.channel.bytesOut - this.probedSent;
  }

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

  /** Whether a probe should go out: sequenced data is in flight and was sent since the last probe. */
  probeDue(now: number): boolean {
    if (this.pendingProbe !== undefined || this.inflight <= 0 || this.channel.bytesOut === this.lastProbeSent || this.probes.length >= MAX_PROBES) return false;
    return now - this.lastProbeAt >= Math.max(PROBE_INTERVAL_MS, (this.srtt ?? 0) / 8);
  }

  /** The session is sending a probe PING with this id (as pingToSend); returns it. */
  requestProbe(id: number): number {
    this.pendingProbe = id;
    return id;
  }

  /**
   * To be called before a flush writes any data (after its pings): a
   * pending probe whose PING has been written (pingToSend cleared) left
   * after exactly the bytes sent so far; one replaced by another ping
   * (a liveness one) is forgotten.
   */
  settleProbe(now: number): void {
    const id = this.pendingProbe;
    if (id === undefined || this.pingToSend === id) return;
    this.pendingProbe = undefined;
    if (this.pingToSend !== undefined) return;
    this.probes.push({ id, at: now, sent: this.channel.bytesOut });
    this.lastProbeAt = now;
    this.lastProbeSent = this.channel.bytesOut;
  }

  /** A PONG arrived on this path; false when `id` is not one of its probes. */
  onProbePong(id: number, now: number): boolean {
    const i = this.probes.findIndex((p) => p.id === id);
    if (i < 0) return false;
    const pr = this.probes[i] as Probe;
    // Answers come back in order on one path: older probes were lost with a replaced ping.
    this.probes.splice(0, i + 1);
    this.onRtt(now - pr.at);
    if (pr.sent > this.probedSent) this.probedSent = pr.sent;
    // Rate samples span at least RATE_SAMPLE_MS and, as in BBR, the longer
    // of the send and the answer intervals, so answers bunched by a busy
    // peer do not inflate them.
    const pts = this.ratePoints;
    pts.push({ sentAt: pr.at, answeredAt: now, sent: pr.sent });
    const span = Math.max(RATE_SAMPLE_MS, this.minRtt ?? 0);
    // From the newest point at least `span` old, but none older than the
    // rate window (that span would contain idle time).
    while (pts.length > 1 && (now - (pts[0] as RatePoint).answeredAt > RATE_WINDOW_MS || (pts.length > 2 && now - (pts[1] as RatePoint).answeredAt >= span))) pts.shift();
    const from = pts[0] as RatePoint;
    if (pts.length > 1 && now - from.answeredAt >= span) {
      const rate = (pr.sent - from.sent) / Math.max(now - from.answeredAt, pr.at - from.sentAt);
      const samples = this.rateSamples;
      samples.push({ at: now, rate });
      while (samples.length > 0 && now - (samples[0] as { at: number }).at > RATE_WINDOW_MS) samples.shift();
      let best = 0;
      for (const s of samples) if (s.rate > best) best = s.rate;
      this.probeRate = best;
    }
    return true;
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
      rateBytesPerSec: Math.round((this.probeRate > 0 ? this.probeRate : this.rate) * 1000),
      bytesSent: this.channel.bytesOut,
      bytesReceived: this.channel.bytesIn,
      pingsMissed: this.missed,
      protection: this.channel.info.protection ?? 'aead',
    };
  }
}
