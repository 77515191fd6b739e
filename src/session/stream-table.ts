/**
 * The streams of a session: ids (odd for the client's, even for the
 * server's), the concurrency limit, the peer's highest id, and the
 * round-robin ring of streams with something to send (record-writer.ts
 * takes one frame per stream per turn). Like quic-go's streams_map.
 */
import type { Clock } from '../core/clock.js';
import { LimitError, ProtocolError } from '../core/errors.js';
import { F_RST, type SeqFrame } from './frames.js';
import { PolyStream, type StreamHost } from './stream.js';

/** The window settings every stream of a session gets. */
export interface StreamSettings {
  /** Initial receive window (initialStreamWindow()). */
  window: number;
  /** A keeping-up stream's window. */
  fastWindow: number;
  maxWindow: number;
  /** What the peer granted each new stream. */
  peerWindow: number;
  highWaterMark: number;
  clock: Clock;
}

export class StreamTable {
  readonly streams = new Map<number, PolyStream>();
  /** Streams with something to send, in turn order. */
  ring: PolyStream[] = [];
  /** RST frames to send (sequenced: they go before new stream frames). */
  readonly pendingRst: SeqFrame[] = [];
  private nextId: number;
  private peerMaxId = 0;

  constructor(
    private readonly host: StreamHost,
    private readonly role: 'client' | 'server',
    readonly maxStreams: number,
    private readonly settings: StreamSettings,
  ) {
    this.nextId = role === 'client' ? 1 : 2;
  }

  get size(): number {
    return this.streams.size;
  }

  get(sid: number): PolyStream | undefined {
    return this.streams.get(sid);
  }

  /** A stream we open; the caller has checked the session's state. */
  open(openPayload: Buffer): PolyStream {
    if (this.streams.size >= this.maxStreams) throw new LimitError('streams', `stream limit of ${this.maxStreams} reached`);
    const id = this.nextId;
    this.nextId += 2;
    const s = this.create(id, openPayload, true);
    this.wake(s);
    return s;
  }

  /**
   * The peer opened `sid`. Throws on an id it may not use; returns false when
   * the stream is to be refused (full, or `accept` false), else true and the
   * caller calls {@link accept}.
   */
  admit(sid: number, accept: boolean): boolean {
    if (!this.isPeerId(sid) || sid <= this.peerMaxId) throw new ProtocolError(`bad stream id ${sid} in OPEN`);
    this.peerMaxId = sid;
    return accept && this.streams.size < this.maxStreams;
  }

  /** Creates the stream the peer opened (after {@link admit}). The payload is copied: it outlives the record. */
  accept(sid: number, payload: Buffer): PolyStream {
    return this.create(sid, Buffer.from(payload), false);
  }

  private create(id: number, openPayload: Buffer, locallyOpened: boolean): PolyStream {
    const st = this.settings;
    const s = new PolyStream(this.host, id, openPayload, {
      window: st.window,
      fastWindow: st.fastWindow,
      maxWindow: st.maxWindow,
      peerWindow: st.peerWindow,
      locallyOpened,
      highWaterMark: st.highWaterMark,
      clock: st.clock,
    });
    this.streams.set(id, s);
    return s;
  }

  /** `s` has something to send: into the ring (once). */
  wake(s: PolyStream): void {
    if (!s.queued) {
      s.queued = true;
      this.ring.push(s);
    }
  }

  /** Queues an RST for stream `sid` (refused, or ended by us without a clean close). */
  queueReset(sid: number, code: number): void {
    this.pendingRst.push({ type: F_RST, seq: 0, sid, payload: undefined, code });
  }

  /** Forgets `s` (if it is still the stream of its id). */
  remove(s: PolyStream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
  }

  private isPeerId(sid: number): boolean {
    return (sid % 2 === 1) === (this.role === 'server');
  }

  /** A frame for a stream we do not have: fine if it was opened once (dropped), a protocol error if never. */
  checkKnownId(sid: number): void {
    const known = this.isPeerId(sid) ? sid <= this.peerMaxId : sid < this.nextId;
    if (!known) throw new ProtocolError(`frame for stream ${sid} that was never opened`);
  }

  /** Destroys every stream (with `err`, or quietly). */
  destroyAll(err?: Error): void {
    for (const s of [...this.streams.values()]) s.destroy(err);
  }

  clear(): void {
    this.streams.clear();
    this.ring = [];
  }
}
