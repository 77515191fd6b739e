import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import type { Logger } from '../../../src/core/logger.js';
import { MemoryMetrics } from '../../../src/core/metrics.js';
import { MGMT_HEADERS_TIMEOUT_MS, PreAuthGate, boundHttpServer } from '../../../src/carriers/preauth.js';
import { TcpCarrier, type ServerListener } from '../../../src/carriers/tcp.js';
import { TlsCarrier } from '../../../src/carriers/tls.js';
import type { Listener, StreamConn } from '../../../src/carriers/types.js';
import { WsServer } from '../../../src/carriers/ws-server.js';
import { within } from '../../helpers/byte-streams.js';
import { testCert } from '../../helpers/certs.js';
import { eventually } from '../../helpers/eventually.js';

/** A logger that keeps warn lines. */
function recordingLogger(): Logger & { warns: { obj: object; msg: string }[] } {
  const warns: { obj: object; msg: string }[] = [];
  const l: Logger & { warns: typeof warns } = {
    warns,
    debug: () => undefined,
    info: () => undefined,
    warn: (obj, msg = '') => void warns.push({ obj, msg }),
    error: () => undefined,
    child: () => l,
  };
  return l;
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** Connects, waits for the TCP connect, and closes at once (a FIN, like a health check or a port scan). */
async function connectAndClose(port: number): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await once(s, 'connect');
  s.destroy();
  await once(s, 'close');
}

/** Connects and sends nothing; resolves once the server closes it. */
async function silentClient(t: TestContext, port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  s.resume();
  t.after(() => s.destroy());
  await once(s, 'connect');
  return s;
}

function serverClosed(s: net.Socket): Promise<void> {
  return s.closed || s.readableEnded ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

describe('listener bounds on unauthenticated connections', () => {
  it('tls: 400 connections closed before a TLS record leave no socket behind (was: 400 in CLOSE-WAIT)', async (t) => {
    const l = (await new TlsCarrier({ cert: testCert().cert, key: testCert().key }).listen({ host: '127.0.0.1', port: 0 }, (c) => c.stream.destroy())) as ServerListener;
    t.after(() => l.close());
    const before = openFds();
    for (let i = 0; i < 400; i += 20) await Promise.all(Array.from({ length: 20 }, () => connectAndClose(l.address.port)));
    await eventually(async () => {
      assert.ok(openFds() <= before + 2, `fds: ${openFds()} now, ${before} before`);
      assert.equal(l.gate?.size, 0, 'unauthenticated connections still held');
    }, 30_000);
  });

  it('tls: a connection that never starts TLS is closed after the handshake deadline', async (t) => {
    const l = await new TlsCarrier({ cert: testCert().cert, key: testCert().key, handshakeTimeoutMs: 200 }).listen({ host: '127.0.0.1', port: 0 }, (c) => c.stream.destroy());
    t.after(() => l.close());
    const s = await silentClient(t, l.address.port);
    await within(serverClosed(s), 20_000, 'the server closes a client that never starts TLS');
  });

  it('wss: a connection that never starts TLS is closed after the handshake deadline', async (t) => {
    const ws = new WsServer({ route: () => ({ accept: false }), tls: { cert: testCert().cert, key: testCert().key }, tlsHandshakeTimeoutMs: 200 });
    const l = await ws.listen({ host: '127.0.0.1', port: 0 }, (c) => c.stream.destroy());
    t.after(() => l.close());
    const s = await silentClient(t, l.address.port);
    await within(serverClosed(s), 20_000, 'the server closes a client that never starts TLS');
  });

  it('tcp: past the cap new connections are closed at once and logged once; an authenticated one frees its slot', async (t) => {
    const log = recordingLogger();
    const conns: StreamConn[] = [];
    const l = (await new TcpCarrier({ logger: log, maxPreAuthConns: 3 }).listen({ host: '127.0.0.1', port: 0 }, (c) => conns.push(c))) as ServerListener;
    t.after(async () => {
      for (const c of conns) c.stream.destroy();
      await l.close();
    });
    const held = await Promise.all([1, 2, 3].map(() => silentClient(t, l.address.port)));
    await eventually(async () => assert.equal(conns.length, 3));
    const extra = await Promise.all([1, 2].map(() => silentClient(t, l.address.port)));
    await within(Promise.all(extra.map(serverClosed)), 20_000, 'connections over the cap are closed');
    assert.equal(conns.length, 3, 'none past the cap reached the server');
    for (const s of held) assert.equal(s.closed, false);
    const capLines = log.warns.filter((w) => /too many unauthenticated/.test(w.msg));
    assert.equal(capLines.length, 1, 'one line for the burst, not one per connection');
    assert.equal(l.gate?.counters.overCap, 2);
    conns[0]?.authenticated?.();
    assert.equal(l.gate?.size, 2);
    await silentClient(t, l.address.port);
    await eventually(async () => assert.equal(conns.length, 4, 'a slot freed by authentication takes a new connection'));
  });

  it('tcp: an unauthenticated connection is closed by the backstop timer', async (t) => {
    const l: Listener = await new TcpCarrier({ preAuthTimeoutMs: 100 }).listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    t.after(() => l.close());
    const s = await silentClient(t, l.address.port);
    await within(serverClosed(s), 20_000, 'closed by the pre-auth backstop');
  });

  it('tcp: the counters as metrics, labelled by listener', async (t) => {
    const metrics = new MemoryMetrics();
    const conns: StreamConn[] = [];
    const l = (await new TcpCarrier({ maxPreAuthConns: 1, preAuthTimeoutMs: 300, metrics }).listen({ host: '127.0.0.1', port: 0 }, (c) => conns.push(c))) as ServerListener;
    t.after(() => l.close());
    const name = 'tcp://127.0.0.1:0';
    assert.equal(l.gate?.name, name);
    const held = await silentClient(t, l.address.port);
    await eventually(async () => assert.equal(metrics.value('polytun_listener_preauth_connections', name), 1));
    const extra = await silentClient(t, l.address.port);
    await within(serverClosed(extra), 20_000, 'over the cap');
    assert.equal(metrics.value('polytun_listener_preauth_over_cap_total', name), 1);
    await within(serverClosed(held), 20_000, 'closed by the backstop');
    assert.equal(metrics.value('polytun_listener_preauth_timed_out_total', name), 1);
    await eventually(async () => assert.equal(metrics.value('polytun_listener_preauth_connections', name), 0, 'the server side saw the close'));
  });

  it('management HTTP listeners (admin API, mtt controller): a connection cap, logged once, and bounded request times', async (t) => {
    const log = recordingLogger();
    const srv = http.createServer((_req, res) => res.end('ok'));
    const gate = boundHttpServer(srv, 'admin API', log, 1);
    assert.equal(srv.headersTimeout, MGMT_HEADERS_TIMEOUT_MS);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => {
      srv.close();
      srv.closeAllConnections();
    });
    const port = (srv.address() as net.AddressInfo).port;
    await silentClient(t, port);
    await eventually(async () => assert.equal(gate.size, 1));
    const over = await Promise.all([1, 2].map(() => silentClient(t, port)));
    await within(Promise.all(over.map(serverClosed)), 20_000, 'connections over the cap are closed');
    assert.equal(log.warns.filter((w) => /too many unauthenticated/.test(w.msg)).length, 1);
  });

  it('the gate counts and releases through a TLS socket parent', () => {
    const gate = new PreAuthGate({ name: 'test', max: 1, timeoutMs: 0 });
    const raw = new net.Socket();
    assert.equal(gate.admit(raw), true);
    assert.equal(gate.admit(raw), true, 'admitting the same socket again (a decoy keep-alive) is no new slot');
    const child = Object.assign(new net.Socket(), { _parent: raw });
    gate.release(child);
    assert.equal(gate.size, 0);
    raw.destroy();
    child.destroy();
  });
});
