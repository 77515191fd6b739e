/**
 * RFC 6455 framing for a byte stream: the WebSocket wire format without
 * messages. polytun's WebSocket carrier moves one byte stream, so it never
 * needs a message whole: the reader hands on each frame's payload as the
 * slices of the socket's reads it arrived in (no copy, no reassembly), and
 * the writer puts one header before each chunk it is given. A message-level
 * WebSocket library copies every message that spans two reads into one
 * buffer (a 256 KiB message over TLS spans 16 reads) and allocates per frame;
 * on the wss path that was a third of the receiver's CPU.
 *
 *   0                   1                   2                   3
 *   +-+-+-+-+-------+-+-------------+-------------------------------+
 *   |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *   |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *   |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *   |     Masking-key (0 or 4 bytes, client → server only)          |
 *   +---------------------------------------------------------------+
 *   |                     Payload Data ...                          |
 *
 * What the reader enforces (a violation is a ProtocolError, and the
 * connection is dropped): no RSV bits (no extension was negotiated); known
 * opcodes only; masked frames from a client and unmasked ones from a server;
 * control frames final and at most 125 bytes; continuation only inside a
 * fragmented message and no new message inside one; 64-bit lengths below
 * 2^53; no text messages (a byte stream rides in binary ones).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { ProtocolError } from '../core/errors.js';

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** Largest control frame payload (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;
/** Longest frame header: 2 + 8 (64-bit length) + 4 (mask). */
export const MAX_HEADER = 14;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/**
 * Writes a frame header into `out` at `at` and returns its length. `mask`
 * (4 bytes) sets the mask bit and is written after the length; the caller
 * masks the payload itself.
 */
export function writeHeader(out: Buffer, at: number, op: number, fin: boolean, len: number, mask: Buffer | null): number {
  let n = at;
  out[n++] = (fin ? 0x80 : 0) | op;
  const m = mask ? 0x80 : 0;
  if (len < 126) {
    out[n++] = m | len;
  } else if (len < 0x10000) {
    out[n++] = m | 126;
    out.writeUInt16BE(len, n);
    n += 2;
  } else {
    out[n++] = m | 127;
    out.writeUInt32BE(Math.floor(len / 0x100000000), n);
    out.writeUInt32BE(len >>> 0, n + 4);
    n += 8;
  }
  if (mask) {
    out[n++] = mask[0] as number;
    out[n++] = mask[1] as number;
    out[n++] = mask[2] as number;
    out[n++] = mask[3] as number;
  }
  return n - at;
}

/** Length of the header of a frame of `len` payload bytes. */
export function headerLength(len: number, masked: boolean): number {
  return (len < 126 ? 2 : len < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}

/** One frame header in a buffer of its own. */
export function frameHeader(op: number, fin: boolean, len: number, mask: Buffer | null): Buffer {
  const out = Buffer.allocUnsafe(MAX_HEADER);
  return out.subarray(0, writeHeader(out, 0, op, fin, len, mask));
}

interface MaskImpl {
  mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void;
  unmask(buffer: Buffer, mask: Buffer): void;
}

/** ws's optional native helper when installed (several GB/s); else the loop below. */
const nativeMask: MaskImpl | null = (() => {
  if (process.env.WS_NO_BUFFER_UTIL) return null;
  try {
    const m = createRequire(import.meta.url)('bufferutil') as Partial<MaskImpl>;
    return typeof m.unmask === 'function' && typeof m.mask === 'function' ? (m as MaskImpl) : null;
  } catch {
    return null;
  }
})();

const rotated = Buffer.alloc(4);

/**
 * XORs `buf[start..end)` in place with `mask`, the first byte taking mask
 * byte `phase` (a payload that arrives in several reads continues where the
 * last read stopped). Returns the phase after `end`.
 */
export function applyMask(buf: Buffer, start: number, end: number, mask: Buffer, phase: number): number {
  const len = end - start;
  if (len <= 0) return phase;
  for (let i = 0; i < 4; i++) rotated[i] = mask[(phase + i) & 3] as number;
  if (nativeMask && len >= 32) {
    nativeMask.unmask(buf.subarray(start, end), rotated);
  } else {
    for (let i = 0; i < len; i++) buf[start + i] = (buf[start + i] as number) ^ (rotated[i & 3] as number);
  }
  return (phase + len) & 3;
}

/** Copies `src` XOR-masked into a fresh buffer (a sender may not change what it was given). */
export function maskedCopy(src: Buffer, mask: Buffer): Buffer {
  const out = Buffer.allocUnsafe(src.length);
  if (nativeMask && src.length >= 32) nativeMask.mask(src, mask, out, 0, src.length);
  else for (let i = 0; i < src.length; i++) out[i] = (src[i] as number) ^ (mask[i & 3] as number);
  return out;
}

/** What a {@link FrameReader} reports. */
export interface FrameSink {
  /** A slice of a data frame's payload (unmasked, in place); valid as long as the chunk it came in. */
  data(slice: Buffer): void;
  /** A whole binary message ended; `bytes` is its total payload. */
  messageEnd(bytes: number): void;
  /** A control frame (close, ping, pong) with its whole payload. */
  control(op: number, payload: Buffer): void;
}

const enum St {
  Header,
  Payload,
}

/**
 * Incremental frame parser: feed it the socket's reads in order. Payload
 * slices are views of the chunks fed (unmasked in place), so a chunk must not
 * be reused before its slices are consumed.
 */
export class FrameReader {
  private st = St.Header;
  /** Header bytes gathered so far (a header may be split across reads). */
  private readonly hdr = Buffer.alloc(MAX_HEADER);
  private hdrHave = 0;
  private op = 0;
  private fin = false;
  private left = 0;
  private readonly mask = Buffer.alloc(4);
  private masked = false;
  private phase = 0;
  /** Inside a fragmented data message. */
  private fragmented = false;
  private messageBytes = 0;
  /** A control frame's payload, gathered (≤ 125 bytes). */
  private control: Buffer | null = null;
  private controlHave = 0;

  /**
   * `fromClient`: frames must be masked (we are the server); else they must
   * not be. `maxFrame`: a data frame declaring more payload is refused (a
   * bound on what a peer may announce, not on memory: payload is streamed).
   */
  constructor(
    private readonly fromClient: boolean,
    private readonly sink: FrameSink,
    private readonly maxFrame = Number.MAX_SAFE_INTEGER,
  ) {}

  /** Parses one read. Throws ProtocolError on a violation (the reader is then unusable). */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.st === St.Header) {
        at = this.readHeader(chunk, at);
        continue;
      }
      const take = Math.min(this.left, chunk.length - at);
      const end = at + take;
      if (this.masked) this.phase = applyMask(chunk, at, end, this.mask, this.phase);
      this.left -= take;
      if (this.control !== null) {
        chunk.copy(this.control, this.controlHave, at, end);
        this.controlHave += take;
      } else if (take > 0) {
        this.messageBytes += take;
        this.sink.data(chunk.subarray(at, end));
      }
      at = end;
      if (this.left === 0) this.frameDone();
    }
  }

  /** Gathers header bytes from `chunk[at..]`; returns where it stopped. */
  private readHeader(chunk: Buffer, at: number): number {
    while (at < chunk.length) {
      this.hdr[this.hdrHave++] = chunk[at++] as number;
      const need = this.headerLength();
      if (this.hdrHave === need) {
        this.startFrame();
        return at;
      }
    }
    return at;
  }

  /** Full header length implied by the bytes gathered so far (2 until the second byte is in). */
  private headerLength(): number {
    if (this.hdrHave < 2) return 2;
    const b1 = this.hdr[1] as number;
    const len7 = b1 & 0x7f;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
  }

  private startFrame(): void {
    const h = this.hdr;
    const b0 = h[0] as number;
    const b1 = h[1] as number;
    this.hdrHave = 0;
    if (b0 & 0x70) throw new ProtocolError('websocket: RSV bits set without a negotiated extension');
    this.fin = (b0 & 0x80) !== 0;
    this.op = b0 & 0x0f;
    this.masked = (b1 & 0x80) !== 0;
    if (this.masked !== this.fromClient) throw new ProtocolError(this.fromClient ? 'websocket: unmasked frame from a client' : 'websocket: masked frame from a server');
    const len7 = b1 & 0x7f;
    let len = len7;
    let m = 2;
    if (len7 === 126) {
      len = h.readUInt16BE(2);
      m = 4;
    } else if (len7 === 127) {
      const hi = h.readUInt32BE(2);
      if (hi > 0x1fffff) throw new ProtocolError('websocket: frame length over 2^53');
      len = hi * 0x100000000 + h.readUInt32BE(6);
      m = 10;
    }
    if (this.masked) {
      h.copy(this.mask, 0, m, m + 4);
      this.phase = 0;
      // An all-zero mask (a pinned polytun client) changes nothing: skip the XOR.
      if (this.mask.readUInt32BE(0) === 0) this.masked = false;
    }
    this.left = len;
    if (len > this.maxFrame && this.op < OP_CLOSE) throw new ProtocolError(`websocket: frame of ${len} bytes over the ${this.maxFrame}-byte limit`);
    switch (this.op) {
      case OP_CLOSE:
      case OP_PING:
      case OP_PONG:
        if (!this.fin) throw new ProtocolError('websocket: fragmented control frame');
        if (len > MAX_CONTROL_PAYLOAD) throw new ProtocolError('websocket: control frame over 125 bytes');
        this.control = Buffer.allocUnsafe(len);
        this.controlHave = 0;
        break;
      case OP_BINARY:
        if (this.fragmented) throw new ProtocolError('websocket: new message inside a fragmented one');
        this.messageBytes = 0;
        this.fragmented = !this.fin;
        break;
      case OP_CONTINUATION:
        if (!this.fragmented) throw new ProtocolError('websocket: continuation frame outside a message');
        if (this.fin) this.fragmented = false;
        break;
      case OP_TEXT:
        throw new ProtocolError('websocket: text message on a byte stream');
      default:
        throw new ProtocolError(`websocket: unknown opcode ${this.op}`);
    }
    this.st = St.Payload;
    if (len === 0) this.frameDone();
  }

  private frameDone(): void {
    this.st = St.Header;
    if (this.control !== null) {
      const payload = this.control;
      this.control = null;
      this.sink.control(this.op, payload);
    } else if (this.fin) {
      this.sink.messageEnd(this.messageBytes);
    }
  }
}
