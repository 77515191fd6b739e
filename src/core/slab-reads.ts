/**
 * Slab reads for bulk sockets. Node reads every socket into a fresh 64 KiB
 * buffer: one allocation (and later one GC finalisation) per read, and a read
 * of exactly 64 KiB does not fit one session record with its frame header,
 * so it costs two records. A socket switched here reads instead into
 * consecutive slices of a larger slab (Node's `onread` user-buffer mode), of
 * at most `readSize` bytes each: a slab serves many reads and each read fits
 * one record. By default slices are never reused, so a chunk may be kept
 * like any other buffer; with `recycle`, the caller says when each chunk is
 * free and full slabs serve reads again.
 *
 * The chunks are still emitted as 'data' on the socket, so existing
 * listeners (relays, byte counters) see no difference; pause() and resume()
 * keep working (net.Socket supports them in user-buffer mode).
 *
 * Node offers user-buffer reads only to sockets it creates with `onread`;
 * accepted ones are switched through the same internal fields, found by
 * their symbol descriptions. Where those are missing (another Node), the
 * switch returns null and the socket keeps ordinary reads.
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

/** A socket in slab-read mode. */
export interface SlabReader {
  /**
   * The oldest chunk not yet released is no longer referenced by anyone
   * (only with `recycle`): once all chunks of a full slab are released, the
   * slab serves reads again instead of becoming garbage.
   */
  release(): void;
}

interface Slab {
  buf: Buffer;
  chunks: number;
  released: number;
}

/** Free slabs a socket keeps for reuse. */
const SPARE_SLABS = 2;

/**
 * Switches a connected socket to slab reads. Returns null (and changes
 * nothing) when it cannot: not a plain TCP socket, closed, or an unknown Node.
 *
 * With `recycle`, slabs are reused: the caller must call release() once per
 * emitted chunk, in emission order, when nothing references it any more
 * (every 'data' listener included). Each new ArrayBuffer counts towards
 * V8's old-generation limit until a sweep after the next scavenge frees
 * it; at 300 MB/s of fresh read buffers that starts a full mark-compact
 * every few dozen milliseconds, so a relay reuses its slabs.
 */
export function enableSlabReads(sock: Socket, opts: { recycle?: boolean; readSize?: number } = {}): SlabReader | null {
  const readSize = opts.readSize ?? SLAB_READ_SIZE;
  const sym = findSymbols();
  const handle = (sock as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (!sym || !handle || typeof handle.useUserBuffer !== 'function' || sock.destroyed || sock.connecting) return null;
  const rec = sock as unknown as Record<symbol, unknown>;
  if (rec[sym.buffer]) return null; // already in user-buffer mode, not ours
  const slabSize = Math.max(SLAB_SIZE, readSize);
  const recycle = opts.recycle === true;
  const spare: Buffer[] = [];
  /**
   * With `recycle`: slabs with chunks not yet released, oldest first; the
   * last is the one being filled. Without, nothing is tracked (a slab is
   * garbage once its chunks are).
   */
  const live: Slab[] = [];
  let cur: Slab = { buf: Buffer.allocUnsafeSlow(slabSize), chunks: 0, released: 0 };
  if (recycle) live.push(cur);
  let off = 0;
  const retireDone = (): void => {
    // Full slabs whose every chunk came back serve reads again.
    while (live.length > 1 && (live[0] as Slab).released === (live[0] as Slab).chunks) {
      const s = live.shift() as Slab;
      if (spare.length < SPARE_SLABS) spare.push(s.buf);
    }
  };
  const next = (): Buffer => {
    if (cur.buf.length - off < readSize) {
      cur = { buf: spare.pop() ?? Buffer.allocUnsafeSlow(slabSize), chunks: 0, released: 0 };
      off = 0;
      if (recycle) {
        live.push(cur);
        retireDone();
      }
    }
    return cur.buf.subarray(off, off + readSize);
  };
  const onRead = (n: number, buf: Buffer): boolean => {
    off += n;
    cur.chunks++;
    sock.emit('data', buf.subarray(0, n));
    return true;
  };
  const first = next();
  rec[sym.generator] = next;
  rec[sym.callback] = onRead;
  rec[sym.buffer] = first;
  handle.useUserBuffer(first);
  return {
    release: recycle
      ? () => {
          const head = live.find((s) => s.released < s.chunks);
          if (!head) return;
          head.released++;
          retireDone();
        }
      : () => undefined,
  };
}
