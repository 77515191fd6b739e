/**
 * Slab reads for bulk sockets. Node reads every socket into a fresh 64 KiB
 * buffer: one allocation (and later one GC finalisation) per read, and a read
 * of exactly 64 KiB does not fit one session record with its frame header,
 * so it costs two records. A socket switched here reads instead into
 * consecutive slices of a larger slab (Node's `onread` user-buffer mode), of
 * at most `readSize` bytes each: a slab serves many reads and each read fits
 * one record. Slices are never reused, so a chunk may be kept (the session
 * keeps it until acknowledged) like any other buffer.
 *
 * The chunks are still emitted as 'data' on the socket, so existing
 * listeners (relays, byte counters) see no difference; pause() and resume()
 * keep working (net.Socket supports them in user-buffer mode).
 *
 * Node offers user-buffer reads only to sockets it creates with `onread`;
 * accepted ones are switched through the same internal fields, found by
 * their symbol descriptions. Where those are missing (another Node), the
 * switch reports false and the socket keeps ordinary reads.
 */
import { Socket } from 'node:net';

interface UserReadSymbols {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

let symbols: UserReadSymbols | null | undefined;

function findSymbols(): UserReadSymbols | null {
  if (symbols !== undefined) return symbols;
  const probe = new Socket();
  const own = Object.getOwnPropertySymbols(probe);
  const find = (d: string): symbol | undefined => own.find((s) => s.description === d);
  const buffer = find('kBuffer');
  const callback = find('kBufferCb');
  const generator = find('kBufferGen');
  probe.destroy();
  symbols = buffer && callback && generator ? { buffer, callback, generator } : null;
  return symbols;
}

/** The largest read that fits one session record with its DATA frame header and an ACK. */
export const SLAB_READ_SIZE = 65504;
const SLAB_SIZE = 4 * SLAB_READ_SIZE;

interface UserBufferHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

/**
 * Switches a connected socket to slab reads. Returns false (and changes
 * nothing) when it cannot: not a plain TCP socket, closed, or an unknown Node.
 */
export function enableSlabReads(sock: Socket, readSize = SLAB_READ_SIZE): boolean {
  const sym = findSymbols();
  const handle = (sock as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (!sym || !handle || typeof handle.useUserBuffer !== 'function' || sock.destroyed || sock.connecting) return false;
  const rec = sock as unknown as Record<symbol, unknown>;
  if (rec[sym.buffer]) return true; // already in user-buffer mode
  const slabSize = Math.max(SLAB_SIZE, readSize);
  let slab = Buffer.allocUnsafeSlow(slabSize);
  let off = 0;
  const next = (): Buffer => {
    if (slab.length - off < readSize) {
      slab = Buffer.allocUnsafeSlow(slabSize);
      off = 0;
    }
    return slab.subarray(off, off + readSize);
  };
  const onRead = (n: number, buf: Buffer): boolean => {
    off += n;
    sock.emit('data', buf.subarray(0, n));
    return true;
  };
  const first = next();
  rec[sym.generator] = next;
  rec[sym.callback] = onRead;
  rec[sym.buffer] = first;
  handle.useUserBuffer(first);
  return true;
}
