/**
 * The proxy protocol spoken over session streams and datagrams, shared by the
 * client fronts and the server egress. A stream's OPEN payload says what the
 * stream is for:
 *
 * ```
 * CONNECT  client → server  | 0x01 | destination (address codec) |
 * BIND     client → server  | 0x02 | bind host/port (address codec) |   (a -R forward)
 * ACCEPTED server → client  | 0x03 | bind id u32 | peer address (address codec) |
 * SPEED    client → server  | 0x04 | direction u8 (1 down, 2 up) | bytes u32 |   (a speed test)
 * ADDRESS  client → server  | 0x05 |                                              (where the server sees us from)
 * ```
 *
 * The first byte the server writes on a CONNECT or BIND stream is a status:
 * 0x00 success, otherwise a SOCKS5 reply code (0x02 not allowed, 0x04 host
 * unreachable, 0x05 refused …) after which the server ends the stream. On a
 * successful BIND the status is followed by | bind id u32 | bound address |
 * and the stream stays open for as long as the bind lives: ending it, or the
 * session ending, releases the listener on the server. Data written right
 * after a CONNECT OPEN leaves with it (0-RTT); it is relayed once the server
 * has connected.
 *
 * A SPEED stream measures the session's throughput (src/server/speed-test.ts,
 * src/client/speed-test.ts), with no target and no status byte: down, the
 * server writes `bytes` bytes and ends; up, the client writes `bytes` bytes
 * and ends, and the server answers | received u32 | ms u32 | (its first to
 * last byte) and ends. At most {@link MAX_SPEED_TEST_BYTES}, one at a time
 * per session, counted as the user's traffic. A server older than this
 * resets the OPEN (ResetCode.noHandler).
 *
 * An ADDRESS stream asks where the server sees the session's paths come
 * from (what STUN calls the reflexive address): the server answers
 * | count u8 | address (address codec) × count | — each path's source
 * address and port as seen there — and ends. Compared with a path's own
 * local address it tells whether a NAT is on the way, and across two
 * server addresses how the NAT maps (src/ui/nat.ts).
 *
 * UDP rides the datagram lane. The datagram's flow id names a client-chosen
 * association; payloads are
 * ```
 * client → server  | destination (address codec) | data … |
 * server → client  | source (address codec)      | data … |
 * ```
 */
import { ProtocolError } from '../core/errors.js';
import { decodeDestination, encodedDestinationLength, writeDestination, type Destination } from '../core/address.js';

export const OPEN_CONNECT = 0x01;
export const OPEN_BIND = 0x02;
export const OPEN_ACCEPTED = 0x03;
export const OPEN_SPEED_TEST = 0x04;
export const OPEN_ADDRESS = 0x05;
/** The open kinds of the proxy protocol (its stream lane on a session). */
export const PROXY_OPEN_KINDS: readonly number[] = [OPEN_CONNECT, OPEN_BIND, OPEN_ACCEPTED, OPEN_SPEED_TEST, OPEN_ADDRESS];
/** At most this many addresses in an ADDRESS answer. */
export const MAX_OBSERVED_ADDRESSES = 32;
/** The largest speed test a client may ask for, bytes. */
export const MAX_SPEED_TEST_BYTES = 64 * 1024 * 1024;

/**
 * The datagram flow ids of UDP associations (the proxy's datagram lane on a
 * session). Ids from 0xFFFF0000 up belong to other lanes (the VPN's).
 */
export const UDP_FLOW_FIRST = 1;
export const UDP_FLOW_LAST = 0xfffeffff;

export const STATUS_OK = 0x00;

/**
 * Status bytes: the SOCKS5 reply codes (RFC 1928 §6), so a SOCKS5 front can
 * pass on exactly what the server saw. The client codec (Socks5Reply) and
 * the server egress (SocksReply) both use this table.
 */
export const ProxyStatus = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export type OpenRequest =
  | { kind: 'connect'; dest: Destination }
  | { kind: 'bind'; dest: Destination }
  | { kind: 'accepted'; bindId: number; peer: Destination }
  | { kind: 'speed'; direction: 'down' | 'up'; bytes: number }
  | { kind: 'address' };

export function encodeOpen(req: OpenRequest): Buffer {
  if (req.kind === 'address') return Buffer.from([OPEN_ADDRESS]);
  if (req.kind === 'speed') {
    const buf = Buffer.allocUnsafe(6);
    buf[0] = OPEN_SPEED_TEST;
    buf[1] = req.direction === 'down' ? 1 : 2;
    buf.writeUInt32BE(req.bytes >>> 0, 2);
    return buf;
  }
  const dest = req.kind === 'accepted' ? req.peer : req.dest;
  const extra = req.kind === 'accepted' ? 4 : 0;
  const buf = Buffer.allocUnsafe(1 + extra + encodedDestinationLength(dest));
  buf[0] = req.kind === 'connect' ? OPEN_CONNECT : req.kind === 'bind' ? OPEN_BIND : OPEN_ACCEPTED;
  if (req.kind === 'accepted') buf.writeUInt32BE(req.bindId >>> 0, 1);
  writeDestination(dest, buf, 1 + extra);
  return buf;
}

/** Decodes an OPEN payload; throws ProtocolError (AddressError) on anything malformed. */
export function decodeOpen(buf: Buffer): OpenRequest {
  if (buf.length < 1) throw new ProtocolError('empty open payload');
  const kind = buf[0];
  if (kind === OPEN_ADDRESS) {
    if (buf.length !== 1) throw new ProtocolError(`address open payload of ${buf.length} bytes (1 expected)`);
    return { kind: 'address' };
  }
  if (kind === OPEN_SPEED_TEST) {
    if (buf.length !== 6) throw new ProtocolError(`speed test open payload of ${buf.length} bytes (6 expected)`);
    const dir = buf[1];
    if (dir !== 1 && dir !== 2) throw new ProtocolError(`unknown speed test direction ${dir as number}`);
    const bytes = buf.readUInt32BE(2);
    if (bytes < 1 || bytes > MAX_SPEED_TEST_BYTES) throw new ProtocolError(`speed test of ${bytes} bytes (1 to ${MAX_SPEED_TEST_BYTES})`);
    return { kind: 'speed', direction: dir === 1 ? 'down' : 'up', bytes };
  }
  if (kind === OPEN_ACCEPTED) {
    if (buf.length < 5) throw new ProtocolError('truncated ACCEPTED open payload');
    const { dest, bytesRead } = decodeDestination(buf, 5);
    if (5 + bytesRead !== buf.length) throw new ProtocolError('trailing bytes in open payload');
    return { kind: 'accepted', bindId: buf.readUInt32BE(1), peer: dest };
  }
  if (kind !== OPEN_CONNECT && kind !== OPEN_BIND) throw new ProtocolError(`unknown open kind 0x${(kind as number).toString(16)}`);
  const { dest, bytesRead } = decodeDestination(buf, 1);
  if (1 + bytesRead !== buf.length) throw new ProtocolError('trailing bytes in open payload');
  return { kind: kind === OPEN_CONNECT ? 'connect' : 'bind', dest };
}

/** The BIND success reply that follows the status byte. */
export function encodeBindReply(bindId: number, bound: Destination): Buffer {
  const buf = Buffer.allocUnsafe(1 + 4 + encodedDestinationLength(bound));
  buf[0] = STATUS_OK;
  buf.writeUInt32BE(bindId >>> 0, 1);
  writeDestination(bound, buf, 5);
  return buf;
}

/** UDP datagram payload: address then data (the data is a view, not a copy). */
export function encodeUdp(addr: Destination, data: Buffer): Buffer {
  const n = encodedDestinationLength(addr);
  const buf = Buffer.allocUnsafe(n + data.length);
  writeDestination(addr, buf, 0);
  data.copy(buf, n);
  return buf;
}

export function decodeUdp(buf: Buffer): { addr: Destination; data: Buffer } {
  const { dest, bytesRead } = decodeDestination(buf, 0);
  return { addr: dest, data: buf.subarray(bytesRead) };
}

/** An ADDRESS answer: | count u8 | address × count | (at most {@link MAX_OBSERVED_ADDRESSES}). */
export function encodeAddresses(list: readonly Destination[]): Buffer {
  const take = list.slice(0, MAX_OBSERVED_ADDRESSES);
  const buf = Buffer.allocUnsafe(1 + take.reduce((n, d) => n + encodedDestinationLength(d), 0));
  buf[0] = take.length;
  let at = 1;
  for (const d of take) at += writeDestination(d, buf, at);
  return buf;
}

/** Decodes an ADDRESS answer; throws ProtocolError on anything malformed. */
export function decodeAddresses(buf: Buffer): Destination[] {
  if (buf.length < 1) throw new ProtocolError('empty address answer');
  const n = buf[0] as number;
  if (n > MAX_OBSERVED_ADDRESSES) throw new ProtocolError(`address answer of ${n} addresses (at most ${MAX_OBSERVED_ADDRESSES})`);
  const out: Destination[] = [];
  let at = 1;
  for (let i = 0; i < n; i++) {
    const { dest, bytesRead } = decodeDestination(buf, at);
    out.push(dest);
    at += bytesRead;
  }
  if (at !== buf.length) throw new ProtocolError('trailing bytes in address answer');
  return out;
}
