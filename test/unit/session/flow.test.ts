import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { PolyStream } from '../../../src/session/stream.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';
import { waitSettled, waitUntil } from '../../helpers/eventually.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});

describe('flow control and head-of-line', () => {
  it('a reader that stops reading stops its writer; buffered bytes stay within the window', async () => {
    const window = 256 * 1024;
    const p = await makePair({ session: { streamWindow: window, sessionWindow: 4 * window, streamHighWaterMark: 64 * 1024 } });
    pairs.push(p);
    const ss = await p.serverSession;
    let writer: PolyStream | undefined;
    let written = 0;
    let sawBackpressure = false;
    ss.onStream((s) => {
      writer = s;
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = (): void => {
        while (written < 64 << 20) {
          written += chunk.length;
          if (!s.write(chunk)) {
            sawBackpressure = true;
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    });
    const r = p.clientSession.openStream();
    r.pause();
    r.write('go');
    // Wait for the writer to run into the window (however long a loaded machine takes).
    await waitUntil(() => sawBackpressure, 'the writer to be told to wait');
    await waitSettled(() => written + r.readableLength, 'the stalled transfer');
    assert.ok(writer, 'server saw the stream');
    // What the client holds unread is bounded by the window (+ one frame).
    assert.ok(r.readableLength <= window + 16384, `client buffered ${r.readableLength}`);
    // What the server accepted from the app: window in flight + its own write buffer.
    assert.ok(written <= window + 64 * 1024 * 3, `server accepted ${written} bytes`);
    const stuckAt = written;
    await delay(200);
    assert.equal(written, stuckAt, 'no progress while the reader is paused');
    // Another stream on the same session still works while this one is stalled.
    const other = p.clientSession.openStream();
    ss.onStream((s) => s.pipe(s));
    other.end('still alive');
    const chunks: Buffer[] = [];
    for await (const c of other) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'still alive');
    // Resume reading: everything arrives.
    let total = 0;
    r.on('data', (c: Buffer) => (total += c.length));
    r.resume();
    await once(r, 'end');
    assert.equal(total, 64 << 20);
  });

  it('100 request/response exchanges and pings complete while a bulk stream is running', async () => {
    const p = await makePair();
    pairs.push(p);
    const ss = await p.serverSession;
    let bulkDone = false;
    let bulkBytes = 0;
    ss.onStream((s) => {
      if (s.openPayload.toString() === 'bulk') {
        // An endless download until the client says stop.
        const chunk = Buffer.alloc(256 * 1024, 1);
        const pump = (): void => {
          while (!bulkDone && s.write(chunk));
          if (!bulkDone) s.once('drain', pump);
          else s.end();
        };
        s.on('data', () => {
          bulkDone = true;
        });
        pump();
      } else {
        s.on('data', (c: Buffer) => s.write(c)); // request → response
        s.on('end', () => s.end());
      }
    });
    const bulk = p.clientSession.openStream(Buffer.from('bulk'));
    bulk.on('data', (c: Buffer) => (bulkBytes += c.length));
    while (bulkBytes < 8 << 20) await delay(5); // bulk is flowing
    const chat = p.clientSession.openStream(Buffer.from('chat'));
    const rtts: number[] = [];
    for (let i = 0; i < 100; i++) {
      const msg = `req-${i}`;
      chat.write(msg);
      const [reply] = (await once(chat, 'data')) as [Buffer];
      assert.equal(reply.toString(), msg);
      if (i % 20 === 0) rtts.push(await p.clientSession.ping());
    }
    assert.equal(rtts.length, 5);
    assert.equal(bulkDone, false, 'the bulk stream was still running during all exchanges');
    const bytesDuringChat = bulkBytes;
    bulk.write('stop');
    chat.end();
    await once(bulk, 'end');
    assert.ok(bytesDuringChat > 8 << 20);
  });
});

describe('credit after a partial pause', () => {
  it('a stream paused with less than a window buffered, read a little, then resumed, gets everything', async () => {
    const window = 256 * 1024;
    const p = await makePair({ session: { streamWindow: window, sessionWindow: 4 * window } });
    pairs.push(p);
    const ss = await p.serverSession;
    const total = 4 << 20;
    ss.onStream((s) => {
      s.resume();
      s.end(Buffer.alloc(total, 3));
    });
    const r = p.clientSession.openStream();
    r.end();
    r.pause();
    await waitSettled(() => r.readableLength, 'the window filling while paused'); // the window fills while paused
    r.read(1);
    let got = 1;
    r.on('data', (c: Buffer) => (got += c.length));
    r.resume();
    await once(r, 'end');
    assert.equal(got, total);
  });
});

describe('window auto-tuning', () => {
  it('a stream whose reader keeps up gets a larger window than it started with (bounded by maxStreamWindow)', async () => {
    const start = 64 * 1024;
    const p = await makePair({ session: { streamWindow: start, sessionWindow: 16 << 20, maxStreamWindow: 2 << 20 } });
    pairs.push(p);
    const ss = await p.serverSession;
    ss.onStream((s) => {
      s.resume();
      s.end(Buffer.alloc(32 << 20, 1));
    });
    const r = p.clientSession.openStream();
    r.end();
    let maxAhead = 0;
    r.on('data', () => {
      const consumed = r.recvOffset - r.readableLength;
      maxAhead = Math.max(maxAhead, r.advertisedLimit - consumed);
    });
    await once(r, 'end');
    assert.ok(maxAhead > start * 2, `window grew to ${maxAhead}`);
    assert.ok(maxAhead <= 2 << 20, `window stayed within maxStreamWindow (${maxAhead})`);
  });
});
