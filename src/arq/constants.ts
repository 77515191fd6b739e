/**
 * Every bound and default of the ARQ layer, named in one place (RFC 9002
 * names in brackets). Times are milliseconds, sizes bytes.
 */

/** Packets acknowledged after a packet before it counts as lost [kPacketThreshold]. */
export const PACKET_THRESHOLD = 3;
/** The packet threshold grows with the reordering spurious losses show, up to this [Linux: sysctl_tcp_max_reordering 300]. */
export const MAX_REORDER_THRESHOLD = 300;
/** The time threshold grows the same way, up to this many RTTs. */
export const MAX_TIME_THRESHOLD = 2;
/** A packet is lost once it is this many RTTs older than one acknowledged after it [kTimeThreshold]. */
export const TIME_THRESHOLD = 9 / 8;
/** The coarsest timer we trust; no loss delay or rttvar term goes below it [kGranularity]. */
export const GRANULARITY_MS = 1;
/** RTT assumed before the first sample [kInitialRtt]. */
export const INITIAL_RTT_MS = 333;
/** How long the peer may hold an ACK for an ack-eliciting packet (our default; RFC 9000's is 25). */
export const MAX_ACK_DELAY_MS = 25;
/** The peer acknowledges at once after this many ack-eliciting packets. */
export const ACK_ELICITING_THRESHOLD = 2;
/**
 * Once a flow is under way, an ACK is due at once only after this many
 * ack-eliciting packets (ACK decimation, as Chromium's QUIC does after 100
 * packets): a bulk receiver's ACKs were a third of its packets and ~3 % of
 * the wire. Gaps and reordering are still acknowledged at once.
 */
export const BULK_ACK_THRESHOLD = 10;
/** Packets received before {@link BULK_ACK_THRESHOLD} applies: Startup wants every early ACK. */
export const BULK_ACK_AFTER_PACKETS = 100;
/** PTOs spanned by losses, with nothing acknowledged between, that mean persistent congestion [kPersistentCongestionThreshold]. */
export const PERSISTENT_CONGESTION_THRESHOLD = 3;
/** The PTO backoff stops doubling after this many PTOs in a row (2^6 × PTO). */
export const MAX_PTO_BACKOFF_EXPONENT = 6;
/** No PTO is ever longer than this, whatever the backoff. */
export const MAX_PTO_MS = 60_000;
/** Ranges one ACK frame may carry; the decoder refuses more, the tracker forgets the oldest. */
export const MAX_ACK_RANGES = 32;
/** Packets declared lost that are remembered, so that a late ACK for one counts as spurious. */
export const MAX_REMEMBERED_LOST = 4096;
/** Bytes of an ACK frame at most: three varints plus two per extra range, 8 bytes each. */
export const MAX_ACK_FRAME_BYTES = 8 * (3 + 2 * MAX_ACK_RANGES);
/** Datagram size assumed for windows and bursts until MTU discovery says more (RFC 9000's minimum). */
export const DEFAULT_DATAGRAM_BYTES = 1200;
/** Packets the pacer lets leave back to back after idle (RFC 9002 §7.7 allows the initial window). */
export const PACER_BURST_PACKETS = 10;
/** At high rates the pacer's burst grows to this much sending time (ms), so the timer need not fire per packet. */
export const PACER_BURST_MS = 2;
