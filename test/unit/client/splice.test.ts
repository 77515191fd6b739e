/**
 * splice(): a relayed connection whose tunnel side fails is reset, so the
 * application sees an error, not a clean end (a cut-off download taken for a
 * complete one). The soak found it: a slow reader read on for 100 s after its
 * session died, then got a FIN.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { splice } from '../../../src/client/splice.js';

/** A connected loopback pair: [the accepted side, the client side]. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [net.Socket];
  await once(client, 'connect');
  server.close();
  return [accepted, client];
}

/** How the application's read side ends: 'end' (a clean FIN) or the error code. */
function outcome(app: net.Socket): Promise<{ how: string; bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    app.on('data', (c: Buffer) => (bytes += c.length));
    app.once('end', () => resolve({ how: 'end', bytes }));
    app.once('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code ?? err.message, bytes }));
  });
}

describe('splice', () => {
  // A reader that keeps up: before, it got a clean 'end' when its session
  // died mid-download. (A reader with bytes still queued in its own kernel
  // buffer reads them and then sees EOF even after an RST: Linux reports the
  // reset only to a read on an empty queue, so a paused reader cannot be told.)
  it('resets the local socket when the tunnel side fails mid-transfer', async () => {
    const [local, app] = await socketPair();
    const result = outcome(app);
    let received = 0;
    app.on('data', (c: Buffer) => (received += c.length));
    const tunnel = new PassThrough();
    let done: Error | undefined;
    splice(local, tunnel, { onDone: (err) => (done = err) });
    tunnel.write(Buffer.alloc(64 * 1024, 1));
    while (received < 64 * 1024) await new Promise((r) => setImmediate(r));
    tunnel.destroy(new Error('session lost'));
    const r = await result;
    assert.equal(r.how, 'ECONNRESET', `the application saw '${r.how}' after ${r.bytes} bytes`);
    assert.ok(done instanceof Error);
  });

  it('ends the local socket cleanly when both directions finish', async () => {
    const [local, app] = await socketPair();
    const tunnel = new PassThrough();
    splice(local, tunnel);
    const result = outcome(app);
    tunnel.end(Buffer.from('all of it'));
    app.end();
    const r = await result;
    assert.deepEqual(r, { how: 'end', bytes: 9 });
  });
});
