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
import { Fifo } from './fifo.js';

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

/**
 * An idle socket's read buffer. A socket that read nothing for two sweeps
 * (2–3 s) gives its slabs up and reads into a buffer of this size, copying
 * out what arrives; a read that fills it means bulk again, and slabs return.
 * Without this, every connection that once moved bulk data kept a slab (and
 * its spares) for as long as it stayed open.
 */
export const PARKED_READ = 16 * 1024;
/** Interval of the idle sweep. */
export const SLAB_SWEEP_MS = 1000;

interface UserBufferHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

/** A socket in slab-read mode. */
export interface SlabReader {
  /**
   * The oldest chunk not yet released is no longer referenced by anyone
   * (only with `recycle`): once all chunks of a slab are released, the slab
   * serves reads again instead of becoming garbage.
   */
  release(): void;
  /** Bytes of read buffers this socket holds now (slabs, spares, the parked buffer): tests and stats. */
  heldBytes(): number;
}

interface Slab {
  buf: Buffer;
  chunks: number;
  released: number;
}

/** Free slabs a socket keeps for reuse while it reads in bulk (with recycle). */
const SPARE_SLABS = 2;

/** Options of {@link enableSlabReads}. */
export interface SlabReadOptions {
  /** Reuse slabs; the caller releases every emitted chunk, in order. @default false */
  recycle?: boolean;
  /** Largest single read. @default SLAB_READ_SIZE */
  readSize?: number;
  /** Bytes per slab, at least readSize. @default 4 × SLAB_READ_SIZE */
  slabSize?: number;
}

/** Readers with slabs, checked for idleness every SLAB_SWEEP_MS. */
interface Sweepable {
  reads: number;
  idleSweeps: number;
  park(): void;
}
const sweepable = new Set<Sweepable>();
let sweepTimer: NodeJS.Timeout | undefined;

/** One idle sweep (exported for tests): readers that read nothing for two sweeps in a row park. */
export function sweepSlabReaders(): void {
  for (const r of sweepable) {
    if (r.reads > 0) r.idleSweeps = 0;
    else if (++r.idleSweeps >= 2) r.park();
    r.reads = 0;
  }
}

function watch(r: Sweepable): void {
  sweepable.add(r);
  if (!sweepTimer) {
    sweepTimer = setInterval(() => {
      sweepSlabReaders();
      if (sweepable.size === 0) {
        clearInterval(sweepTimer);
        sweepTimer = undefined;
      }
    }, SLAB_SWEEP_MS);
    sweepTimer.unref();
  }
}

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
export function enableSlabReads(sock: Socket, opts: SlabReadOptions = {}): SlabReader | null {
  const readSize = opts.readSize ?? SLAB_READ_SIZE;
  const sym = findSymbols();
  const handle = (sock as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (!sym || !handle || typeof handle.useUserBuffer !== 'function' || sock.destroyed || sock.connecting) return null;
  const rec = sock as unknown as Record<symbol, unknown>;
  if (rec[sym.buffer]) return null; // already in user-buffer mode, not ours
  const slabSize = Math.max(opts.slabSize ?? SLAB_SIZE, readSize);
  const recycle = opts.recycle === true;
  const spare: Buffer[] = [];
  /**
   * With `recycle`: slabs with chunks not yet released, oldest first (the
   * one being filled among them). Without, nothing is tracked (a slab is
   * garbage once its chunks are).
   */
  const live: Slab[] = [];
  /** With `recycle`: the slab of each emitted chunk not yet released, in order (null: a parked copy). */
  const owners = new Fifo<Slab | null>();
  /** The slab being filled; null while parked. */
  let cur: Slab | null = null;
  let off = 0;
  let parked: Buffer | null = null;
  const retireDone = (): void => {
    // Slabs whose every chunk came back, and that are not being filled, serve reads again.
    while (live.length > 0) {
      const s = live[0] as Slab;
      if (s === cur || s.released !== s.chunks) break;
      live.shift();
      if (cur !== null && spare.length < SPARE_SLABS) spare.push(s.buf);
    }
  };
  const next = (): Buffer => {
    if (parked !== null) return parked;
    if (cur === null || cur.buf.length - off < readSize) {
      cur = { buf: spare.pop() ?? Buffer.allocUnsafeSlow(slabSize), chunks: 0, released: 0 };
      off = 0;
      if (recycle) {
        live.push(cur);
        retireDone();
      }
    }
    return cur.buf.subarray(off, off + readSize);
  };
  const state: Sweepable = {
    reads: 0,
    idleSweeps: 0,
    park: () => {
      sweepable.delete(state);
      if (sock.destroyed) return;
      // Reads go to a small buffer from now on; the slab is left to its chunks.
      parked = Buffer.allocUnsafeSlow(PARKED_READ);
      cur = null;
      spare.length = 0;
      if (recycle) retireDone();
      rec[sym.buffer] = parked;
      handle.useUserBuffer?.(parked);
    },
  };
  const onRead = (n: number, buf: Buffer): boolean => {
    state.reads++;
    if (buf === parked) {
      // Copied: the parked buffer is read into again.
      const copy = Buffer.from(buf.subarray(0, n));
      if (n === buf.length) {
        parked = null; // filled: bulk again, slabs from the next read
        state.idleSweeps = 0;
        watch(state);
      }
      if (recycle) owners.push(null);
      sock.emit('data', copy);
      return true;
    }
    const slab = cur as Slab;
    off += n;
    slab.chunks++;
    if (recycle) owners.push(slab);
    sock.emit('data', buf.subarray(0, n));
    return true;
  };
  const first = next();
  rec[sym.generator] = next;
  rec[sym.callback] = onRead;
  rec[sym.buffer] = first;
  handle.useUserBuffer(first);
  watch(state);
  sock.once('close', () => sweepable.delete(state));
  return {
    release: recycle
      ? () => {
          const s = owners.shift();
          if (!s) return; // none emitted, or a parked copy
          s.released++;
          retireDone();
        }
      : () => undefined,
    heldBytes: () => {
      let n = parked?.length ?? 0;
      for (const b of spare) n += b.length;
      if (recycle) for (const s of live) n += s.buf.length;
      else if (cur) n += cur.buf.length;
      return n;
    },
  };
}
