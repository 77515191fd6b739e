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

describe('stream windows share the budget', () => {
  // W0 = max(16 KiB, 2 MiB / 64) = 32 KiB; the budget beyond W0 is the 2 MiB session window.
  const opts = { streamWindow: 256 * 1024, sessionWindow: 2 << 20, maxStreams: 64 };
  const w0 = initialStreamWindow(opts);
  const budget = opts.sessionWindow;
  const outstanding = (s: PolyStream): number => s.advertisedLimit - s.consumedBytes;
  /** What the open streams' windows hold beyond W0 (a finished stream's is the session's no more). */
  const excess = (ss: PolyStream[]): number => ss.reduce((n, s) => n + (s.destroyed ? 0 : Math.max(0, outstanding(s) - w0)), 0);
  /** Session credit the sender may still use (white box: the server's send side). */
  const sendCredit = (ss: Session): number => {
    const x = ss as unknown as { credit: { sendRoom: number } };
    return x.credit.sendRoom;
  };

  it('a stream that stalls keeps only what it was granted, returns the session credit for it, and a newcomer still gets a share', async () => {
    const { p, ss } = await pair({ session: opts });
    const a = open(p, 'endless');
    // A reads fast until its window has grown past the configured stream window, then stops.
    a.resume();
    await untilDone('A growing', () => a.consumedBytes, () => outstanding(a) > opts.streamWindow);
    a.pause();
    await untilDone('A filling its grant', () => a.recvOffset, () => a.recvOffset >= a.advertisedLimit);
    assert.ok(a.readableLength <= w0 + budget / 2, `A holds ${a.readableLength}: at most half the budget`);
    // Everything A holds was received: its session credit went back (all but
    // the last quarter of a session window, which is advertised in batches).
    await untilDone('session credit back', () => sendCredit(ss), () => sendCredit(ss) >= (3 * opts.sessionWindow) / 4);
    // B: a download beside the stalled A. Its window grows to a share of
    // what A left free, and A's and B's windows stay within the budget.
    const b = open(p, `bytes:${8 << 20}`);
    let widest = 0;
    let most = 0;
    b.on('data', () => {
      widest = Math.max(widest, outstanding(b));
      most = Math.max(most, excess([a, b]));
    });
    assert.equal(await download(b, 'B beside a stalled A'), 8 << 20);
    assert.ok(most <= budget, `windows beyond W0 added up to ${most} > ${budget}`);
    const aExcess = Math.max(0, outstanding(a) - w0);
    assert.ok(widest > w0 + (budget - aExcess) / 4, `B's window reached ${widest} (free beside A: ${budget - aExcess})`);
    assert.ok(widest <= w0 + (budget - aExcess) / 2, `B's window ${widest} stayed within its share`);
    a.destroy();
  });

  it('streams that keep up share the budget: none above W0 + half of it, all together within it', async () => {
    const { p } = await pair({ session: opts });
    const streams = Array.from({ length: 4 }, () => open(p, `bytes:${8 << 20}`));
    const widest = new Map<PolyStream, number>();
    let most = 0;
    for (const s of streams) {
      s.on('data', () => {
        for (const t of streams) widest.set(t, Math.max(widest.get(t) ?? 0, outstanding(t)));
        most = Math.max(most, excess(streams));
      });
    }
    const got = await Promise.all(streams.map((s, i) => download(s, `download ${i}`)));
    assert.deepEqual(got, streams.map(() => 8 << 20));
    for (const s of streams) assert.ok((widest.get(s) ?? 0) <= w0 + budget / 2, `a stream's window ${widest.get(s)} went above its share`);
    assert.ok(most <= budget, `windows beyond W0 added up to ${most} > ${budget}`);
    assert.ok(streams.every((s) => (widest.get(s) ?? 0) > w0), 'every stream that kept up got more than the initial window');
  });
});
