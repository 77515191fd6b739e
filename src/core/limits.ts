/**
 * Every queue bound in one place: what each buffer, window and table may
 * hold before backpressure, a drop or a refusal sets in. ARCHITECTURE.md
 * ("Backpressure") says how they relate; the ones a user may change are
 * config keys (docs/config.md) whose defaults are these.
 */

// ── session: windows and what waits for the peer ─────────────────────────
/** Receive window of a stream whose reader keeps up (`limits.streamWindow`). */
export const STREAM_WINDOW = 1 << 20;
/** Receive window of a session, and the budget stream windows share (`limits.sessionWindow`). */
export const SESSION_WINDOW = 16 << 20;
/** Concurrent streams a peer may open (`limits.maxStreams`). */
export const MAX_STREAMS = 1024;
/** The smallest initial stream window advertised: what a paused reader may hold. */
export const MIN_INITIAL_STREAM_WINDOW = 16 * 1024;
/** Sent but unacknowledged bytes kept for resend; no new DATA beyond it. */
export const MAX_UNACKED_BYTES = 16 << 20;
/** Out-of-order frames held for reordering. */
export const MAX_REORDER_FRAMES = 8192;
/** Datagram bytes queued for sending; newer datagrams are dropped beyond it. */
export const MAX_DATAGRAM_QUEUE_BYTES = 1 << 20;
/** A stream's write-side buffer before write() returns false. */
export const STREAM_HIGH_WATER_MARK = 256 * 1024;

// ── records, carriers, relays ─────────────────────────────────────────────
/**
 * Listen backlog of every port that takes traffic (carrier listeners, the
 * client's SOCKS/HTTP/-L fronts, -R binds), as Go's net.Listen has it: the
 * kernel caps it at net.core.somaxconn. With Node's 511, a burst of
 * connections while the event loop was busy overflowed the accept queue
 * (the soak under load: TcpExtListenOverflows); the kernel then drops the
 * handshake's last ACK, the peer believes it is connected, and ~31 s of
 * SYN-ACK retries later its connection is reset with nothing sent.
 */
export const LISTEN_BACKLOG = 4096;
/** Bytes a record channel lets wait in its carrier before `writable` turns false. */
export const CHANNEL_MAX_QUEUED_BYTES = 256 * 1024;
/** Bytes a relay lets wait in its destination before pausing its source. */
export const RELAY_MAX_QUEUED = 256 * 1024;
/** Record buffers kept in the process-wide pool. */
export const RECORD_POOL_MAX = 512;
/** Packets a UDP carrier socket queues for sending. */
export const UDP_MAX_QUEUED_PACKETS = 1024;

// ── before authentication: nothing queued, everything capped ─────────────
/** Unauthenticated connections one listener holds at once; more are closed on accept. */
export const PREAUTH_MAX_CONNS = 256;
/** Handshakes in progress at once on a server; more are dropped (`limits.maxPendingHandshakes`). */
export const MAX_PENDING_HANDSHAKES = 256;

// ── proxy ─────────────────────────────────────────────────────────────────
/** UDP flows one session's proxy keeps, and destinations per flow. */
export const MAX_UDP_FLOWS = 256;
export const MAX_UDP_FLOW_DESTINATIONS = 256;
/** ACCEPTED streams a client holds while a BIND reply is still being read. */
export const MAX_HELD_ACCEPTS = 64;
/** Bytes an mtt passthrough queues towards a slow side before pausing the other. */
export const MTT_QUEUE_BYTES = 512 * 1024;
