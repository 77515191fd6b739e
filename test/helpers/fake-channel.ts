/**
 * A pair of in-memory stand-ins for SecureChannel that hand each plaintext
 * record to the other end on a microtask, without crypto or sockets: a
 * session exchange over them stays in the microtask/nextTick phases, so no
 * timer can interleave and the records come out byte for byte the same on
 * every run. Every record written is kept (copied) in `log`.
 */
import type { SecureChannel } from '../../src/secure/channel.js';

export interface LoggedRecord {
  from: 'a' | 'b';
  bytes: Buffer;
}

export class FakeChannel {
  readonly info = { remote: 'fake', protection: 'aead' as const };
  bytesIn = 0;
  bytesOut = 0;
  queuedBytes = 0;
  writable = true;
  peer: FakeChannel | undefined;
  /** Records written are counted but never arrive (a link that went silent). */
  blackhole = false;
  private recordHandler: (pt: Buffer, pooled: Buffer | undefined) => void = () => undefined;
  private closeHandlers: ((err?: Error) => void)[] = [];
  private closed = false;

  constructor(
    readonly name: 'a' | 'b',
    private readonly log: LoggedRecord[],
  ) {}

  start(): void {}
  onRecord(h: (pt: Buffer, pooled: Buffer | undefined) => void): void {
    this.recordHandler = h;
  }
  onDrain(_h: () => void): void {}
  onClose(h: (err?: Error) => void): void {
    this.closeHandlers.push(h);
  }
  write(buf: Buffer, len: number): boolean {
    if (this.closed) return false;
    const copy = Buffer.from(buf.subarray(0, len));
    this.log.push({ from: this.name, bytes: copy });
    this.bytesOut += len;
    const peer = this.peer;
    if (!this.blackhole) queueMicrotask(() => peer?.receive(copy));
    return true;
  }
  private receive(pt: Buffer): void {
    if (this.closed) return;
    this.bytesIn += pt.length;
    this.recordHandler(pt, undefined);
  }
  close(): void {
    this.abort();
  }
  abort(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.writable = false;
    for (const h of this.closeHandlers) h(err);
  }
  asChannel(): SecureChannel {
    return this as unknown as SecureChannel;
  }
}

export function fakeChannelPair(log: LoggedRecord[] = []): { a: FakeChannel; b: FakeChannel; log: LoggedRecord[] } {
  const a = new FakeChannel('a', log);
  const b = new FakeChannel('b', log);
  a.peer = b;
  b.peer = a;
  return { a, b, log };
}
