import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { nginxErrorBody } from '../../../src/carriers/decoy.js';
import type { ServerListener } from '../../../src/carriers/tcp.js';
import { WsServer, type WsServerInit } from '../../../src/carriers/ws-server.js';
import { within } from '../../helpers/byte-streams.js';

async function serve(t: TestContext, init: Partial<WsServerInit> = {}): Promise<ServerListener> {
  const l = (await new WsServer({ route: () => ({ accept: false }), ...init }).listen({ host: '127.0.0.1', port: 0 }, (c) => c.stream.destroy())) as ServerListener;
  t.after(() => l.close());
  return l;
}

/** A raw HTTP/1.1 client on one connection: sends exactly what it is given, reads one response at a time. */
class RawClient {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => undefined);
    this.socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    this.socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }
  /** Sends `raw` and returns the next response (status, headers, body by Content-Length). */
  async exchange(raw: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    this.socket.write(raw);
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const len = Number(headers['content-length'] ?? 0);
        if (this.buf.length >= end + 4 + len) {
          const body = this.buf.subarray(end + 4, end + 4 + len).toString('latin1');
          this.buf = this.buf.subarray(end + 4 + len);
          return { status: Number(lines[0]?.split(' ')[1]), headers, body };
        }
      }
      if (this.ended) throw new Error(`connection closed before a full response; got ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((r) => (this.wake = r));
    }
  }
  closed(): Promise<void> {
    return this.ended ? Promise.resolve() : once(this.socket, 'close').then(() => undefined);
  }
}

describe('WsServer decoy: nginx on the edge cases', () => {
  for (const [what, req] of [
    ['a path above the root', 'GET /../x HTTP/1.1\r\nHost: a.example\r\n\r\n'],
    ['an encoded climb', 'GET /a/%2e%2e/%2E%2E/x HTTP/1.1\r\nHost: a.example\r\n\r\n'],
    ['a NUL escape', 'GET /%00 HTTP/1.1\r\nHost: a.example\r\n\r\n'],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n'],
  ] as const) {
    it(`${what}: nginx's 400 page and a close`, async (t) => {
      const l = await serve(t);
      const c = new RawClient(l.address.port);
      t.after(() => c.socket.destroy());
      const r = await c.exchange(req);
      assert.equal(r.status, 400);
      assert.equal(r.body, nginxErrorBody(400));
      assert.equal(r.headers.server, 'nginx');
      assert.equal(r.headers.connection, 'close');
      await within(c.closed(), 20_000, 'closed after a 400, as nginx does');
    });
  }

  it('a path that stays inside the root is an ordinary 404', async (t) => {
    const l = await serve(t);
    const c = new RawClient(l.address.port);
    t.after(() => c.socket.destroy());
    const r = await c.exchange('GET /a/../b HTTP/1.1\r\nHost: a.example\r\n\r\n');
    assert.equal(r.status, 404);
    assert.equal(r.headers.connection, 'keep-alive');
  });

  it('an upgrade to an unknown path gets the 404 with keep-alive, and the connection serves the next request', async (t) => {
    const l = await serve(t);
    const c = new RawClient(l.address.port);
    t.after(() => c.socket.destroy());
    const upgrade =
      'GET /chat HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';
    const first = await c.exchange(upgrade);
    assert.equal(first.status, 404);
    assert.equal(first.headers.connection, 'keep-alive', 'nginx keeps a static 404 alive');
    const second = await c.exchange('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n');
    assert.equal(second.status, 404);
    assert.equal(second.headers.connection, 'keep-alive');
    const third = await c.exchange(upgrade);
    assert.equal(third.status, 404, 'a second upgrade on the same connection gets the decoy too');
  });

  it('an idle keep-alive connection is closed after the keep-alive timeout and counted as unauthenticated meanwhile', async (t) => {
    const l = await serve(t, { keepAliveTimeoutMs: 200 });
    const c = new RawClient(l.address.port);
    t.after(() => c.socket.destroy());
    const r = await c.exchange('GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    assert.equal(r.headers.connection, 'keep-alive');
    assert.equal(l.gate?.size, 1);
    await within(c.closed(), 20_000, 'idle keep-alive connection closed by the server');
  });

  it('closing the listener closes idle keep-alive connections, upgrade decoys included, so a stopping server does not wait 75 s for them', async (t) => {
    const l = await serve(t); // the default 75 s keep-alive
    const c = new RawClient(l.address.port);
    t.after(() => c.socket.destroy());
    const r = await c.exchange('GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    assert.equal(r.headers.connection, 'keep-alive');
    await l.close();
    await within(c.closed(), 20_000, 'idle keep-alive connection closed with the listener');
  });

  it('the decoy keep-alive connections count toward the pre-auth cap', async (t) => {
    const l = await serve(t, { tcp: { maxPreAuthConns: 1 } });
    const a = new RawClient(l.address.port);
    t.after(() => a.socket.destroy());
    assert.equal((await a.exchange('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n')).status, 404);
    const b = new RawClient(l.address.port);
    t.after(() => b.socket.destroy());
    await within(b.closed(), 20_000, 'a second connection over the cap of 1 is closed');
    assert.equal(a.ended, false);
  });
});
