/**
 * The datagram lane: unreliable, unordered with respect to streams, never
 * resent. Outgoing datagrams wait in a bounded queue for the next record
 * (after control and resends, before stream data); when no path is left
 * they are dropped. Incoming ones go to their application (lanes.ts).
 */
import { MAX_RECORD_PLAINTEXT } from '../secure/record.js';
import { DATAGRAM_HEADER, writeDatagram } from './frames.js';

interface Queued {
  flow: number;
  payload: Buffer;
}

/** The largest datagram payload one record can carry. */
export const MAX_DATAGRAM = MAX_RECORD_PLAINTEXT - 1 - DATAGRAM_HEADER;

export class DatagramLane {
  private queue: Queued[] = [];
  private queued = 0;
  /** Datagrams refused (no path, queue full, too large). */
  dropped = 0;

  constructor(private readonly maxQueue: number) {}

  /** Queues a datagram; false (counted as dropped) when `open` is false, it is too large, or the queue is full. */
  send(open: boolean, flow: number, payload: Buffer): boolean {
    if (!open || payload.length > MAX_DATAGRAM || this.queued + payload.length > this.maxQueue) {
      this.dropped++;
      return false;
    }
    this.queue.push({ flow, payload });
    this.queued += payload.length;
    return true;
  }

  /** Writes queued datagrams into `buf` from `off` (as many as fit, in order); returns the end. */
  write(buf: Buffer, off: number): number {
    let i = 0;
    const q = this.queue;
    for (; i < q.length; i++) {
      const d = q[i] as Queued;
      if (buf.length - off < DATAGRAM_HEADER + d.payload.length) break;
      off = writeDatagram(buf, off, d.flow, d.payload);
      this.queued -= d.payload.length;
    }
    if (i > 0) this.queue = i === q.length ? [] : q.slice(i);
    return off;
  }

  /** True when datagrams wait. */
  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** No path left (or closed): what waits is dropped. */
  clear(): void {
    this.queue = [];
    this.queued = 0;
  }
}
