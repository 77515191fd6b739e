/**
 * The polytun hello payloads carried inside the Noise IK handshake. Both are
 * fixed-size (64 bytes before encryption) so message sizes do not depend on
 * their contents; each names a count of random padding bytes that follow the
 * Noise message on the wire, so handshake sizes vary per connection.
 *
 * Client hello (inside IK message 1, encrypted to the pinned server key):
 * ```
 *  0      1      2          6              14                 30          36
 * +------+------+----------+--------------+------------------+-----------+
 * |minVer|maxVer| caps u32 | unix ms u64  | resume id (16 B) | recvSeq48 |
 * +------+------+----------+--------------+------------------+-----------+
 *  36               40                44         46      47       48                64
 * +----------------+-----------------+----------+-------+--------+------------------+
 * | streamWin u32  | sessionWin u32  | pad u16  | flags | rsv(0) | TLS binding 16 B |
 * +----------------+-----------------+----------+-------+--------+------------------+
 * ```
 * flags: bit 0 = join (add this connection as another path of the session
 * being resumed instead of replacing its paths), bit 1 = backup path, bit 2 =
 * the TLS binding is present (the client's TLS exporter value, see
 * handshake.ts; zeros otherwise).
 *
 * Server hello (inside IK message 2):
 * ```
 *  0      1      2          6                 22          28      29
 * +------+------+----------+-----------------+-----------+-------+
 * |status|ver   | caps u32 | session id 16 B | recvSeq48 |resumed|
 * +------+------+----------+-----------------+-----------+-------+
 *  29               33                37         39               64
 * +----------------+-----------------+----------+----------------+
 * | streamWin u32  | sessionWin u32  | pad u16  | reserved (0)   |
 * +----------------+-----------------+----------+----------------+
 * ```
 * status 0 = accepted, otherwise a RejectCode.
 *
 * caps bits: 1 datagram, 2 resume, 4 multipath, 8 TLS-bound (server), and
 * the record cipher (cipher.ts): 16 AES-256-GCM (client: can use it;
 * server: the records use it), 32 prefers AES-256-GCM and 64 requires its
 * preferred cipher (client only). A peer ignores bits it does not know.
 */
import { ProtocolError } from '../core/errors.js';

export const HELLO_SIZE = 64;
export const PROTOCOL_VERSION = 1;
export const CAP_DATAGRAM = 1;
export const CAP_RESUME = 2;
export const CAP_MULTIPATH = 4;
/** Server hello: the channel is TLS-bound (records ride unencrypted inside the proven end-to-end TLS). */
export const CAP_TLS_BOUND = 8;
export const OUR_CAPS = CAP_DATAGRAM | CAP_RESUME;
/**
 * Record cipher (see cipher.ts). Client hello: can use AES-256-GCM records.
 * Server hello: the records are AES-256-GCM (absent: ChaCha20-Poly1305; in a
 * cipherMismatch reject, the cipher the server wanted).
 */
export const CAP_AES_GCM = 16;
/** Client hello: prefers AES-256-GCM (has AES acceleration, or was told to). */
export const CAP_PREFER_AES_GCM = 32;
/** Client hello: accepts its preferred record cipher only (`records.cipher` forced). */
export const CAP_CIPHER_REQUIRED = 64;

const ZERO_ID = Buffer.alloc(16);
/** Bytes of the TLS binding in the client hello. */
export const TLS_BINDING_SIZE = 16;

export interface ClientHello {
  minVersion: number;
  maxVersion: number;
  caps: number;
  timestampMs: number;
  /** Session to resume, or undefined for a new one. */
  resumeId: Buffer | undefined;
  /** Highest sequence delivered on the session being resumed. */
  recvSeq: number;
  streamWindow: number;
  sessionWindow: number;
  padLen: number;
  /** Add a path to the resumed session rather than replacing its paths. */
  join?: boolean;
  /** The new path is a backup (used only when no primary path is up). */
  backup?: boolean;
  /** The client's TLS exporter value for this connection (16 bytes), when it rides in TLS. */
  tlsBinding?: Buffer | undefined;
}

export interface ServerHello {
  status: number;
  version: number;
  caps: number;
  sessionId: Buffer;
  recvSeq: number;
  resumed: boolean;
  streamWindow: number;
  sessionWindow: number;
  padLen: number;
}

function writeU64(buf: Buffer, off: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / 0x100000000), off);
  buf.writeUInt32BE(v >>> 0, off + 4);
}

function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off) * 0x100000000 + buf.readUInt32BE(off + 4);
}

export function encodeClientHello(h: ClientHello): Buffer {
  const b = Buffer.alloc(HELLO_SIZE);
  b[0] = h.minVersion;
  b[1] = h.maxVersion;
  b.writeUInt32BE(h.caps >>> 0, 2);
  writeU64(b, 6, h.timestampMs);
  (h.resumeId ?? ZERO_ID).copy(b, 14);
  b.writeUIntBE(h.recvSeq, 30, 6);
  b.writeUInt32BE(h.streamWindow >>> 0, 36);
  b.writeUInt32BE(h.sessionWindow >>> 0, 40);
  b.writeUInt16BE(h.padLen, 44);
  b[46] = (h.join ? 1 : 0) | (h.backup ? 2 : 0) | (h.tlsBinding ? 4 : 0);
  if (h.tlsBinding) {
    if (h.tlsBinding.length !== TLS_BINDING_SIZE) throw new RangeError(`TLS binding must be ${TLS_BINDING_SIZE} bytes`);
    h.tlsBinding.copy(b, 48);
  }
  return b;
}

export function decodeClientHello(b: Buffer): ClientHello {
  if (b.length !== HELLO_SIZE) throw new ProtocolError(`client hello must be ${HELLO_SIZE} bytes, got ${b.length}`);
  const id = b.subarray(14, 30);
  const h: ClientHello = {
    minVersion: b[0] as number,
    maxVersion: b[1] as number,
    caps: b.readUInt32BE(2),
    timestampMs: readU64(b, 6),
    resumeId: id.equals(ZERO_ID) ? undefined : Buffer.from(id),
    recvSeq: b.readUIntBE(30, 6),
    streamWindow: b.readUInt32BE(36),
    sessionWindow: b.readUInt32BE(40),
    padLen: b.readUInt16BE(44),
    join: ((b[46] as number) & 1) !== 0,
    backup: ((b[46] as number) & 2) !== 0,
    tlsBinding: ((b[46] as number) & 4) !== 0 ? Buffer.from(b.subarray(48, 48 + TLS_BINDING_SIZE)) : undefined,
  };
  if (h.join && !h.resumeId) throw new ProtocolError('client hello asks to join without a session id');
  if (h.minVersion > h.maxVersion) throw new ProtocolError('client hello version range is empty');
  if (h.streamWindow < 1024 || h.sessionWindow < h.streamWindow) throw new ProtocolError('client hello windows are invalid');
  return h;
}

export function encodeServerHello(h: ServerHello): Buffer {
  const b = Buffer.alloc(HELLO_SIZE);
  b[0] = h.status;
  b[1] = h.version;
  b.writeUInt32BE(h.caps >>> 0, 2);
  h.sessionId.copy(b, 6);
  b.writeUIntBE(h.recvSeq, 22, 6);
  b[28] = h.resumed ? 1 : 0;
  b.writeUInt32BE(h.streamWindow >>> 0, 29);
  b.writeUInt32BE(h.sessionWindow >>> 0, 33);
  b.writeUInt16BE(h.padLen, 37);
  return b;
}

export function decodeServerHello(b: Buffer): ServerHello {
  if (b.length !== HELLO_SIZE) throw new ProtocolError(`server hello must be ${HELLO_SIZE} bytes, got ${b.length}`);
  const h: ServerHello = {
    status: b[0] as number,
    version: b[1] as number,
    caps: b.readUInt32BE(2),
    sessionId: Buffer.from(b.subarray(6, 22)),
    recvSeq: b.readUIntBE(22, 6),
    resumed: b[28] === 1,
    streamWindow: b.readUInt32BE(29),
    sessionWindow: b.readUInt32BE(33),
    padLen: b.readUInt16BE(37),
  };
  if (h.status === 0 && (h.streamWindow < 1024 || h.sessionWindow < h.streamWindow)) throw new ProtocolError('server hello windows are invalid');
  return h;
}
