import assert from 'node:assert/strict';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { DialError } from '../../../src/carriers/errors.js';
import { ListenError } from '../../../src/carriers/errors.js';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import type { StreamConn } from '../../../src/carriers/types.js';
import { readAll } from '../../helpers/byte-streams.js';
import { deadTcpEndpoint, tcpKernelBufferBytes } from '../../helpers/net-fixtures.js';
import { streamCarrierCompliance } from './stream-compliance.js';

streamCarrierCompliance('tcp', async () => {
  const carrier = new TcpCarrier();
  return {
    server: carrier,
    client: carrier,
    listenAt: { host: '127.0.0.1', port: 0 },
    deadEndpoint: () => deadTcpEndpoint(),
    outOfProcessBufferBytes: tcpKernelBufferBytes(),
  };
});

describe('TcpCarrier', () => {
  it('binds outgoing connections to localAddress', async (t) => {
    const seen: string[] = [];
    const server = new TcpCarrier();
    const l = await server.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      seen.push((conn.stream as net.Socket).remoteAddress ?? '');
      conn.stream.end();
    });
    t.after(() => l.close());
    // 127.0.0.2 is loopback on Linux but never the default source address.
    const conn = await new TcpCarrier({ localAddress: '127.0.0.2' }).dial(l.address);
    assert.match(conn.local, /^127\.0\.0\.2:\d+$/);
    await readAll(conn.stream);
    conn.stream.destroy();
    assert.deepEqual(seen, ['127.0.0.2']);
  });

  it('works over IPv6 loopback', async (t) => {
    const carrier = new TcpCarrier();
    let l;
    try {
      l = await carrier.listen({ host: '::1', port: 0 }, (conn) => conn.stream.pipe(conn.stream));
    } catch (err) {
      if (err instanceof ListenError && err.errno === 'EADDRNOTAVAIL') return t.skip('no IPv6 loopback');
      throw err;
    }
    const listener = l;
    t.after(() => listener.close());
    const conn: StreamConn = await carrier.dial({ host: '::1', port: listener.address.port });
    assert.equal(conn.remote, `[::1]:${listener.address.port}`);
    conn.stream.end('v6');
    assert.equal((await readAll(conn.stream)).toString(), 'v6');
  });

  it('resolves names (localhost) and reports a bind conflict as ListenError EADDRINUSE', async (t) => {
    const carrier = new TcpCarrier();
    const l = await carrier.listen({ host: '127.0.0.1', port: 0 }, (conn) => conn.stream.pipe(conn.stream));
    t.after(() => l.close());
    await assert.rejects(carrier.listen(l.address, () => undefined), (e: unknown) => e instanceof ListenError && e.errno === 'EADDRINUSE');
    const conn = await carrier.dial({ host: 'localhost', port: l.address.port });
    conn.stream.end('by name');
    assert.equal((await readAll(conn.stream)).toString(), 'by name');
  });

  it('a dial error keeps the cause and a readable message', async () => {
    const to = await deadTcpEndpoint();
    const err = await new TcpCarrier().dial(to).catch((e: unknown) => e);
    assert.ok(err instanceof DialError);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${to.port}.*ECONNREFUSED`));
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  });
});
