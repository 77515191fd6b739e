import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { PassThrough, Readable, Writable } from 'node:stream';
import { relay } from '../../../src/core/relay.js';

/** A writable that records each _write/_writev batch and completes writes only when told to. */
function sink(hwm = 16 * 1024): { w: Writable; batches: Buffer[][]; release: () => void; hold: boolean } {
  const state = { hold: false, pending: [] as (() => void)[] };
  const batches: Buffer[][] = [];
  const done = (cb: () => void): void => {
    if (state.hold) state.pending.push(cb);
    else cb();
  };
  const w = new Writable({
    highWaterMark: hwm,
    write(chunk: Buffer, _e, cb) {
      batches.push([chunk]);
      done(cb);
    },
    writev(chunks, cb) {
      batches.push(chunks.map((c) => c.chunk as Buffer));
      done(cb);
    },
  });
  return {
    w,
    batches,
    get hold() {
      return state.hold;
    },
    set hold(v: boolean) {
      state.hold = v;
    },
    release() {
      state.hold = false;
      for (const cb of state.pending.splice(0)) cb();
    },
  };
}

describe('relay', () => {
  it('writes the chunks of one tick as one batch, in order, and ends the destination', async () => {
    const src = new PassThrough();
    const s = sink();
    relay(src, s.w);
    const parts = [0, 1, 2, 3].map((i) => Buffer.alloc(16 * 1024, i));
    for (const p of parts) src.write(p); // one tick, like a record's four frames
    src.end();
    await once(s.w, 'finish');
    assert.deepEqual(Buffer.concat(s.batches.flat()), Buffer.concat(parts));
    assert.equal(s.batches[0]?.length, 4, `first batch had ${s.batches[0]?.length} chunks (pipe() would write them one by one)`);
  });

  it('pauses the source once maxQueued bytes wait, and resumes on drain', async () => {
    const src = new PassThrough({ highWaterMark: 1024 });
    const s = sink(1024);
    s.hold = true;
    relay(src, s.w, 64 * 1024);
    let accepted = 0;
    for (let i = 0; i < 64; i++) {
      src.write(Buffer.alloc(4096));
      accepted += 4096;
    }
    await new Promise((r) => setImmediate(r));
    // The destination holds about maxQueued; the rest waits in the paused source.
    assert.ok(s.w.writableLength >= 64 * 1024 && s.w.writableLength < 64 * 1024 + 4096, `queued ${s.w.writableLength}`);
    assert.ok(src.isPaused(), 'source paused');
    s.release();
    src.end();
    await once(s.w, 'finish');
    assert.equal(Buffer.concat(s.batches.flat()).length, accepted);
  });

  it('ends the destination when the source had already ended before relaying', async () => {
    const src = Readable.from([Buffer.from('head'), Buffer.from('tail')], { objectMode: false });
    const chunks: Buffer[] = [];
    for await (const c of src) chunks.push(c as Buffer); // consumes everything, EOF included
    assert.ok(src.readableEnded);
    const s = sink();
    relay(src, s.w);
    await once(s.w, 'finish');
    assert.equal(s.batches.length, 0);
  });

  it('writes what the source already holds at once, before returning (0-RTT bytes)', () => {
    const src = new PassThrough();
    src.write('early');
    const s = sink();
    relay(src, s.w);
    assert.equal(Buffer.concat(s.batches.flat()).toString(), 'early');
  });

  it('stops relaying when told to', async () => {
    const src = new PassThrough();
    const s = sink();
    const stop = relay(src, s.w);
    src.write('a');
    await new Promise((r) => setImmediate(r));
    stop();
    src.write('b');
    src.end();
    await new Promise((r) => setImmediate(r));
    assert.equal(Buffer.concat(s.batches.flat()).toString(), 'a');
    assert.equal(s.w.writableEnded, false);
  });
});
