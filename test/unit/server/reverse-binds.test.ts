// Reverse forwards (BIND) through a real client/server session. The listeners
// bound here are on 127.0.0.1 / ::1 only, and every connection is local.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AddressError, decodeDestination, makeDestination, type Destination } from '../../../src/core/address.js';
import { decodeOpen, encodeOpen, type OpenRequest } from '../../../src/proxy/wire.js';
import { EgressDialer, SocksReply } from '../../../src/server/egress.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { attachProxy, type ProxyHandle, type ProxyServerInit } from '../../../src/server/proxy-server.js';
import type { Session } from '../../../src/session/session.js';
import type { PolyStream } from '../../../src/session/stream.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(init: Partial<ProxyServerInit> = {}): Promise<{ p: Pair; ss: Session; proxy: ProxyHandle }> {
  const p = await makePair();
  cleanups.push(() => p.close());
  const ss = await p.serverSession;
  const policy = new DestinationPolicy({ allow: ['127.0.0.1', '::1'] });
  const proxy = attachProxy(ss, { egress: new EgressDialer({ policy }), policy, ...init });
  cleanups.push(() => proxy.close());
  return { p, ss, proxy };
}

interface BindReply {
  status: number;
  bindId?: number;
  bound?: Destination;
}

/** Opens a BIND stream and reads the server's reply (status, then id and address on success). */
async function bind(p: Pair, host: string, port: number): Promise<{ s: PolyStream; reply: BindReply }> {
  const s = p.clientSession.openStream(encodeOpen({ kind: 'bind', dest: makeDestination(host, port) }));
  s.on('error', () => undefined);
  const reply = await new Promise<BindReply>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const status = buf[0] as number;
      if (status !== 0) return done({ status });
      if (buf.length < 6) return;
      try {
        done({ status, bindId: buf.readUInt32BE(1), bound: decodeDestination(buf, 5).dest });
      } catch (err) {
        if (!(err instanceof AddressError && err.reason === 'truncated')) reject(err);
      }
    };
    const onClose = (): void => reject(new Error('BIND stream closed before its reply'));
    const done = (r: BindReply): void => {
      s.off('data', onData);
      s.off('close', onClose);
      resolve(r);
    };
    s.on('data', onData);
    s.once('close', onClose);
  });
  return { s, reply };
}

/** Client side of ACCEPTED streams: answers `status`, then echoes when it is 0. */
function serveAccepted(session: Session, status: number, seen: OpenRequest[] = []): OpenRequest[] {
  session.onStream((s) => {
    s.on('error', () => undefined);
    seen.push(decodeOpen(s.openPayload));
    if (status !== 0) {
      s.end(Buffer.from([status]));
      s.resume();
      return;
    }
    s.write(Buffer.from([0]));
    s.pipe(s);
  });
  return seen;
}

function readToEnd(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    s.on('data', (c: Buffer) => (text += c.toString()));
    s.once('end', () => resolve(text));
    s.once('error', reject);
  });
}

/** Retries `attempt` until it resolves true (a kernel-side release is not instantaneous everywhere). */
async function eventually(attempt: () => Promise<boolean>, what: string): Promise<void> {
  // A hang guard, not a timing claim: 1 s was too short on a loaded machine.
  const end = Date.now() + 30_000;
  for (;;) {
    if (await attempt()) return;
    if (Date.now() > end) assert.fail(`never happened: ${what}`);
    await delay(20);
  }
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function refusesConnections(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, host);
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('proxy server: BIND (reverse forwards)', () => {
  it('a remote connection reaches the client, which answers 0 and echoes', async () => {
    const { p, proxy } = await setup();
    const seen = serveAccepted(p.clientSession, 0);
    const { reply } = await bind(p, '127.0.0.1', 0);
    assert.equal(reply.status, 0);
    assert.equal(reply.bound?.host, '127.0.0.1');
    assert.ok((reply.bound?.port ?? 0) > 0, 'port 0 is answered with the real port');
    const sock = connect(reply.bound?.port ?? 0, '127.0.0.1');
    await once(sock, 'connect');
    const localPort = sock.localPort;
    const echoed = readToEnd(sock);
    sock.end('hello from the internet side');
    assert.equal(await echoed, 'hello from the internet side');
    const open = seen[0];
    assert.ok(open?.kind === 'accepted');
    assert.equal(open.bindId, reply.bindId);
    assert.deepEqual(open.peer, makeDestination('127.0.0.1', localPort ?? 0), 'the client learns who connected');
    const st = proxy.stats;
    assert.equal(st.binds, 1);
    assert.equal(st.bindsActive, 1);
    assert.equal(st.bindAccepts, 1);
    assert.equal(st.bytesDown, 'hello from the internet side'.length);
  });

  it('binds on ::1 (in the default list)', async () => {
    const { p } = await setup();
    serveAccepted(p.clientSession, 0);
    const { reply } = await bind(p, '::1', 0);
    assert.equal(reply.status, 0);
    assert.equal(reply.bound?.host, '::1');
    const sock = connect(reply.bound?.port ?? 0, '::1');
    const echoed = readToEnd(sock);
    sock.end('v6');
    assert.equal(await echoed, 'v6');
  });

  it('closes the accepted socket when the client answers a non-zero status, or none in time', async () => {
    for (const answer of [SocksReply.connectionRefused, undefined]) {
      const { p, proxy } = await setup({ connectTimeoutMs: 200 });
      if (answer === undefined) p.clientSession.onStream((s) => s.on('error', () => undefined)); // never answers
      else serveAccepted(p.clientSession, answer);
      const { reply } = await bind(p, '127.0.0.1', 0);
      const sock = connect(reply.bound?.port ?? 0, '127.0.0.1');
      sock.on('error', () => undefined); // closed with or without RST
      sock.resume();
      await new Promise((resolve) => sock.once('close', resolve));
      assert.equal(proxy.stats.bindAcceptsFailed, 1, `answer ${String(answer)}`);
    }
  });

  it('refuses hosts and ports that are not allowed (0x02), and a port in use (0x01)', async () => {
    const { p, proxy } = await setup({ reverse: { ports: '20000-20100' } });
    assert.equal((await bind(p, '0.0.0.0', 20050)).reply.status, SocksReply.notAllowed, 'wildcard not listed');
    assert.equal((await bind(p, '127.0.0.2', 20050)).reply.status, SocksReply.notAllowed, 'other loopback address');
    assert.equal((await bind(p, '127.0.0.1', 30000)).reply.status, SocksReply.notAllowed, 'port outside the range');
    assert.equal(proxy.stats.bindsRefused, 3);
    const occupied = createServer();
    occupied.listen({ host: '127.0.0.1', port: 0 });
    await once(occupied, 'listening');
    cleanups.push(() => void occupied.close());
    const q = await setup();
    const inUse = await bind(q.p, '127.0.0.1', (occupied.address() as AddressInfo).port);
    assert.equal(inUse.reply.status, SocksReply.generalFailure, 'EADDRINUSE');
    assert.equal(q.proxy.stats.bindsRefused, 1);
    assert.equal(q.proxy.stats.bindsActive, 0);
  });

  it('refuses every bind when reverse forwards are disabled', async () => {
    const { p } = await setup({ reverse: { enabled: false } });
    assert.equal((await bind(p, '127.0.0.1', 0)).reply.status, SocksReply.notAllowed);
  });

  it('ending the BIND stream releases the listener', async () => {
    const { p, proxy } = await setup();
    const { s, reply } = await bind(p, '127.0.0.1', 0);
    const port = reply.bound?.port ?? 0;
    const ended = new Promise((resolve) => s.once('end', resolve));
    s.resume();
    s.end();
    await ended; // the server answers our FIN with its own after closing the listener
    await eventually(() => refusesConnections('127.0.0.1', port), 'connections refused on the released port');
    assert.equal(proxy.stats.bindsActive, 0);
  });

  it('frees the port when the session closes', async () => {
    const { p, ss, proxy } = await setup();
    const { reply } = await bind(p, '127.0.0.1', 0);
    const port = reply.bound?.port ?? 0;
    assert.equal(await canListen('127.0.0.1', port), false, 'the bind holds the port');
    const sessionClosed = once(ss, 'closed');
    p.client.close();
    await sessionClosed;
    await eventually(() => canListen('127.0.0.1', port), 'port free again');
    assert.equal(proxy.stats.bindsActive, 0);
  });
});
