/**
 * Batches writes to a TUN device: the packets pushed during one synchronous
 * run (one session record can carry many datagrams) reach the device in one
 * write() call, a microtask later, so the addon writes them in one go.
 * Shared by the client's packet path and the server's router.
 */
import type { TunWriteResult } from '../native/addon.js';

/** What the batch writes to: a TUN device, or a fake in tests. */
export interface TunSink {
  /** `meta`: each packet's offload state (vnet.ts), already checked. */
  write(packets: readonly Buffer[], meta?: readonly number[]): TunWriteResult;
  readonly closed: boolean;
}

/** See the file comment. `done` gets each write's result (for counters). */
export class TunWriteBatch {
  private packets: Buffer[] = [];
  private meta: number[] = [];
  private queued = false;

  constructor(
    private readonly sink: TunSink,
    private readonly done: (r: TunWriteResult) => void,
  ) {}

  push(p: Buffer, meta: number): void {
    this.packets.push(p);
    this.meta.push(meta);
    if (!this.queued) {
      this.queued = true;
      queueMicrotask(this.flush);
    }
  }

  /** Drops what is waiting (the path stopped). */
  clear(): void {
    this.packets = [];
    this.meta = [];
  }

  private readonly flush = (): void => {
    this.queued = false;
    const packets = this.packets;
    const meta = this.meta;
    this.clear();
    if (packets.length === 0 || this.sink.closed) return;
    this.done(this.sink.write(packets, meta));
  };
}
