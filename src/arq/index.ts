/**
 * ARQ: reliability and congestion control for packet channels (UDP,
 * WebRTC unordered), sans-IO. It sits above the secure layer, so packet
 * numbers and ACKs travel encrypted and cannot be forged or read by a
 * middlebox. Everything but the channel adapter imports only core and
 * takes time as `now` arguments (the caller's injected Clock), so every
 * part runs under a ManualClock in tests; `arq-channel.ts` drives a
 * connection over a packet record channel (secure) with real timers, and is
 * what udp paths run on (paths/packet-source.ts, server/session-server.ts).
 * MTU discovery, FEC and datagrams outside the stream come next (issue 17).
 *
 * | file | concern |
 * |---|---|
 * | `packet-numbers.ts` | one number space, never reused; the sent-packet table |
 * | `ack-frame.ts`, `varint.ts` | the ACK frame with ranges, its codec |
 * | `ack-tracker.ts` | the receive side: duplicates, reordering, when an ACK is due |
 * | `rtt.ts` | RTT estimate (RFC 9002 §5) |
 * | `loss-detection.ts` | ACK processing, packet/time thresholds, PTO, spurious losses |
 * | `congestion.ts` | the controller seam and a fixed window for tests |
 * | `delivery-rate.ts` | per-ACK delivery-rate samples for model-based control |
 * | `pacer.ts` | the token bucket every send passes |
 * | `bbr.ts` | BBR, the default: model-based, random loss is not congestion |
 * | `cubic.ts` | CUBIC (RFC 9438), for sharing fairly with TCP |
 * | `fixed-rate.ts` | a configured rate (hysteria's Brutal), capped by the server and by what gets through |
 * | `cc-choice.ts` | `--cc bbr\|cubic\|fixed:RATE`, parsed, and a controller per path |
 * | `stream-buffers.ts` | the byte stream of records: what is kept for resend, reassembly in order |
 * | `connection.ts` | the parts together: packets, frames, ACKs, loss, pacing (sans-IO) |
 * | `arq-channel.ts` | the reliable record channel the session gets, over a packet channel |
 */
export { type AckFrame, type AckRange, ackFrameBytes, ackFrameLength, decodeAckFrame, encodeAckFrame } from './ack-frame.js';
export { AckTracker, type AckTrackerInit } from './ack-tracker.js';
export { Bbr, type BbrInit, type BbrState } from './bbr.js';
export { type CongestionController, FixedWindow, type LostPacketInfo, type RttView } from './congestion.js';
export * from './constants.js';
export { Cubic, type CubicInit } from './cubic.js';
export { DeliveryRate, type DeliveryStamp, type RateSample } from './delivery-rate.js';
export { FixedRate, type FixedRateInit } from './fixed-rate.js';
export { type AckOutcome, LossDetector, type LossDetectorInit, type PacketToSend, type TimeoutOutcome } from './loss-detection.js';
export { Pacer, type PacerInit } from './pacer.js';
export { PacketNumberSpace, type SentPacket, SentPacketTable } from './packet-numbers.js';
export { RttEstimator } from './rtt.js';
