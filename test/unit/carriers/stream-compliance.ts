/**
 * The compliance suite every stream carrier runs (in the spirit of libp2p's
 * interface-compliance-tests): a carrier's test file calls
 * `streamCarrierCompliance(name, setup)` and gets the whole contract checked
 * on its own sockets.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, it, type TestContext } from 'node:test';
import { AbortedError, PolytunError, TimeoutError } from '../../../src/core/errors.js';
import { DialError, errnoOf } from '../../../src/carriers/errors.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from '../../../src/carriers/types.js';
import { closed, delay, hashUntilEnd, readAll, sha256, within, writeAll } from '../../helpers/byte-streams.js';

/** What a carrier's test file provides to the suite. */
export interface StreamCarrierFixture {
  /** The carrier that listens. */
  server: StreamCarrier;
  /** The carrier that dials the server's listeners. */
  client: StreamCarrier;
  /** Where to listen (port 0 is fine). */
  listenAt: Endpoint;
  /** An endpoint where nothing listens: dialling it must fail with DialError ECONNREFUSED. */
  deadEndpoint(): Promise<Endpoint>;
  /**
   * Bytes that can sit between the two Duplexes outside JS (kernel send +
   * receive buffers); 0 for in-memory carriers. Bounds the slow-consumer test.
   */
  outOfProcessBufferBytes: number;
  /** An endpoint that accepts but never completes a dial (for the timeout test), if the carrier can stall. */
  stalledEndpoint?(): Promise<{ at: Endpoint; close(): Promise<void> }>;
}

const LIVENESS_MS = 20_000;

/** One listener for one test, with everything torn down after the test. */
class Harness {
  readonly serverConns: StreamConn[] = [];
  readonly clientConns: StreamConn[] = [];
  listener!: Listener;

  constructor(private readonly fx: StreamCarrierFixture) {}

  static async start(t: TestContext, fx: StreamCarrierFixture, handler: (conn: StreamConn) => void): Promise<Harness> {
    const h = new Harness(fx);
    h.listener = await fx.server.listen(fx.listenAt, (conn) => {
      h.serverConns.push(conn);
      // Errors are part of several tests; recording them keeps an unhandled
      // 'error' from crashing the run, and the tests that care look at them.
      conn.stream.on('error', (err) => ((conn.stream as { lastError?: unknown }).lastError = err));
      handler(conn);
    });
    t.after(async () => {
      for (const c of [...h.clientConns, ...h.serverConns]) c.stream.destroy();
      await h.listener.close();
    });
    return h;
  }

  async dial(opts?: DialOptions): Promise<StreamConn> {
    const conn = await this.fx.client.dial(this.listener.address, opts);
    this.clientConns.push(conn);
    return conn;
  }
}

/** Server behaviour: send back everything, end when the client ends. */
function echo(conn: StreamConn): void {
  conn.stream.pipe(conn.stream);
}

/** The error the stream was destroyed with (set before its 'error' event is emitted). */
function lastError(conn: StreamConn): unknown {
  return conn.stream.errored ?? (conn.stream as { lastError?: unknown }).lastError;
}

/** Runs the stream carrier contract against the carriers `setup` returns. */
export function streamCarrierCompliance(name: string, setup: () => Promise<StreamCarrierFixture>): void {
  describe(`stream carrier compliance: ${name}`, () => {
    it('echo round trip, with printable addresses', async (t) => {
      const fx = await setup();
      const h = await Harness.start(t, fx, echo);
      const conn = await h.dial();
      assert.match(conn.remote, new RegExp(`:${h.listener.address.port}$`));
      assert.equal(typeof conn.local, 'string');
      assert.equal(typeof conn.meta, 'object');
      const msg = Buffer.from('hello over ' + name);
      conn.stream.end(msg);
      assert.deepEqual(await readAll(conn.stream), msg);
    });

    it('20 MiB one way arrives intact (SHA-256)', async (t) => {
      const fx = await setup();
      const data = randomBytes(20 * 1024 * 1024);
      let got: Promise<{ bytes: number; sha256: string }> | undefined;
      const h = await Harness.start(t, fx, (conn) => {
        got = hashUntilEnd(conn.stream);
      });
      const conn = await h.dial();
      await writeAll(conn.stream, data);
      await within(
        (async () => {
          while (!got) await delay(5);
        })(),
        LIVENESS_MS,
        'server accepted',
      );
      const r = await (got as Promise<{ bytes: number; sha256: string }>);
      assert.equal(r.bytes, data.length);
      assert.equal(r.sha256, sha256(data));
    });

    it('both directions at once', async (t) => {
      const fx = await setup();
      const up = randomBytes(6 * 1024 * 1024);
      const down = randomBytes(6 * 1024 * 1024);
      let serverGot: Promise<{ bytes: number; sha256: string }> | undefined;
      const h = await Harness.start(t, fx, (conn) => {
        serverGot = hashUntilEnd(conn.stream);
        void writeAll(conn.stream, down);
      });
      const conn = await h.dial();
      const [clientGot] = await Promise.all([hashUntilEnd(conn.stream), writeAll(conn.stream, up)]);
      assert.equal(clientGot.sha256, sha256(down));
      assert.ok(serverGot);
      assert.equal((await serverGot).sha256, sha256(up));
    });

    it('half-close: the side that got EOF can still write; a clean close reports no error', async (t) => {
      const fx = await setup();
      let serverSaw: Buffer | undefined;
      const h = await Harness.start(t, fx, (conn) => {
        void readAll(conn.stream).then((b) => {
          serverSaw = b;
          // After 'end' our writable side must still be open.
          conn.stream.write('pong-');
          conn.stream.end('after-eof');
        });
      });
      const conn = await h.dial();
      conn.stream.end('ping');
      const back = await readAll(conn.stream);
      assert.equal(serverSaw?.toString(), 'ping');
      assert.equal(back.toString(), 'pong-after-eof');
      await within(closed(conn.stream), LIVENESS_MS, 'client close');
      const server = h.serverConns[0];
      assert.ok(server);
      await within(closed(server.stream), LIVENESS_MS, 'server close');
      assert.equal(lastError(server), undefined);
    });

    it('slow consumer: writer sees false, buffering stays bounded, nothing is lost', async (t) => {
      const fx = await setup();
      const h = await Harness.start(t, fx, () => undefined); // server does not read yet
      const conn = await h.dial();
      await within(
        (async () => {
          while (h.serverConns.length === 0) await delay(5);
        })(),
        LIVENESS_MS,
        'server accepted',
      );
      const w = conn.stream;
      const r = (h.serverConns[0] as StreamConn).stream;
      const chunk = 16 * 1024;
      const source = randomBytes(1024 * 1024);
      // Everything the paused reader can have absorbed: both Duplex buffers,
      // the kernel's, and a few chunks of slack for in-flight pieces.
      const bound = w.writableHighWaterMark + r.readableHighWaterMark + fx.outOfProcessBufferBytes + 4 * chunk;
      const sent: Buffer[] = [];
      let sentBytes = 0;
      let sawFalse = false;
      let maxWritable = 0;
      for (;;) {
        let ok = true;
        while (ok) {
          const piece = source.subarray((sent.length * chunk) % source.length, ((sent.length * chunk) % source.length) + chunk);
          sent.push(piece);
          sentBytes += piece.length;
          ok = w.write(piece);
          maxWritable = Math.max(maxWritable, w.writableLength);
          assert.ok(sentBytes <= bound, `writer accepted ${sentBytes} bytes with the reader paused (bound ${bound})`);
        }
        sawFalse = true;
        // Honour 'drain'. If it does not come within a quiet period, the
        // pipe is full: stop. (A slow machine just ends this phase early.)
        const ac = new AbortController();
        const drained = await Promise.race([
          once(w, 'drain', { signal: ac.signal }).then(() => true),
          delay(300).then(() => false),
        ]);
        ac.abort();
        if (!drained) break;
      }
      assert.ok(sawFalse, 'write() never returned false');
      assert.ok(maxWritable <= w.writableHighWaterMark + chunk, `JS-side writableLength reached ${maxWritable}`);
      // Resume the reader: every byte written must arrive, in order.
      const got = hashUntilEnd(r);
      w.end();
      const res = await within(got, LIVENESS_MS, 'reader drained');
      assert.equal(res.bytes, sentBytes);
      assert.equal(res.sha256, sha256(Buffer.concat(sent)));
    });

    it('destroy with unread data resets the peer (ECONNRESET-like)', async (t) => {
      const fx = await setup();
      const h = await Harness.start(t, fx, (conn) => {
        conn.stream.write(randomBytes(1024 * 1024));
      });
      const conn = await h.dial();
      await once(conn.stream, 'readable'); // data is waiting, unread
      conn.stream.destroy();
      await within(
        (async () => {
          while (h.serverConns.length === 0) await delay(5);
        })(),
        LIVENESS_MS,
        'server accepted',
      );
      const server = h.serverConns[0] as StreamConn;
      await within(closed(server.stream), LIVENESS_MS, 'server saw the close');
      const err = lastError(server);
      assert.ok(err, 'server stream closed without an error');
      assert.ok(['ECONNRESET', 'EPIPE'].includes(errnoOf(err)), `unexpected error ${String(err)}`);
    });

    it('dial aborted by an AbortSignal → AbortedError, and nothing leaks', async (t) => {
      const fx = await setup();
      const h = await Harness.start(t, fx, echo);
      await assert.rejects(h.dial({ signal: AbortSignal.abort() }), AbortedError);
      const ac = new AbortController();
      const p = h.dial({ signal: ac.signal });
      ac.abort();
      await assert.rejects(p, AbortedError);
      // A later dial goes through; any server conn the aborted dial produced
      // must be closed by the client side, not left hanging.
      const good = await h.dial();
      good.stream.end('x');
      assert.equal((await readAll(good.stream)).toString(), 'x');
      const others = h.serverConns.filter((c) => c.remote !== good.local);
      await within(Promise.all(others.map((c) => closed(c.stream))), LIVENESS_MS, 'aborted dial closed server side');
    });

    it('dial to a port nobody listens on → DialError with errno', async () => {
      const fx = await setup();
      const to = await fx.deadEndpoint();
      const err = await fx.client.dial(to).then(
        () => assert.fail('dial succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof DialError, `got ${String(err)}`);
      assert.ok(err instanceof PolytunError);
      assert.equal(err.errno, 'ECONNREFUSED');
      assert.equal(err.code, 'ERR_DIAL');
    });

    it('listener close() stops new connections and leaves existing ones working', async (t) => {
      const fx = await setup();
      const h = await Harness.start(t, fx, echo);
      const conn = await h.dial();
      conn.stream.write('before ');
      await once(conn.stream, 'data');
      await h.listener.close();
      await h.listener.close(); // idempotent
      await assert.rejects(fx.client.dial(h.listener.address), (e: unknown) => e instanceof DialError && e.errno === 'ECONNREFUSED');
      conn.stream.end('after close');
      const rest = await readAll(conn.stream);
      assert.equal(rest.toString(), 'after close');
    });

    it('50 concurrent connections', async (t) => {
      const fx = await setup();
      const h = await Harness.start(t, fx, echo);
      const results = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const conn = await h.dial();
          const msg = Buffer.from(`connection ${i} `.repeat(500));
          conn.stream.end(msg);
          return (await readAll(conn.stream)).equals(msg);
        }),
      );
      assert.deepEqual(results, Array(50).fill(true));
      assert.equal(h.serverConns.length, 50);
    });

    it('dial timeout → TimeoutError', async (t) => {
      const fx = await setup();
      if (!fx.stalledEndpoint) return t.skip('carrier cannot stall a dial');
      const stalled = await fx.stalledEndpoint();
      t.after(() => stalled.close());
      await assert.rejects(fx.client.dial(stalled.at, { timeoutMs: 200 }), TimeoutError);
    });
  });
}
