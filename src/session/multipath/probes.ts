/**
 * Bonding probes of one path. Cumulative ACKs cannot tell what one path
 * delivered: a frame is acknowledged only once every earlier frame has
 * arrived, on whichever path. So a fast path's acknowledged in-flight bytes
 * include the time its frames wait in the peer's reorder buffer for the slow
 * path, and the slow path's ack-based rate comes out as its cap divided by
 * the fast path's queue delay: the two paths' estimates hold each other down
 * (the bonding lab measured 0.74–0.93 of the links' sum that way). A probe is
 * a PING written after a path's data; the peer answers it on the same path
 * once it has read every byte before it. Its PONG therefore measures this
 * path alone: bytes delivered (`unprobed` = sent but not yet covered by an
 * answered probe), delivery rate and RTT, the way a TCP subflow's own ACKs
 * do for MPTCP.
 *
 * The protocol, as SessionPath drives it:
 * ```
 *   due() ──▶ request(id)  (the path's pingToSend)
 *         ──▶ settle()     (after the flush wrote its pings: the probe left after bytesOut bytes)
 *         ──▶ answer(id) + record()  (its PONG came back on this path)
 * ```
 */

/** Probes go out at most this often per path (and at most every srtt/8). */
const PROBE_INTERVAL_MS = 10;
/** Unanswered probes kept per path (older ones are dropped). */
const MAX_PROBES = 32;
/** A delivery-rate sample spans at least this long: shorter ones mostly measure the jitter of the answers. */
const RATE_SAMPLE_MS = 100;
/** The probed rate is the largest sample of this long (a path briefly short of data keeps its rate). */
const RATE_WINDOW_MS = 1000;

/** A probe PING: when it left and how many channel bytes were written before it. */
export interface Probe {
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

export class PathProbes {
  private readonly probes: Probe[] = [];
  /** A probe requested but whose PING has not been seen written yet. */
  private pending: number | undefined;
  private lastProbeAt = -Infinity;
  private lastProbeSent = -1;
  /** channel.bytesOut before the newest answered probe: the peer has read all of it. */
  probedSent: number;
  private readonly ratePoints: RatePoint[] = [];
  private readonly rateSamples: { at: number; rate: number }[] = [];
  /** Delivery rate measured by probes, in bytes per ms (0 until measured). */
  rate = 0;

  constructor(bytesOut: number) {
    this.probedSent = bytesOut;
  }

  /** Whether a probe should go out: sequenced data is in flight and was sent since the last probe. */
  due(now: number, inflight: number, bytesOut: number, srtt: number | undefined): boolean {
    if (this.pending !== undefined || inflight <= 0 || bytesOut === this.lastProbeSent || this.probes.length >= MAX_PROBES) return false;
    return now - this.lastProbeAt >= Math.max(PROBE_INTERVAL_MS, (srtt ?? 0) / 8);
  }

  request(id: number): void {
    this.pending = id;
  }

  /**
   * Before a flush writes any data (after its pings): a pending probe whose
   * PING has been written (`pingToSend` no longer it) left after exactly
   * `bytesOut` bytes; one replaced by another ping (a liveness one) is forgotten.
   */
  settle(now: number, pingToSend: number | undefined, bytesOut: number): void {
    const id = this.pending;
    if (id === undefined || pingToSend === id) return;
    this.pending = undefined;
    if (pingToSend !== undefined) return;
    this.probes.push({ id, at: now, sent: bytesOut });
    this.lastProbeAt = now;
    this.lastProbeSent = bytesOut;
  }

  /** The probe `id` was answered: it (and older ones, lost with a replaced ping) is done. */
  answer(id: number): Probe | undefined {
    const i = this.probes.findIndex((p) => p.id === id);
    if (i < 0) return undefined;
    const pr = this.probes[i] as Probe;
    // Answers come back in order on one path: older probes were lost with a replaced ping.
    this.probes.splice(0, i + 1);
    return pr;
  }

  /** Accounts an answered probe (after the path took its RTT sample): delivered bytes and rate. */
  record(pr: Probe, now: number, minRtt: number | undefined): void {
    if (pr.sent > this.probedSent) this.probedSent = pr.sent;
    // Rate samples span at least RATE_SAMPLE_MS and, as in BBR, the longer
    // of the send and the answer intervals, so answers bunched by a busy
    // peer do not inflate them.
    const pts = this.ratePoints;
    pts.push({ sentAt: pr.at, answeredAt: now, sent: pr.sent });
    const span = Math.max(RATE_SAMPLE_MS, minRtt ?? 0);
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
      this.rate = best;
    }
  }
}
