/**
 * The sending side of a WebSocket stream (ws-stream.ts): how written chunks
 * become binary messages (big chunks sliced to the frame limit, runs of
 * small ones merged: a header each would cost more), framed, masked as the
 * end requires, and handed to the socket in one writev.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { hasHeadroom } from '../core/headroom.js';
import { MAX_HEADER, OP_BINARY, frameHeader, headerLength, maskedCopy, writeHeader } from './ws-frames.js';

/**
 * How this end masks the frames it sends (RFC 6455 §5.3): a server never; a
 * client with a random key per frame, or with an all-zero key, which changes
 * no byte (see WsStreamRole.mask).
 */
export type Masking = 'none' | 'zero' | 'random';

const ZERO_MASK = Buffer.alloc(4);

/** The masking key of one frame (null: unmasked). */
function maskFor(masking: Masking): Buffer | null {
  return masking === 'none' ? null : masking === 'zero' ? ZERO_MASK : randomBytes(4);
}

/** Chunks smaller than this are merged into one message (a frame header each would cost more). */
const COALESCE_BELOW = 16 * 1024;

/**
 * Splits/merges written chunks into WebSocket message payloads: chunks
 * larger than `max` are sliced (no copy), runs of small chunks are merged,
 * empty chunks dropped (an empty message means FIN).
 */
export function framePieces(chunks: readonly Buffer[], max: number): Buffer[] {
  const out: Buffer[] = [];
  let group: Buffer[] = [];
  let groupBytes = 0;
  const flush = (): void => {
    if (group.length === 1) out.push(group[0] as Buffer);
    else if (group.length > 1) out.push(Buffer.concat(group, groupBytes));
    group = [];
    groupBytes = 0;
  };
  for (const c of chunks) {
    if (c.length === 0) continue;
    if (c.length >= COALESCE_BELOW) {
      flush();
      for (let off = 0; off < c.length; off += max) out.push(c.subarray(off, off + max));
      continue;
    }
    if (groupBytes + c.length > max) flush();
    group.push(c);
    groupBytes += c.length;
  }
  flush();
  return out;
}

/** One small frame of its own (control frames, and the empty message that ends a side). */
export function writeFrame(socket: Socket, op: number, payload: Buffer, masking: Masking, cb?: (err?: Error | null) => void): void {
  const mask = maskFor(masking);
  const body = masking === 'random' && payload.length > 0 ? maskedCopy(payload, mask as Buffer) : payload;
  if (body.length === 0) socket.write(frameHeader(op, true, 0, mask), cb);
  else {
    socket.cork();
    socket.write(frameHeader(op, true, body.length, mask));
    socket.write(body, cb);
    socket.uncork();
  }
}

/**
 * Written chunks as binary messages: one frame per piece (framePieces), all
 * in one socket writev; `cb` runs when the socket has taken the last of them
 * (so a writer may reuse its buffers then, and a slow peer's backpressure
 * reaches the writer through the socket's). A piece written with headroom
 * (core/headroom.ts) gets its header in place: one buffer per frame.
 */
export function writeMessages(socket: Socket, chunks: readonly Buffer[], maxFrame: number, masking: Masking, cb: (err?: Error | null) => void): void {
  const pieces = framePieces(chunks, maxFrame);
  if (pieces.length === 0) return cb();
  const headers = Buffer.allocUnsafe(pieces.length * MAX_HEADER);
  let h = 0;
  socket.cork();
  for (let i = 0; i < pieces.length; i++) {
    let piece = pieces[i] as Buffer;
    const done = i === pieces.length - 1 ? (err?: Error | null) => cb(err) : undefined;
    const mask = maskFor(masking);
    if (masking !== 'random' && hasHeadroom(piece)) {
      // The header goes in the room the writer left: one contiguous frame.
      const hn = headerLength(piece.length, mask !== null);
      const frame = Buffer.from(piece.buffer, piece.byteOffset - hn, hn + piece.length);
      writeHeader(frame, 0, OP_BINARY, true, piece.length, mask);
      socket.write(frame, done);
      continue;
    }
    const n = writeHeader(headers, h, OP_BINARY, true, piece.length, mask);
    socket.write(headers.subarray(h, h + n));
    h += n;
    if (masking === 'random') piece = maskedCopy(piece, mask as Buffer);
    socket.write(piece, done);
  }
  socket.uncork();
}
