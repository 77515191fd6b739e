/**
 * Delivery-rate samples, draft-cheng-iccrg-delivery-rate-estimation: how
 * fast the path delivered the most recent flight, one sample per ACK, for
 * model-based controllers (BBR's bottleneck bandwidth, the fixed-rate mode's
 * give-up check).
 *
 * Each packet is stamped at send time with the connection's delivered count
 * and times then; on ACK, the newest acknowledged packet's stamp gives the
 * bytes delivered since it left and over which interval. The interval is the
 * longer of the send-side and the ACK-side spans, so neither a burst of
 * sends nor a burst of ACKs (ACK compression) inflates the rate; a sample
 * over less than min RTT is kept for round counting but has no rate.
 *
 * App-limited: when the sender has nothing to send while the window has
 * room, the caller says so ({@link DeliveryRate.onAppLimited}); packets sent
 * until that flight is delivered are marked, and their samples show what the
 * application offered, not what the path can carry — a controller must not
 * lower its estimate on them.
 */

/** What a packet remembers of the connection's delivery state when it left. */
export interface DeliveryStamp {
  /** Bytes delivered (acknowledged) before it left. */
  readonly delivered: number;
  /** When `delivered` last grew before it left (ms). */
  readonly deliveredTime: number;
  /** Send time of the packet that began the flight it belongs to (ms). */
  readonly firstSentTime: number;
  /** Sent while the sender was application-limited. */
  readonly appLimited: boolean;
}

/** One ACK's sample. */
export interface RateSample {
  /** Bytes delivered over {@link interval}. */
  readonly delivered: number;
  /** The span those bytes took (ms), or -1 when the sample is too short to trust. */
  readonly interval: number;
  /** `delivered / interval` in bytes per second; 0 when the interval is invalid. */
  readonly deliveryRate: number;
  /** The rate may be below what the path carries: the sender ran out of data. */
  readonly isAppLimited: boolean;
  /** Connection delivered count when the newest acknowledged packet left: a round ends when this passes the count at the round's start. */
  readonly priorDelivered: number;
  /** Connection delivered count after this ACK. */
  readonly totalDelivered: number;
  /** Now minus the newest acknowledged packet's send time (ms), ack delay included. */
  readonly rtt: number;
  /** Bytes in flight before this ACK removed what it acknowledged. */
  readonly priorInFlight: number;
  /** Bytes in flight after it. */
  readonly bytesInFlight: number;
}

/** A packet as the estimator needs it when acknowledged. */
export interface DeliveredPacket {
  readonly size: number;
  readonly timeSent: number;
  readonly delivery?: DeliveryStamp | undefined;
}

export class DeliveryRate {
  /** Bytes acknowledged so far. */
  delivered = 0;
  #deliveredTime = 0;
  #firstSentTime = 0;
  /** Non-zero while app-limited: the delivered count that ends it. */
  #appLimitedUntil = 0;
  // The sample being built from one ACK's packets.
  #has = false;
  #priorDelivered = 0;
  #sentTime = 0;
  #sendElapsed = 0;
  #ackElapsed = 0;
  #appLimited = false;
  #rtt = 0;

  /** True while packets sent now are marked app-limited. */
  get appLimited(): boolean {
    return this.#appLimitedUntil !== 0;
  }

  /** Stamps a packet leaving at `now` with `inFlight` bytes already in flight (before it). */
  onPacketSent(now: number, inFlight: number): DeliveryStamp {
    if (inFlight === 0) {
      // Nothing in flight: a new flight starts here, so idle time does not count in its interval.
      this.#firstSentTime = now;
      this.#deliveredTime = now;
    }
    return { delivered: this.delivered, deliveredTime: this.#deliveredTime, firstSentTime: this.#firstSentTime, appLimited: this.appLimited };
  }

  /** The sender has no data while the window has room; marks until what is in flight now is delivered. */
  onAppLimited(inFlight: number): void {
    this.#appLimitedUntil = Math.max(1, this.delivered + inFlight);
  }

  /** One packet of the ACK being processed was acknowledged. Unstamped packets count as delivered but give no sample. */
  onPacketAcked(p: DeliveredPacket, now: number): void {
    this.delivered += p.size;
    this.#deliveredTime = now;
    const s = p.delivery;
    if (s === undefined) return;
    // Of the packets this ACK covers, the one sent last (largest delivered count, then latest) speaks for the flight.
    if (!this.#has || s.delivered > this.#priorDelivered || (s.delivered === this.#priorDelivered && p.timeSent > this.#sentTime)) {
      this.#has = true;
      this.#priorDelivered = s.delivered;
      this.#sentTime = p.timeSent;
      this.#appLimited = s.appLimited;
      this.#sendElapsed = p.timeSent - s.firstSentTime;
      this.#ackElapsed = now - s.deliveredTime;
      this.#rtt = now - p.timeSent;
      this.#firstSentTime = p.timeSent;
    }
  }

  /**
   * Ends one ACK: the sample its packets give, or undefined when none
   * carried a stamp. `minRtt` (ms) is the shortest interval trusted.
   */
  takeSample(minRtt: number, priorInFlight: number, bytesInFlight: number): RateSample | undefined {
    if (!this.#has) return undefined;
    this.#has = false;
    if (this.#appLimitedUntil !== 0 && this.delivered > this.#appLimitedUntil) this.#appLimitedUntil = 0;
    const delivered = this.delivered - this.#priorDelivered;
    let interval = Math.max(this.#sendElapsed, this.#ackElapsed);
    if (!(interval > 0) || interval < minRtt) interval = -1;
    return {
      delivered,
      interval,
      deliveryRate: interval > 0 ? (delivered * 1000) / interval : 0,
      isAppLimited: this.#appLimited,
      priorDelivered: this.#priorDelivered,
      totalDelivered: this.delivered,
      rtt: this.#rtt,
      priorInFlight,
      bytesInFlight,
    };
  }
}
