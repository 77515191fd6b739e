/**
 * The compliance suite every record channel runs (the record-channel seam,
 * src/secure/record-channel.ts), as every stream carrier runs
 * test/unit/carriers/stream-compliance.ts: an implementation's test file
 * calls `recordChannelCompliance(name, setup)` with a factory of connected
 * pairs and gets the whole contract checked on its own transport.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { LimitError, PolytunError } from '../../../src/core/errors.js';
import type { RecordChannel } from '../../../src/secure/record-channel.js';
import { releaseRecordBuffer } from '../../../src/secure/record-pool.js';
import { RECORD_DATA } from '../../../src/secure/record.js';
import { waitUntil } from '../../helpers/eventually.js';

/** Two connected channels, and a way to put raw bytes on the wire. */
export interface RecordChannelPair {
  /** One end (the dialling side). Not started: the tests set handlers first. */
  a: RecordChannel;
  /** The other end. Not started. */
  b: RecordChannel;
  /** Puts `bytes` on the transport from a's side, unsealed, as a corrupted or forged record would arrive at b. */
  injectToB(bytes: Buffer): void;
  /**
   * Stops the transport from handing b what arrives (a slow reader under b,
   * as a full receive buffer); the returned function lets it go on. A
   * channel reads eagerly by design (flow control is the session's), so
   * this is how a test makes a's writes back up.
   */
  stallB(): () => void;
}

/** What an implementation's test file provides. */
export interface RecordChannelFixture {
  /** A fresh connected pair; the fixture tears it down after the test (t.after). */
  pair(t: TestContext): Promise<RecordChannelPair>;
  /** Whether this transport delivers every record in order (`reliable`). */
  reliable: boolean;
  /**
   * Whether garbage on the wire ends the channel (a byte stream cannot find
   * the next record after it) or is dropped (datagrams: the next one is
   * whole). @default reliable
   */
  garbageCloses?: boolean;
  /** The record protection both ends must report. */
  protection: 'aead' | 'tls-bound';
}

/** Received records and how each channel ended. */
class Ends {
  readonly got: Buffer[] = [];
  readonly gotA: Buffer[] = [];
  closedA: { err: Error | undefined } | undefined;
  closedB: { err: Error | undefined } | undefined;
  drains = 0;

  constructor(readonly p: RecordChannelPair) {
    const keep = (into: Buffer[]) => (pt: Buffer, pooled: Buffer | undefined) => {
      into.push(Buffer.from(pt));
      if (pooled) releaseRecordBuffer(pooled);
    };
    p.b.onRecord(keep(this.got));
    p.a.onRecord(keep(this.gotA));
    p.a.onDrain(() => this.drains++);
    p.a.onClose((err) => (this.closedA = { err }));
    p.b.onClose((err) => (this.closedB = { err }));
    p.a.start();
    p.b.start();
  }
}

/** A record plaintext of `len` bytes: type byte, then random bytes. */
function record(len: number): Buffer {
  const r = randomBytes(len);
  r[0] = RECORD_DATA;
  return r;
}

/** Writes `records` from `ch`, waiting for drain whenever the channel asks to. */
async function writeAll(ends: Ends, ch: RecordChannel, records: readonly Buffer[]): Promise<void> {
  for (const r of records) {
    if (!ch.writable) {
      const before = ends.drains;
      await waitUntil(() => ends.drains > before || ch.writable, 'drain');
    }
    ch.write(r, r.length);
  }
}

/** Runs the record-channel contract against the pairs `fx` makes. */
export function recordChannelCompliance(name: string, fx: RecordChannelFixture): void {
  describe(`record channel compliance: ${name}`, () => {
    it('says what it is: reliability, record size, protection', async (t) => {
      const { a, b } = await fx.pair(t);
      for (const ch of [a, b]) {
        assert.equal(ch.reliable, fx.reliable);
        assert.ok(Number.isInteger(ch.maxRecord) && ch.maxRecord >= 1024, `maxRecord ${ch.maxRecord}`);
        assert.equal(ch.info.protection, fx.protection);
        assert.equal(ch.info.handshakeHash.length, 32);
      }
      assert.deepEqual(a.info.handshakeHash, b.info.handshakeHash);
    });

    it('delivers records whole and in order, both ways, including those that arrived before start()', async (t) => {
      const p = await fx.pair(t);
      const early = [record(1), record(100)];
      for (const r of early) p.a.write(r, r.length);
      await new Promise<void>((r) => setImmediate(r));
      const ends = new Ends(p);
      // A datagram channel's records are small (one per datagram): sizes past its maxRecord are left out.
      const sizes = [2, 17, 1000, 4095, 4096, 4097, 16_384, 40_000, p.a.maxRecord].filter((n) => n <= p.a.maxRecord);
      const records = [...early, ...Array.from({ length: 120 }, (_, i) => record(sizes[i % sizes.length] as number))];
      await writeAll(ends, p.a, records.slice(early.length));
      const back = [record(5), record(p.b.maxRecord)];
      await writeAll(ends, p.b, back);
      await waitUntil(() => ends.got.length >= records.length && ends.gotA.length >= back.length, 'all records');
      assert.equal(ends.got.length, records.length);
      for (let i = 0; i < records.length; i++) assert.ok((ends.got[i] as Buffer).equals(records[i] as Buffer), `record ${i} intact and in place`);
      assert.deepEqual(ends.gotA, back);
      await waitUntil(() => p.b.bytesIn === p.a.bytesOut, 'byte counts agree');
      assert.equal(ends.closedA, undefined);
      assert.equal(ends.closedB, undefined);
    });

    it('takes records of 1 to maxRecord bytes and refuses others with LimitError, staying usable', async (t) => {
      const p = await fx.pair(t);
      const ends = new Ends(p);
      const big = record(p.a.maxRecord + 1);
      assert.throws(() => p.a.write(big, big.length), LimitError);
      assert.throws(() => p.a.write(big, 0), LimitError);
      const whole = big.subarray(0, p.a.maxRecord);
      p.a.write(whole, whole.length);
      await waitUntil(() => ends.got.length === 1, 'the largest record');
      assert.ok((ends.got[0] as Buffer).equals(whole));
      assert.equal(ends.closedA, undefined);
    });

    it('backpressure: write() false, then the drain handler, and nothing lost', async (t) => {
      const p = await fx.pair(t);
      const ends = new Ends(p);
      const sent: Buffer[] = [];
      const resume = p.stallB();
      // A channel bounds what it queues: it asks for a drain long before
      // 64 MiB (the bound of this loop, above any kernel buffers) are written.
      for (let bytes = 0; bytes < 64 * 1024 * 1024; bytes += p.a.maxRecord) {
        const r = record(p.a.maxRecord);
        sent.push(r);
        if (!p.a.write(r, r.length)) break;
      }
      assert.ok(sent.length * p.a.maxRecord < 64 * 1024 * 1024, 'write() returned false');
      assert.equal(ends.drains, 0);
      resume();
      await waitUntil(() => ends.drains > 0, 'the drain handler');
      assert.equal(p.a.writable, true);
      await waitUntil(() => ends.got.length === sent.length, 'every record');
      for (let i = 0; i < sent.length; i++) assert.ok((ends.got[i] as Buffer).equals(sent[i] as Buffer), `record ${i}`);
    });

    it('close(): records written before it arrive, then both ends close, the peer cleanly; later writes are refused', async (t) => {
      const p = await fx.pair(t);
      const ends = new Ends(p);
      const records = [record(10), record(Math.min(5000, p.a.maxRecord - 1)), record(p.a.maxRecord)];
      await writeAll(ends, p.a, records);
      p.a.close();
      p.a.close(); // idempotent
      const late = record(10);
      assert.equal(p.a.write(late, late.length), false, 'a write after close() is refused');
      assert.equal(p.a.writable, false);
      await waitUntil(() => ends.closedA !== undefined && ends.closedB !== undefined, 'both ends closed');
      assert.equal(ends.closedB?.err, undefined, 'the peer sees a clean end');
      // How our own end closes is the carrier's: the peer's channel tears its
      // side down at our end, which over WebSocket (no half-close) reads here
      // as a reset; nobody is listening by then (the session closed first).
      assert.deepEqual(ends.got, records);
      assert.equal(p.b.write(late, late.length), false, 'the closed peer refuses writes');
      assert.equal(p.b.writable, false);
      let lateClose: { err: Error | undefined } | undefined;
      p.b.onClose((err) => (lateClose = { err }));
      assert.ok(lateClose, 'a close handler added after the end runs at once');
    });

    it('abort(err): our end closes with err at once, the peer closes too, and nothing more is delivered', async (t) => {
      const p = await fx.pair(t);
      const ends = new Ends(p);
      const why = new PolytunError('ERR_ABORTED', 'test abort');
      p.a.abort(why);
      assert.equal(ends.closedA?.err, why);
      p.a.abort(new Error('second')); // idempotent
      assert.equal(ends.closedA?.err, why);
      const late = record(10);
      assert.equal(p.a.write(late, late.length), false);
      await waitUntil(() => ends.closedB !== undefined, 'the peer closed');
      assert.equal(ends.got.length, 0);
      assert.equal(p.b.writable, false);
    });

    // Garbage: a stream channel closes on it; a datagram channel cannot (anyone can send a
    // datagram to its port), so it drops and counts it. Each fixture gets the case that applies.
    if (fx.garbageCloses ?? fx.reliable)
      it('garbage on the wire closes the receiver with a typed error and delivers nothing', async (t) => {
      const p = await fx.pair(t);
      const ends = new Ends(p);
      const ok = record(50);
      p.a.write(ok, ok.length);
      await waitUntil(() => ends.got.length === 1, 'a good record first');
      // More than one record's worth: whatever length the garbage header claims, a whole "record" arrives.
      p.injectToB(randomBytes(70_000));
      await waitUntil(() => ends.closedB !== undefined, 'the receiver closed');
      const err = ends.closedB?.err;
      assert.ok(err instanceof PolytunError, `typed error, got ${String(err)}`);
      assert.ok(['ERR_AUTH', 'ERR_PROTOCOL'].includes(err.code), err.code);
      assert.equal(ends.got.length, 1);
      await waitUntil(() => ends.closedA !== undefined, 'the sender sees the end');
    });

    if (!(fx.garbageCloses ?? fx.reliable))
      it('datagrams: garbage is dropped, delivers nothing, and the channel stays open', async (t) => {
      const p = await fx.pair(t);
      const ends = new Ends(p);
      const before = p.b.bytesIn;
      for (const n of [1, 12, 28, 29, 64, 600, Math.min(p.a.maxRecord, 1200)]) p.injectToB(randomBytes(n));
      const ok = record(50);
      p.a.write(ok, ok.length);
      await waitUntil(() => ends.got.length === 1, 'a good record after the garbage');
      assert.ok((ends.got[0] as Buffer).equals(ok));
      assert.equal(p.b.bytesIn - before, p.a.bytesOut, 'only the good datagram counts as received');
      assert.equal(ends.closedA, undefined);
      assert.equal(ends.closedB, undefined);
    });
  });
}
