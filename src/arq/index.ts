/**
 * ARQ: reliability and congestion control for packet channels (UDP,
 * WebRTC unordered), sans-IO. It sits above the secure layer, so packet
 * numbers and ACKs travel encrypted and cannot be forged or read by a
 * middlebox; it imports only core, and takes time as `now` arguments (the
 * caller's injected Clock), so every part runs under a ManualClock in tests.
 *
 * Groundwork for issue 17 (UDP carrier, item 2 "Reliability above the
 * secure layer"): not yet used by a carrier. Congestion controllers (BBR,
 * CUBIC, fixed rate), pacing and MTU discovery come next and plug into
 * {@link CongestionController}.
 *
 * | file | concern |
 * |---|---|
 * | `packet-numbers.ts` | one number space, never reused; the sent-packet table |
 * | `ack-frame.ts`, `varint.ts` | the ACK frame with ranges, its codec |
 * | `ack-tracker.ts` | the receive side: duplicates, reordering, when an ACK is due |
 * | `rtt.ts` | RTT estimate (RFC 9002 §5) |
 * | `loss-detection.ts` | ACK processing, packet/time thresholds, PTO, spurious losses |
 * | `congestion.ts` | the controller seam and a fixed window for tests |
 */
export { type AckFrame, type AckRange, ackFrameBytes, ackFrameLength, decodeAckFrame, encodeAckFrame } from './ack-frame.js';
export { AckTracker, type AckTrackerInit } from './ack-tracker.js';
export { type CongestionController, FixedWindow, type LostPacketInfo, type RttView } from './congestion.js';
export * from './constants.js';
export { type AckOutcome, LossDetector, type LossDetectorInit, type PacketToSend, type TimeoutOutcome } from './loss-detection.js';
export { PacketNumberSpace, type SentPacket, SentPacketTable } from './packet-numbers.js';
export { RttEstimator } from './rtt.js';
