/**
 * Session frames. A record plaintext (after its type byte) holds one or more
 * whole frames; a frame never spans records.
 *
 * Sequenced frames (delivered exactly once, in order, across carrier
 * reconnects and, later, across paths) carry a 48-bit session sequence number:
 *
 * ```
 * DATA  | 0x01 | seq u48 | sid u32 | len u16 | payload … |
 * OPEN  | 0x02 | seq u48 | sid u32 | len u16 | open payload … |
 * FIN   | 0x03 | seq u48 | sid u32 |
 * RST   | 0x04 | seq u48 | sid u32 | code u32 |
 * ```
 *
 * Unsequenced frames (idempotent or disposable; re-sent as state on resume):
 *
 * ```
 * WINDOW   | 0x10 | sid u32 | max offset u48 |     sid 0 = whole session
 * ACK      | 0x11 | cumulative seq u48 |
 * PING     | 0x12 | id u32 |
 * PONG     | 0x13 | id u32 |
 * DATAGRAM | 0x14 | flow u32 | len u16 | payload … |
 * GOAWAY   | 0x15 | code u32 |
 * CLOSE    | 0x16 | code u32 | len u8 | reason utf-8 … |
 * PAD      | 0x17 | len u16 | zero bytes … |
 * ```
 */
import { ProtocolError } from '../core/errors.js';

export const F_DATA = 0x01;
export const F_OPEN = 0x02;
export const F_FIN = 0x03;
export const F_RST = 0x04;
export const F_WINDOW = 0x10;
export const F_ACK = 0x11;
export const F_PING = 0x12;
export const F_PONG = 0x13;
export const F_DATAGRAM = 0x14;
export const F_GOAWAY = 0x15;
export const F_CLOSE = 0x16;
export const F_PAD = 0x17;

export const SEQ_HEADER = 11; // type + seq + sid
export const DATA_HEADER = 13; // + len
export const RST_SIZE = 15;
export const WINDOW_SIZE = 11;
export const ACK_SIZE = 7;
export const PING_SIZE = 5;
export const DATAGRAM_HEADER = 7;
export const GOAWAY_SIZE = 5;
/** CLOSE without its reason bytes. */
export const CLOSE_HEADER = 6;

/** A sequenced frame as kept in the retransmit buffer. */
export interface SeqFrame {
  type: typeof F_DATA | typeof F_OPEN | typeof F_FIN | typeof F_RST;
  seq: number;
  sid: number;
  /** DATA/OPEN payload (referenced, not copied). */
  payload: Buffer | undefined;
  /** RST code. */
  code: number;
}

export function seqFrameSize(f: SeqFrame): number {
  switch (f.type) {
    case F_DATA:
    case F_OPEN:
      return DATA_HEADER + (f.payload?.length ?? 0);
    case F_FIN:
      return SEQ_HEADER;
    case F_RST:
      return RST_SIZE;
  }
}

/** Writes a sequenced frame at `off`; returns the new offset. */
export function writeSeqFrame(buf: Buffer, off: number, f: SeqFrame): number {
  buf[off] = f.type;
  buf.writeUIntBE(f.seq, off + 1, 6);
  buf.writeUInt32BE(f.sid, off + 7);
  off += SEQ_HEADER;
  if (f.type === F_DATA || f.type === F_OPEN) {
    const p = f.payload as Buffer;
    buf.writeUInt16BE(p.length, off);
    p.copy(buf, off + 2);
    return off + 2 + p.length;
  }
  if (f.type === F_RST) {
    buf.writeUInt32BE(f.code >>> 0, off);
    return off + 4;
  }
  return off;
}

export function writeWindow(buf: Buffer, off: number, sid: number, max: number): number {
  buf[off] = F_WINDOW;
  buf.writeUInt32BE(sid, off + 1);
  buf.writeUIntBE(max, off + 5, 6);
  return off + WINDOW_SIZE;
}

export function writeAck(buf: Buffer, off: number, seq: number): number {
  buf[off] = F_ACK;
  buf.writeUIntBE(seq, off + 1, 6);
  return off + ACK_SIZE;
}

export function writePingPong(buf: Buffer, off: number, type: typeof F_PING | typeof F_PONG, id: number): number {
  buf[off] = type;
  buf.writeUInt32BE(id >>> 0, off + 1);
  return off + PING_SIZE;
}

export function writeDatagram(buf: Buffer, off: number, flow: number, payload: Buffer): number {
  buf[off] = F_DATAGRAM;
  buf.writeUInt32BE(flow >>> 0, off + 1);
  buf.writeUInt16BE(payload.length, off + 5);
  payload.copy(buf, off + DATAGRAM_HEADER);
  return off + DATAGRAM_HEADER + payload.length;
}

export function writeGoaway(buf: Buffer, off: number, code: number): number {
  buf[off] = F_GOAWAY;
  buf.writeUInt32BE(code >>> 0, off + 1);
  return off + GOAWAY_SIZE;
}

export function closeFrameSize(reason: Buffer): number {
  return 6 + reason.length;
}

export function writeClose(buf: Buffer, off: number, code: number, reason: Buffer): number {
  buf[off] = F_CLOSE;
  buf.writeUInt32BE(code >>> 0, off + 1);
  buf[off + 5] = reason.length;
  reason.copy(buf, off + 6);
  return off + 6 + reason.length;
}

/** Receives parsed frames. Payloads are views into the record plaintext. */
export interface FrameVisitor {
  seq(type: SeqFrame['type'], seq: number, sid: number, payload: Buffer | undefined, code: number): void;
  window(sid: number, max: number): void;
  ack(seq: number): void;
  ping(id: number): void;
  pong(id: number): void;
  datagram(flow: number, payload: Buffer): void;
  goaway(code: number): void;
  close(code: number, reason: string): void;
}

function need(buf: Buffer, off: number, n: number, what: string): void {
  if (off + n > buf.length) throw new ProtocolError(`truncated ${what} frame`);
}

/**
 * Parses every frame of a record plaintext starting at `off` (1: after the
 * record type byte). Throws ProtocolError on anything malformed; frames before
 * the bad one have already been visited.
 */
export function parseFrames(buf: Buffer, off: number, v: FrameVisitor): void {
  while (off < buf.length) {
    const type = buf[off] as number;
    switch (type) {
      case F_DATA:
      case F_OPEN: {
        need(buf, off, DATA_HEADER, 'DATA/OPEN');
        const len = buf.readUInt16BE(off + 11);
        need(buf, off, DATA_HEADER + len, 'DATA/OPEN');
        const p = buf.subarray(off + DATA_HEADER, off + DATA_HEADER + len);
        v.seq(type, buf.readUIntBE(off + 1, 6), buf.readUInt32BE(off + 7), p, 0);
        off += DATA_HEADER + len;
        break;
      }
      case F_FIN:
        need(buf, off, SEQ_HEADER, 'FIN');
        v.seq(F_FIN, buf.readUIntBE(off + 1, 6), buf.readUInt32BE(off + 7), undefined, 0);
        off += SEQ_HEADER;
        break;
      case F_RST:
        need(buf, off, RST_SIZE, 'RST');
        v.seq(F_RST, buf.readUIntBE(off + 1, 6), buf.readUInt32BE(off + 7), undefined, buf.readUInt32BE(off + 11));
        off += RST_SIZE;
        break;
      case F_WINDOW:
        need(buf, off, WINDOW_SIZE, 'WINDOW');
        v.window(buf.readUInt32BE(off + 1), buf.readUIntBE(off + 5, 6));
        off += WINDOW_SIZE;
        break;
      case F_ACK:
        need(buf, off, ACK_SIZE, 'ACK');
        v.ack(buf.readUIntBE(off + 1, 6));
        off += ACK_SIZE;
        break;
      case F_PING:
      case F_PONG:
        need(buf, off, PING_SIZE, 'PING/PONG');
        if (type === F_PING) v.ping(buf.readUInt32BE(off + 1));
        else v.pong(buf.readUInt32BE(off + 1));
        off += PING_SIZE;
        break;
      case F_DATAGRAM: {
        need(buf, off, DATAGRAM_HEADER, 'DATAGRAM');
        const len = buf.readUInt16BE(off + 5);
        need(buf, off, DATAGRAM_HEADER + len, 'DATAGRAM');
        v.datagram(buf.readUInt32BE(off + 1), buf.subarray(off + DATAGRAM_HEADER, off + DATAGRAM_HEADER + len));
        off += DATAGRAM_HEADER + len;
        break;
      }
      case F_GOAWAY:
        need(buf, off, GOAWAY_SIZE, 'GOAWAY');
        v.goaway(buf.readUInt32BE(off + 1));
        off += GOAWAY_SIZE;
        break;
      case F_CLOSE: {
        need(buf, off, 6, 'CLOSE');
        const len = buf[off + 5] as number;
        need(buf, off, 6 + len, 'CLOSE');
        v.close(buf.readUInt32BE(off + 1), buf.toString('utf8', off + 6, off + 6 + len));
        off += 6 + len;
        break;
      }
      case F_PAD: {
        need(buf, off, 3, 'PAD');
        const len = buf.readUInt16BE(off + 1);
        need(buf, off, 3 + len, 'PAD');
        off += 3 + len;
        break;
      }
      default:
        throw new ProtocolError(`unknown frame type 0x${type.toString(16)}`);
    }
  }
}
