/**
 * Pins the session's wire bytes: a short exchange (attach, OPEN with a
 * payload, data, echo, FIN both ways, a datagram, GOAWAY, CLOSE) between
 * two sessions over in-memory channels, compared record by record with
 * bytes recorded before the session was split into components. Any change
 * here is a wire-format change.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Session } from '../../../src/session/session.js';
import type { PolyStream } from '../../../src/session/stream.js';
import { fakeChannelPair } from '../../helpers/fake-channel.js';

const GOLDEN = [
  // attach: each side pings (liveness) and restates its ACK and session WINDOW
  'b 001200000001',
  'b 00110000000000001000000000000001000000',
  'a 001200000001',
  'a 00110000000000001000000000000001000000',
  // pong; then OPEN('dest:80') + DATA('hello') + FIN in one record
  'a 001300000001',
  'a 0002000000000001000000010007646573743a38300100000000000200000001000568656c6c6f0300000000000300000001',
  // the echo with its FIN and the ACK of the request
  'b 001300000001',
  'b 000100000000000100000001000568656c6c6f030000000000020000000111000000000003',
  // datagrams, GOAWAY, CLOSE
  'a 001400000009000470696e6711000000000002',
  'b 00140000000a0004706f6e67',
  'a 001500000003',
  'a 00160000000203627965',
];

async function exchange(): Promise<string[]> {
  const id = Buffer.alloc(16, 7);
  const client = new Session({ role: 'client', id, pingIntervalMs: 3_600_000 });
  const server = new Session({ role: 'server', id, pingIntervalMs: 3_600_000 });
  const { a, b, log } = fakeChannelPair();
  const got: Buffer[] = [];
  server.onStream((s: PolyStream) => s.pipe(s));
  server.onDatagram((flow, payload) => {
    got.push(Buffer.from(payload));
    server.sendDatagram(flow + 1, Buffer.from('pong'));
  });
  client.onDatagram((_flow, payload) => got.push(Buffer.from(payload)));
  server.attach(b.asChannel(), 0);
  client.attach(a.asChannel(), 0);
  const s = client.openStream(Buffer.from('dest:80'));
  s.write(Buffer.from('hello'));
  s.end();
  const echoed: Buffer[] = [];
  const closed = new Promise<void>((r) => client.once('streamClosed', () => r()));
  s.on('data', (d: Buffer) => echoed.push(d));
  await closed;
  client.sendDatagram(9, Buffer.from('ping'));
  while (got.length < 2) await Promise.resolve();
  client.goaway(3);
  await Promise.resolve();
  client.close(2, 'bye');
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.concat(echoed).toString(), 'hello');
  assert.deepEqual(got.map((g) => g.toString()), ['ping', 'pong']);
  return log.map((r) => `${r.from} ${r.bytes.toString('hex')}`);
}

describe('session wire bytes (golden)', () => {
  it('a short exchange produces exactly the recorded records', async () => {
    const records = await exchange();
    assert.deepEqual(records, GOLDEN);
  });
});
