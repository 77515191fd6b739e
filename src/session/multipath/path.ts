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
 * Probes (bonding, probes.ts) measure this path alone. With probe data the
 * cap is two rate × (min RTT + 50 ms) products of the path's own loop (BBR's
 * gain of 2; the 50 ms cover the two ends' event loops and the probe
 * spacing, which the probe loop contains).
 *
 * Every field the session and its components change goes through a method
 * here: the scheduler (scheduler.ts) reads, liveness (liveness.ts) drives the
 * ping state, the reliability layer accounts in-flight bytes.
 */
import { realClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { RecordChannel, TransportStats } from '../../secure/record-channel.js';
import { F_PING, F_PONG, PING_SIZE, writePingPong } from '../frames.js';
import { PathProbes } from './probes.js';

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
  /** This end's address of the path (host:port). */
  local: string;
  rttMs: number | undefined;
  inflightBytes: number;
  rateBytesPerSec: number;
  bytesSent: number;
  bytesReceived: number;
  pingsMissed: number;
  /** Record protection: 'aead', or 'tls-bound' (inside TLS proven end to end; see secure/handshake.ts). */
  protection: 'aead' | 'tls-bound';
  /** Carrier name (tcp, tls, ws, wss, udp…). */
  carrier: string;
  /** The channel's own transport figures (udp paths). */
  transport?: TransportStats;
}

const MIN_CAP = 256 * 1024;
const CAP_GAIN = 2;
const CAP_SLACK_MS = 50;
/** PONGs queued per path before more PINGs are ignored (a peer cannot make us buffer). */
const MAX_PONGS = 64;

export class SessionPath {
  readonly id: number;
  readonly channel: RecordChannel;
  readonly role: PathRole;
  readonly weight: number;
  readonly label: string;
  private _up: boolean;
  private _suspended = false;
  private _minRtt: number | undefined;
  private _srtt: number | undefined;
  private _healthySince: number | undefined;
  private _inflight = 0;
  /** Ack-based delivery rate estimate in bytes per ms (a slowly decaying maximum). */
  private ackRate = 0;
  private delivered = 0;
  private sampleAt: number;
  private sampleDelivered = 0;
  // control lane, per path (a pong answers on the path its ping came on)
  private readonly pongs: number[] = [];
  private _pingToSend: number | undefined;
  // liveness (driven by liveness.ts)
  private outstanding: { id: number; at: number } | undefined;
  private _missed = 0;
  private pingTimer: TimerHandle | undefined;
  private pingDeadline: TimerHandle | undefined;
  private readonly probes: PathProbes;
  /** See {@link cap}: the slowest usable path's minimum RTT, set by the scheduler. */
  private feedbackRttMs = 100;

  constructor(id: number, channel: RecordChannel, opts: PathOptions, up: boolean, private readonly clock: Clock = realClock) {
    this.id = id;
    this.channel = channel;
    this.role = opts.role ?? 'primary';
    this.weight = opts.weight && opts.weight > 0 ? opts.weight : 1;
    this.label = opts.label ?? channel.info.remote;
    this._up = up;
    this.probes = new PathProbes(channel.bytesOut);
    this.sampleAt = clock.now();
  }

  // ── state ──

  /** Carries new frames only when up. */
  get up(): boolean {
    return this._up;
  }

  /** Missed a pong while others were up: no new data until it answers. */
  get suspended(): boolean {
    return this._suspended;
  }

  /** Healthy (answering pings) since then, if it is. */
  get healthySince(): number | undefined {
    return this._healthySince;
  }

  /** Joined as up (alone, or no warm-up configured), or proved healthy for long enough. */
  markUp(now: number): void {
    this._up = true;
    this._healthySince ??= now;
  }

  /** A pong missed while other paths are up: no new data until it answers. */
  suspend(): void {
    this._up = false;
    this._suspended = true;
  }

  /** A suspended path is taken back (it answered, or it is the best left). */
  unsuspend(): void {
    this._suspended = false;
    this._up = true;
  }

  /** Lowest RTT seen: the path's RTT without our own queue in it. */
  get minRtt(): number | undefined {
    return this._minRtt;
  }

  get srtt(): number | undefined {
    return this._srtt;
  }

  /** Bytes of sequenced frames last sent on this path and not yet acknowledged. */
  get inflight(): number {
    return this._inflight;
  }

  /** Ack-based delivery rate in bytes per ms. */
  get rate(): number {
    return this.ackRate;
  }

  /** Delivery rate measured by probes, in bytes per ms (0 until measured). */
  get probeRate(): number {
    return this.probes.rate;
  }

  addInflight(bytes: number): void {
    this._inflight += bytes;
  }

  /** Frames it held go on another path (the receiver drops duplicates). */
  dropInflight(bytes: number): void {
    this._inflight -= bytes;
  }

  /** Milliseconds until `bytes` more would be delivered on this path. */
  expectedDelivery(bytes: number): number {
    // minRtt, not srtt: srtt already contains the queue that inflight/rate
    // accounts for, and counting it twice drives traffic off the fast path.
    const rtt = this._minRtt ?? this._srtt ?? 100;
    const probeRate = this.probes.rate;
    if (probeRate > 0) {
      // Unprobed bytes are the queue plus about one RTT of bytes in flight.
      const queue = Math.max(0, this.unprobed - probeRate * rtt);
      return (rtt / 2 + (queue + bytes) / probeRate) / this.weight;
    }
    const rate = this.ackRate > 0 ? this.ackRate : 1000; // 1 MB/s until measured
    return (rtt / 2 + (this._inflight + this.channel.queuedBytes + bytes) / rate) / this.weight;
  }

  /**
   * Bytes this path may hold when several paths share the load (compared
   * with {@link load}). Probed: CAP_GAIN rate × (min RTT + CAP_SLACK_MS)
   * products of the path's own loop. Before the first probe rate: four
   * ack-based rate × RTT products, where the RTT is the slowest usable
   * path's minimum (`feedbackRttMs`, set by the scheduler), because
   * acknowledgements wait for the slowest path. Never below 256 KiB.
   */
  get cap(): number {
    const probeRate = this.probes.rate;
    if (probeRate > 0) return Math.max(MIN_CAP, CAP_GAIN * probeRate * ((this._minRtt ?? this.feedbackRttMs) + CAP_SLACK_MS));
    return Math.max(MIN_CAP, 4 * this.ackRate * (this.feedbackRttMs + 10));
  }

  /** What the cap limits: bytes not yet known delivered on this path (probed), else unacknowledged. */
  get load(): number {
    return this.probes.rate > 0 ? this.unprobed : this._inflight;
  }

  setFeedbackRtt(ms: number): void {
    this.feedbackRttMs = ms;
  }

  /** Channel bytes sent on this path that no answered probe covers yet. */
  get unprobed(): number {
    return this.channel.bytesOut - this.probes.probedSent;
  }

  /** Bytes sent on this path that the peer has acknowledged (proof of life). */
  get deliveredBytes(): number {
    return this.delivered;
  }

  onAcked(bytes: number): void {
    this._inflight -= bytes;
    this.delivered += bytes;
    const now = this.clock.now();
    const dt = now - this.sampleAt;
    if (dt >= Math.max(20, this._srtt ?? 20)) {
      const sample = (this.delivered - this.sampleDelivered) / dt;
      this.ackRate = Math.max(sample, this.ackRate * 0.9);
      this.sampleAt = now;
      this.sampleDelivered = this.delivered;
    }
  }

  onRtt(sample: number): void {
    if (this._minRtt === undefined || sample < this._minRtt) this._minRtt = sample;
    this._srtt = this._srtt === undefined ? sample : this._srtt * 0.875 + sample * 0.125;
  }

  // ── control frames on this path ──

  /** The peer pinged on this path: answer on it (bounded; extra pings go unanswered). */
  queuePong(id: number): void {
    if (this.pongs.length < MAX_PONGS) this.pongs.push(id);
  }

  /** Sends a PING with `id` on this path at the next flush (replacing one not yet sent). */
  requestPing(id: number): void {
    this._pingToSend = id;
  }

  /** The PING that the next flush writes, if any. */
  get pingToSend(): number | undefined {
    return this._pingToSend;
  }

  get hasControl(): boolean {
    return this.pongs.length > 0 || this._pingToSend !== undefined;
  }

  /** Writes queued PONGs (up to 64 bytes of them) and the PING into a record from offset 1; returns its end. */
  writeControl(buf: Buffer): number {
    let off = 1;
    const pongs = this.pongs;
    while (pongs.length > 0 && off + PING_SIZE <= 64) off = writePingPong(buf, off, F_PONG, pongs.shift() as number);
    if (this._pingToSend !== undefined) {
      off = writePingPong(buf, off, F_PING, this._pingToSend);
      this._pingToSend = undefined;
    }
    return off;
  }

  // ── probes (probes.ts) ──

  /** Whether a probe should go out: sequenced data is in flight and was sent since the last probe. */
  probeDue(now: number): boolean {
    return this.probes.due(now, this._inflight, this.channel.bytesOut, this._srtt);
  }

  /** Sends a probe PING with this id at the next flush; returns it. */
  requestProbe(id: number): number {
    this.probes.request(id);
    this._pingToSend = id;
    return id;
  }

  /** Before a flush writes any data (after its pings): see PathProbes.settle. */
  settleProbe(now: number): void {
    this.probes.settle(now, this._pingToSend, this.channel.bytesOut);
  }

  /** A PONG arrived on this path; false when `id` is not one of its probes. */
  onProbePong(id: number, now: number): boolean {
    const pr = this.probes.answer(id);
    if (!pr) return false;
    this.onRtt(now - pr.at);
    this.probes.record(pr, now, this._minRtt);
    return true;
  }

  // ── liveness (liveness.ts) ──

  get missed(): number {
    return this._missed;
  }

  /** The liveness ping awaiting its pong, if any. */
  get outstandingPing(): number | undefined {
    return this.outstanding?.id;
  }

  beginPing(id: number, now: number): void {
    this.outstanding = { id, at: now };
    this._pingToSend = id;
  }

  /** A pong for the outstanding liveness ping: RTT sample, healthy again. False if it is not that ping's. */
  answerPing(id: number, now: number): boolean {
    if (this.outstanding?.id !== id) return false;
    this.onRtt(now - this.outstanding.at);
    this.outstanding = undefined;
    this._missed = 0;
    this.clock.clear(this.pingDeadline);
    this.pingDeadline = undefined;
    this._healthySince ??= now;
    return true;
  }

  /** A pong for some other ping of ours (Session.ping) on this path: it is alive. */
  answerOther(sample: number): void {
    this.onRtt(sample);
    this._missed = 0;
  }

  /** The deadline of ping `id` passed; false if it was answered meanwhile. */
  expirePing(id: number): boolean {
    this.pingDeadline = undefined;
    if (this.outstanding?.id !== id) return false;
    this.outstanding = undefined;
    return true;
  }

  /** Counts a missed pong: no longer healthy. Returns the misses in a row. */
  missPong(): number {
    this._healthySince = undefined;
    return ++this._missed;
  }

  setPingTimer(t: TimerHandle): void {
    this.stopTimers();
    this.pingTimer = t;
  }

  setPingDeadline(t: TimerHandle): void {
    this.pingDeadline = t;
  }

  stopTimers(): void {
    this.clock.clear(this.pingTimer);
    this.clock.clear(this.pingDeadline);
    this.pingTimer = this.pingDeadline = undefined;
  }

  stats(): PathStats {
    return {
      id: this.id,
      label: this.label,
      role: this.role,
      state: this._up ? 'up' : 'joining',
      remote: this.channel.info.remote,
      local: this.channel.info.local,
      rttMs: this._srtt,
      inflightBytes: this._inflight,
      rateBytesPerSec: Math.round((this.probes.rate > 0 ? this.probes.rate : this.ackRate) * 1000),
      bytesSent: this.channel.bytesOut,
      bytesReceived: this.channel.bytesIn,
      pingsMissed: this._missed,
      protection: this.channel.info.protection ?? 'aead',
      carrier: this.channel.info.carrier,
      ...(this.channel.transportStats !== undefined ? { transport: this.channel.transportStats() } : {}),
    };
  }
}
