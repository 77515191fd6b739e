/**
 * Slab-read bookkeeping of a WebSocket stream (ws-stream.ts): which socket
 * read each payload slice the stream emits was cut from, so that a read goes
 * back to its slab (core/slab-reads.ts) once the stream's reader has
 * released every slice of it. The reader releases slices one at a time, in
 * the order they were emitted (the SlabReader contract).
 */
import { Fifo } from '../core/fifo.js';
import type { SlabReader } from '../core/slab-reads.js';

/** One socket read: slices cut from it, slices released, whether it lies in a slab, whether parsing it is over. */
interface Read {
  slices: number;
  released: number;
  slab: boolean;
  done: boolean;
}

/** The SlabReader a WebSocket stream hands its reader, over the socket's own. */
export class SlabSlices implements SlabReader {
  /** Socket reads since slab reads began, oldest first. */
  private readonly reads = new Fifo<Read>();

  /**
   * @param inner the socket's slab reader.
   * @param parsing a socket read from before (not in a slab) is being parsed now: its later slices count too.
   */
  constructor(
    private readonly inner: SlabReader,
    parsing: boolean,
  ) {
    if (parsing) this.reads.push({ slices: 0, released: 0, slab: false, done: false });
  }

  /** A socket read (into a slab) starts being parsed. */
  readStarted(): void {
    this.reads.push({ slices: 0, released: 0, slab: true, done: false });
  }

  /** The read being parsed yielded one more payload slice. */
  sliced(): void {
    (this.reads.last() as Read).slices++;
  }

  /** The read being parsed is over: no more slices come from it. */
  readDone(): void {
    (this.reads.last() as Read).done = true;
    this.retire();
  }

  /** The reader is done with the oldest slice it has not released. */
  release(): void {
    const r = this.reads.peek();
    if (r === undefined) return;
    r.released++;
    this.retire();
  }

  heldBytes(): number {
    return this.inner.heldBytes();
  }

  /** Gives the socket's reader back every parsed read whose slices are all released. */
  private retire(): void {
    for (;;) {
      const r = this.reads.peek();
      if (r === undefined || !r.done || r.released < r.slices) break;
      this.reads.shift();
      if (r.slab) this.inner.release();
    }
  }
}
