import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { relay } from '../../../src/core/relay.js';
import { pooledRecordsReceived } from '../../../src/secure/channel.js';
import { MAX_RECORD_PLAINTEXT } from '../../../src/secure/record.js';
import { hasHeadroom } from '../../../src/core/headroom.js';
import {
  recordBuffersOut,
  recordBuffersRecycled,
  recordPoolSize,
  releaseRecordBuffer,
  releaseSealedBuffer,
  sealedPoolSize,
  takeRecordBuffer,
  takeSealedBuffer,
  trimRecordPool,
} from '../../../src/secure/record-pool.js';
import { TlsCarrier } from '../../../src/carriers/tls.js';
import { WsCarrier } from '../../../src/carriers/ws.js';
import { testCert } from '../../helpers/certs.js';
import { echoStreams, makePair, readAll, type Pair, type PairInit } from '../../helpers/session-pair.js';
import { waitUntil } from '../../helpers/eventually.js';

const pairs: Pair[] = [];

/** Carriers the receive path reuses buffers on: TCP (the default), TLS, WebSocket and WebSocket over TLS. */
const CARRIERS: [string, (() => NonNullable<PairInit['carriers']>) | undefined][] = [
  ['tcp', undefined],
  ['tls', () => ({ server: new TlsCarrier({ cert: testCert().cert, key: testCert().key }), client: new TlsCarrier({ pinSha256: testCert().fingerprintSha256 }) })],
  ['ws', () => ({ server: new WsCarrier({ tls: false, path: '/p' }), client: new WsCarrier({ tls: false, path: '/p' }) })],
  [
    'wss',
    () => ({
      server: new WsCarrier({ tls: true, path: '/p', cert: testCert().cert, key: testCert().key }),
      client: new WsCarrier({ tls: true, path: '/p', pinSha256: testCert().fingerprintSha256 }),
    }),
  ],
];
after(async () => {
  for (const p of pairs) await p.close();
});

describe('record pool', () => {
  it('recycles the records of a bulk transfer once they are acknowledged', async () => {
    // A roomy first stream window (few streams share the session's), so records are full
    // 64 KiB ones from the start: with the small default window a loaded run could send the
    // whole transfer in records small enough to be copied (keepSmall) and hold no pool buffer.
    const p = await makePair({ session: { maxStreams: 4 } });
    pairs.push(p);
    echoStreams(await p.serverSession);
    const before = recordBuffersRecycled();
    const data = randomBytes(4 << 20);
    const s = p.clientSession.openStream();
    const got = readAll(s);
    s.end(data);
    const back = await got;
    assert.ok(back.equals(data));
    // Every full record was held for resend and comes back when acknowledged. The
    // echo's end can arrive before the ACK of our last records (the peer delays
    // ACKs; under load, longer): wait for those, then the pool holds what came back.
    await waitUntil(() => p.clientSession.stats.unackedBytes === 0, 'every record acknowledged');
    // Counted as they come back, not as the pool's size: the idle trim may lower that at any time.
    const back64k = recordBuffersRecycled() - before;
    assert.ok(back64k >= 16, `${back64k} record buffers came back for 4 MiB of full records`);
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
    s.end(randomBytes(50_000)); // under one 64 KiB read: receiving stays as it is (see the relay test)
    assert.equal((await got).length, 50_000);
    await waitUntil(() => recordBuffersOut() <= before, 'every record buffer back');
    assert.equal(recordBuffersOut(), before, 'two open sessions, all acknowledged');
  });

  for (const [name, carriers] of CARRIERS) {
    it(`receiving in bulk into a relay reuses the records: none left out, bytes intact (${name})`, async () => {
      const p = await makePair(carriers ? { carriers: carriers() } : {});
      pairs.push(p);
      // The server relays each stream into a TCP sink, as the proxy server does into a target.
      const sink = net.createServer((c) => {
        const parts: Buffer[] = [];
        c.on('data', (d: Buffer) => parts.push(d));
        c.on('end', () => c.end(createHash('sha256').update(Buffer.concat(parts)).digest('hex')));
      });
      sink.listen(0, '127.0.0.1');
      await once(sink, 'listening');
      (await p.serverSession).onStream((s) => {
        const out = net.connect((sink.address() as net.AddressInfo).port, '127.0.0.1');
        relay(s, out);
        relay(out, s);
      });
      const before = recordBuffersOut();
      const pooledBefore = pooledRecordsReceived();
      const data = randomBytes(16 << 20);
      const s = p.clientSession.openStream();
      const answer = readAll(s);
      s.end(data);
      assert.equal((await answer).toString(), createHash('sha256').update(data).digest('hex'));
      assert.ok(pooledRecordsReceived() - pooledBefore > 128, 'received records were decrypted into pool buffers (slab reads on)');
      await waitUntil(() => recordBuffersOut() <= before, 'every received record back in the pool');
      assert.equal(recordBuffersOut(), before, 'every received record came back to the pool');
      sink.close();
    });
    }

  it('sealed records come from a shared pool with headroom, go back after the write, and an idle pool empties', async () => {
    const p = await makePair();
    pairs.push(p);
    (await p.serverSession).onStream((s) => s.resume());
    const s = p.clientSession.openStream();
    s.end(randomBytes(8 << 20));
    await once(s, 'finish');
    await waitUntil(() => sealedPoolSize() > 0, 'written records back in the pool');
    assert.ok(sealedPoolSize() > 0, 'written records came back to the pool');
    const b = takeSealedBuffer();
    assert.ok(hasHeadroom(b), 'with room for a WebSocket header in front');
    releaseSealedBuffer(b);
    trimRecordPool(); // the take above counts as use in this interval
    trimRecordPool();
    assert.equal(sealedPoolSize(), 0, 'two idle intervals: all given back to the GC');
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
