/**
 * Readers that stop (a paused video tab) or crawl must not freeze the rest of
 * the session: session credit goes back as soon as bytes land in a stream, and
 * what each stream may hold is its share of the session's receive budget.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { initialStreamWindow, type Session } from '../../../src/session/session.js';
import type { PolyStream } from '../../../src/session/stream.js';
import { makePair, type Pair, type PairInit } from '../../helpers/session-pair.js';
import { untilDone } from '../../helpers/progress.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});

/**
 * The server side of every test: a stream's open payload says what to send.
 * `endless`: writes until the stream is closed (a download nobody finishes);
 * `bytes:N`: N bytes, then FIN; `echo`: echoes what it reads.
 */
function serve(ss: Session): void {
  ss.onStream((s) => {
    s.on('error', () => undefined);
    const what = s.openPayload.toString();
    if (what === 'echo') {
      s.pipe(s);
      return;
    }
    s.resume(); // the client sends nothing else
    const chunk = Buffer.alloc(16 * 1024, 0x5a);
    let left = what === 'endless' ? Infinity : Number(what.slice('bytes:'.length));
    const pump = (): void => {
      while (left > 0 && !s.destroyed) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
      }
      if (left === 0) s.end();
    };
    pump();
  });
}

async function pair(init: PairInit = {}): Promise<{ p: Pair; ss: Session }> {
  const p = await makePair(init);
  pairs.push(p);
  const ss = await p.serverSession;
  serve(ss);
  return { p, ss };
}

function open(p: Pair, what: string): PolyStream {
  const s = p.clientSession.openStream(Buffer.from(what));
  s.on('error', () => undefined);
  s.end();
  return s;
}

/** Reads `s` to its end, failing if it stops moving. */
async function download(s: PolyStream, what: string): Promise<number> {
  let got = 0;
  let ended = false;
  s.on('data', (c: Buffer) => (got += c.length));
  s.once('end', () => (ended = true));
  await untilDone(what, () => got, () => ended);
  return got;
}

/** A small request/response on a new stream. */
async function exchange(p: Pair, msg: string): Promise<string> {
  const s = p.clientSession.openStream(Buffer.from('echo'));
  s.on('error', () => undefined);
  s.end(msg);
  const parts: Buffer[] = [];
  let ended = false;
  s.on('data', (c: Buffer) => parts.push(c));
  s.once('end', () => (ended = true));
  await untilDone(`echo ${msg}`, () => parts.length, () => ended);
  return Buffer.concat(parts).toString();
}

/** Slow readers: every 100 ms each takes at most `perTick` bytes (1 KiB/s at 103). */
function crawl(streams: PolyStream[], perTick = 103): () => void {
  for (const s of streams) s.pause();
  const t = setInterval(() => {
    for (const s of streams) {
      const n = Math.min(perTick, s.readableLength);
      if (n > 0) s.read(n);
    }
  }, 100);
  return () => clearInterval(t);
}

describe('paused and slow readers', () => {
  it('100 paused and 100 slow (1 KiB/s) downloads: new streams open, a request completes and a 5 MiB download completes', { timeout: 300_000 }, async () => {
    const { p } = await pair();
    const paused: PolyStream[] = [];
    const slow: PolyStream[] = [];
    for (let i = 0; i < 100; i++) {
      const s = open(p, 'endless');
      s.pause();
      paused.push(s);
    }
    for (let i = 0; i < 100; i++) slow.push(open(p, 'endless'));
    const stopCrawl = crawl(slow);
    try {
      // Every stalled stream has received data: the stall is in place.
      const all = [...paused, ...slow];
      const got = (): number => all.reduce((n, s) => n + s.recvOffset, 0);
      await untilDone('stalled streams filling', got, () => all.every((s) => s.recvOffset >= 8 * 1024), 5_000, { stalled: 'settle' });
      assert.equal(await exchange(p, 'hello through a crowded session'), 'hello through a crowded session');
      // New streams still open and carry data.
      const more = await Promise.all(Array.from({ length: 10 }, (_, i) => exchange(p, `new stream ${i}`)));
      assert.deepEqual(more, Array.from({ length: 10 }, (_, i) => `new stream ${i}`));
      assert.equal(await download(open(p, `bytes:${5 << 20}`), '5 MiB download'), 5 << 20);
      // The stalled streams are still there, holding their small initial windows.
      assert.ok(paused.every((s) => !s.destroyed && s.readableLength <= initialStreamWindow()), 'a paused stream holds at most its initial window');
    } finally {
      stopCrawl();
      for (const s of [...paused, ...slow]) s.destroy();
    }
  });
});

describe('credit accounting', () => {
  it('a paused stream gives its session credit back: streams whose windows add up to the session window do not block another', async () => {
    // Old behaviour: four paused streams, each sent a whole 256 KiB stream
    // window, held the whole 1 MiB session window, and a fifth got nothing.
    const window = 256 * 1024;
    const opts = { streamWindow: window, sessionWindow: 4 * window, maxStreams: 8 };
    const { p } = await pair({ session: opts });
    const paused = Array.from({ length: 4 }, () => {
      const s = open(p, 'endless');
      s.pause();
      return s;
    });
    const got = (): number => paused.reduce((n, s) => n + s.recvOffset, 0);
    await untilDone('paused streams filling', got, () => paused.every((s) => s.recvOffset >= initialStreamWindow(opts)), 5_000, { stalled: 'settle' });
    assert.equal(await download(open(p, `bytes:${8 * 4 * window}`), 'download beside 4 paused streams'), 8 * 4 * window);
    assert.ok(paused.every((s) => s.readableLength <= initialStreamWindow(opts)), 'the paused streams hold no more than their initial windows');
    for (const s of paused) s.destroy();
  });
});
