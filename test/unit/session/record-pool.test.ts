import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { MAX_RECORD_PLAINTEXT } from '../../../src/secure/record.js';
import { recordBuffersOut, recordPoolSize, releaseRecordBuffer, takeRecordBuffer, trimRecordPool } from '../../../src/session/record-pool.js';
import { echoStreams, makePair, readAll, type Pair } from '../../helpers/session-pair.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});

describe('record pool', () => {
  it('recycles the records of a bulk transfer once they are acknowledged', async () => {
    const p = await makePair();
    pairs.push(p);
    echoStreams(await p.serverSession);
    const before = recordPoolSize();
    const data = randomBytes(4 << 20);
    const s = p.clientSession.openStream();
    const got = readAll(s);
    s.end(data);
    const back = await got;
    assert.ok(back.equals(data));
    // Every full record was held for resend and came back when acknowledged.
    assert.ok(recordPoolSize() > before, `pool ${before} → ${recordPoolSize()}`);
  });

  it('keeps a small record\'s payload in a copy: no 64 KiB buffer is held until the ACK', async () => {
    const p = await makePair();
    pairs.push(p);
    // The server reads and never answers, so nothing carries an ACK back before its 5 ms delay.
    (await p.serverSession).onStream((s) => s.resume());
    const s = p.clientSession.openStream();
    await new Promise((r) => setImmediate(r));
    const before = recordBuffersOut();
    s.write('a keystroke');
    await new Promise((r) => setImmediate(r)); // flushed and written, not yet acknowledged
    assert.equal(recordBuffersOut(), before);
    // A full record is held, until its ACK.
    s.write(randomBytes(32 * 1024));
    await new Promise((r) => setImmediate(r));
    assert.equal(recordBuffersOut(), before + 1);
    while (recordBuffersOut() > before) await new Promise((r) => setTimeout(r, 5));
  });

  it('an idle session holds no record buffer (each flush borrows one from the pool)', async () => {
    const before = recordBuffersOut();
    const p = await makePair();
    pairs.push(p);
    echoStreams(await p.serverSession);
    const s = p.clientSession.openStream();
    const got = readAll(s);
    s.end(randomBytes(200_000));
    assert.equal((await got).length, 200_000);
    for (let i = 0; i < 100 && recordBuffersOut() > before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(recordBuffersOut(), before, 'two open sessions, all acknowledged');
  });

  it('hands out full-size buffers, reuses released ones, and trims those unused for a whole interval', () => {
    while (recordPoolSize() > 0) takeRecordBuffer(); // start empty (the test above filled it)
    trimRecordPool();
    const a = takeRecordBuffer();
    const b = takeRecordBuffer();
    assert.equal(a.length, MAX_RECORD_PLAINTEXT);
    releaseRecordBuffer(a);
    releaseRecordBuffer(b);
    releaseRecordBuffer(Buffer.alloc(10)); // not one of ours: ignored
    assert.equal(recordPoolSize(), 2);
    assert.equal(takeRecordBuffer(), b);
    releaseRecordBuffer(b);
    trimRecordPool(); // one was taken in this interval: only the other goes
    assert.equal(recordPoolSize(), 1);
    trimRecordPool(); // not used since: the pool empties
    assert.equal(recordPoolSize(), 0);
  });
});
