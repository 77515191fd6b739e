/**
 * The record writer (src/session/record-writer.ts) seen from the records it
 * writes: send order inside a record, round-robin between streams, and which
 * records stay pinned for resend.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { F_DATA, F_DATAGRAM, F_GOAWAY, F_OPEN, parseFrames } from '../../../src/session/frames.js';
import type { Reliability } from '../../../src/session/reliability.js';
import { Session } from '../../../src/session/session.js';
import { waitUntil } from '../../helpers/eventually.js';
import { fakeChannelPair, type LoggedRecord } from '../../helpers/fake-channel.js';

function attached(): { client: Session; server: Session; log: LoggedRecord[] } {
  const id = Buffer.alloc(16, 5);
  const client = new Session({ role: 'client', id, pingIntervalMs: 3_600_000 });
  const server = new Session({ role: 'server', id, pingIntervalMs: 3_600_000 });
  const { a, b, log } = fakeChannelPair();
  server.onStream((s) => s.resume());
  server.attach(b.asChannel(), 0);
  client.attach(a.asChannel(), 0);
  return { client, server, log };
}

/** Frame types (and stream ids of sequenced frames) of a record. */
function frames(rec: Buffer): string[] {
  const out: string[] = [];
  parseFrames(rec, 1, {
    seq: (t, _seq, sid) => out.push(`${t === F_OPEN ? 'OPEN' : t === F_DATA ? 'DATA' : t}:${sid}`),
    window: () => out.push('WINDOW'), ack: () => out.push('ACK'), ping: () => out.push('PING'), pong: () => out.push('PONG'),
    datagram: () => out.push('DATAGRAM'), goaway: () => out.push('GOAWAY'), close: () => out.push('CLOSE'),
  });
  return out;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('RecordWriter', () => {
  it('puts control first, then datagrams, then streams one frame each in turn', async () => {
    const { client, server, log } = attached();
    await tick();
    log.length = 0;
    const a = client.openStream(Buffer.from([1]));
    const b = client.openStream(Buffer.from([1]));
    a.write('a1');
    a.write('a2');
    b.write('b1');
    b.write('b2');
    client.sendDatagram(9, Buffer.from('dg'));
    client.goaway(0);
    await tick();
    const first = log.find((r) => r.from === 'a');
    assert.ok(first);
    assert.deepEqual(frames(first.bytes), ['GOAWAY', 'DATAGRAM', 'OPEN:1', 'OPEN:3', 'DATA:1', 'DATA:3', 'DATA:1', 'DATA:3']);
    assert.equal(first.bytes[1], F_GOAWAY);
    assert.ok(first.bytes.includes(F_DATAGRAM));
    client.close();
    server.close();
  });

  it('a small record\'s payloads are copied (the pool buffer goes back at once); a large one stays with its last DATA frame until acknowledged', async () => {
    const { client, server } = attached();
    await tick();
    const rel = (client as unknown as { rel: Reliability }).rel;
    const s = client.openStream(Buffer.from([1]));
    s.write(Buffer.alloc(100, 1));
    await tick();
    const small = rel.frameAt(rel.end - 1);
    assert.equal(small.record, undefined);
    s.write(Buffer.alloc(20_000, 2));
    await Promise.resolve();
    await Promise.resolve();
    const big = rel.frameAt(rel.end - 1);
    assert.ok(big.record !== undefined && big.payload !== undefined && big.payload.buffer === big.record.buffer, 'the payload is a slice of the kept record');
    await waitUntil(() => rel.unackedBytes === 0, 'the peer acknowledges (after its ACK delay)');
    client.close();
    server.close();
  });
});
