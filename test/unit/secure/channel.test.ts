import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { SecureChannel } from '../../../src/secure/channel.js';
import { RECORD_DATA, RecordOpener, RecordSealer } from '../../../src/secure/record.js';

const KEY = Buffer.alloc(32, 7);
const INFO = { remote: 'r', local: 'l', carrier: 'memory', handshakeHash: Buffer.alloc(32) };

/** Records sealed in sequence by one sender (nonces count up). */
let sender = new RecordSealer(KEY);
function sealed(body: string): Buffer {
  return sender.seal(Buffer.concat([Buffer.from([RECORD_DATA]), Buffer.from(body)]));
}

/** Records the channel delivers, and whether it closed, after the event loop turns a few times. */
async function deliver(setup: (stream: PassThrough) => Buffer | undefined, after: (stream: PassThrough) => void): Promise<{ got: string[]; closed: boolean }> {
  sender = new RecordSealer(KEY);
  const stream = new PassThrough();
  const leftover = setup(stream);
  const ch = new SecureChannel(stream, new RecordSealer(Buffer.alloc(32, 9)), new RecordOpener(KEY), INFO, leftover);
  const got: string[] = [];
  let closed = false;
  ch.onRecord((pt) => got.push(pt.subarray(1).toString()));
  ch.onClose(() => (closed = true));
  ch.start();
  after(stream);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return { got, closed };
}

describe('secure channel: records before the carrier ends', () => {
  // A server that closes a session right after the handshake sends its CLOSE
  // record and FIN together; under load they arrive in the handshake's own
  // read (the leftover) and the end comes before start()'s deferred pump.
  // The record must still reach the session, or the client sees a bare EOF
  // and reports the wrong reason.
  it('delivers a record from the handshake leftover when the carrier ends at once', async () => {
    const r = await deliver(
      () => sealed('last words'),
      (s) => {
        s.end();
        s.resume();
      },
    );
    assert.deepEqual(r.got, ['last words']);
    assert.equal(r.closed, true);
  });

  it('delivers records that arrived with the end of the stream', async () => {
    const r = await deliver(
      () => undefined,
      (s) => {
        s.end(Buffer.concat([sealed('one'), sealed('two')]));
      },
    );
    assert.deepEqual(r.got, ['one', 'two']);
    assert.equal(r.closed, true);
  });
});
