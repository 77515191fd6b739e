import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { StreamResetError } from '../../../src/core/errors.js';
import { ResetCode, type PolyStream } from '../../../src/session/stream.js';
import { echoStreams, makePair, readAll, type Pair } from '../../helpers/session-pair.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});
async function pair(init: Parameters<typeof makePair>[0] = {}): Promise<Pair> {
  const p = await makePair(init);
  pairs.push(p);
  return p;
}

describe('session over loopback TCP', () => {
  it('echoes a stream and carries the open payload', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    let seenPayload = '';
    ss.onStream((s) => {
      seenPayload = s.openPayload.toString();
      s.pipe(s);
    });
    const s = p.clientSession.openStream(Buffer.from('to:echo'));
    s.end('hello polytun');
    assert.equal((await readAll(s)).toString(), 'hello polytun');
    assert.equal(seenPayload, 'to:echo');
  });

  it('moves 32 MiB each way on one stream intact', async () => {
    const p = await pair();
    echoStreams(await p.serverSession);
    const data = randomBytes(32 << 20);
    const s = p.clientSession.openStream();
    const got = readAll(s);
    for (let off = 0; off < data.length; off += 1 << 20) {
      if (!s.write(data.subarray(off, off + (1 << 20)))) await once(s, 'drain');
    }
    s.end();
    const back = await got;
    assert.equal(back.length, data.length);
    assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));
  });

  it('runs 50 concurrent streams without mixing them up', async () => {
    const p = await pair();
    echoStreams(await p.serverSession);
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const s = p.clientSession.openStream();
        const body = Buffer.alloc(100_000 + i, i);
        s.end(body);
        return (await readAll(s)).equals(body);
      }),
    );
    assert.ok(results.every(Boolean));
  });

  it('supports half-close: the server keeps writing after the client ended', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    ss.onStream((s) => {
      s.resume();
      s.on('end', () => {
        s.write('after-your-fin ');
        setTimeout(() => s.end('bye'), 20);
      });
    });
    const s = p.clientSession.openStream();
    s.end('x');
    assert.equal((await readAll(s)).toString(), 'after-your-fin bye');
  });

  it('carries reset codes both ways', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    ss.onStream((s) => {
      s.on('error', () => undefined);
      s.reset(0x1234);
    });
    const s = p.clientSession.openStream();
    const [err] = (await once(s, 'error')) as [StreamResetError];
    assert.ok(err instanceof StreamResetError);
    assert.equal(err.resetCode, 0x1234);

    const serverErr = new Promise<StreamResetError>((resolve) => {
      ss.onStream((st) => st.on('error', (e: StreamResetError) => resolve(e)));
    });
    const s2 = p.clientSession.openStream();
    s2.on('error', () => undefined);
    s2.write('x');
    setTimeout(() => s2.reset(77), 20);
    assert.equal((await serverErr).resetCode, 77);
  });

  it('refuses streams beyond maxStreams with a reset, not a crash', async () => {
    const p = await pair({ server: { session: { maxStreams: 3 } } });
    const ss = await p.serverSession;
    const held: PolyStream[] = [];
    ss.onStream((s) => held.push(s));
    const streams = Array.from({ length: 5 }, () => p.clientSession.openStream());
    const errors = await Promise.all(
      streams.slice(3).map(async (s) => {
        const [e] = (await once(s, 'error')) as [StreamResetError];
        return e.resetCode;
      }),
    );
    assert.deepEqual(errors, [ResetCode.refused, ResetCode.refused]);
    assert.equal(held.length, 3);
  });

  it('delivers datagrams both ways and measures RTT on the control lane', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    ss.onDatagram((flow, payload) => ss.sendDatagram(flow + 1, Buffer.from(payload)));
    const got = new Promise<[number, string]>((resolve) => p.clientSession.onDatagram((f, d) => resolve([f, d.toString()])));
    assert.equal(p.clientSession.sendDatagram(41, Buffer.from('dgram')), true);
    assert.deepEqual(await got, [42, 'dgram']);
    const rtt = await p.clientSession.ping();
    assert.ok(rtt >= 0);
    assert.equal(typeof p.clientSession.rttMs, 'number');
  });

  it('session close reaches the peer with its code and reason', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    const closed = once(ss, 'closed');
    p.clientSession.close(9, 'done here');
    const [err] = (await closed) as [Error & { closeCode: number }];
    assert.equal(err.closeCode, 9);
    assert.match(err.message, /done here/);
  });

  it('a small payload left waiting for its reader is copied out of the large read it came in', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    const arrived: PolyStream[] = [];
    ss.onStream((s) => arrived.push(s));
    const bulk = p.clientSession.openStream();
    const small = p.clientSession.openStream();
    // Same tick: both leave in one record, and arrive in one carrier read.
    bulk.write(randomBytes(60_000));
    small.write('a few bytes');
    while (arrived.length < 2) await new Promise((r) => setTimeout(r, 5));
    const [first, second] = arrived as [PolyStream, PolyStream];
    first.resume();
    while (second.readableLength < 11) await new Promise((r) => setTimeout(r, 5));
    const held = second.read() as Buffer;
    assert.equal(held.toString(), 'a few bytes');
    // Not a view of the ~60 KB read: the read buffer is free once the bulk stream consumed its part.
    assert.ok(held.buffer.byteLength <= 8192, `held in a ${held.buffer.byteLength}-byte buffer`);
  });

  it('a long non-ASCII close reason is cut to 200 bytes, not sent with a wrong length', async () => {
    const p = await pair();
    const ss = await p.serverSession;
    const closed = once(ss, 'closed');
    p.clientSession.close(7, 'é'.repeat(300)); // 600 bytes of UTF-8
    const [err] = (await closed) as [Error & { closeCode: number }];
    assert.equal(err.closeCode, 7);
    assert.ok(err.message.includes('é'.repeat(100)), err.message);
    assert.ok(!err.message.includes('é'.repeat(101)), err.message);
  });
});
