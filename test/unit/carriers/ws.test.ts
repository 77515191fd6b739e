import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import tls from 'node:tls';
import WebSocket from 'ws';
import { AuthError, ProtocolError, TimeoutError } from '../../../src/core/errors.js';
import { reverseProxy, staticSite } from '../../../src/carriers/decoy.js';
import { CertificateError } from '../../../src/carriers/errors.js';
import type { Listener, StreamConn } from '../../../src/carriers/types.js';
import type { WsStream } from '../../../src/carriers/ws-stream.js';
import { framePieces } from '../../../src/carriers/ws-writer.js';
import { WsCarrier, WsUpgradeError } from '../../../src/carriers/ws.js';
import { allocWithHeadroom, hasHeadroom } from '../../../src/core/headroom.js';
import { WsServer, pathTableRoute, type Route, type WsServerInit } from '../../../src/carriers/ws-server.js';
import { acceptKey } from '../../../src/carriers/ws-frames.js';
import { closed, readAll, sha256, within } from '../../helpers/byte-streams.js';
import { otherCert, testCert } from '../../helpers/certs.js';
import { deadTcpEndpoint, silentTcpServer, tcpKernelBufferBytes } from '../../helpers/net-fixtures.js';
import { streamCarrierCompliance } from './stream-compliance.js';

const LOOP = { host: '127.0.0.1', port: 0 };
const SITE = new URL('../../fixtures/decoy-site/', import.meta.url).pathname;
const NGINX_404 = '<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

for (const secure of [false, true]) {
  streamCarrierCompliance(secure ? 'wss (pinned)' : 'ws', async () => ({
    server: new WsCarrier({ tls: secure, path: '/t/compliance', cert: testCert().cert, key: testCert().key }),
    client: new WsCarrier({ tls: secure, path: '/t/compliance', pinSha256: testCert().fingerprintSha256 }),
    listenAt: LOOP,
    deadEndpoint: () => deadTcpEndpoint(),
    outOfProcessBufferBytes: tcpKernelBufferBytes(),
    stalledEndpoint: () => silentTcpServer(),
  }));
}

/** A WsServer on loopback that echoes every conn; conns and route calls are recorded. */
async function echoServer(t: TestContext, init: Partial<WsServerInit> & { route: Route }): Promise<{ l: Listener; conns: StreamConn[] }> {
  const conns: StreamConn[] = [];
  // A short keep-alive: raw exchanges read until the server closes, and the decoy keeps connections alive as nginx does.
  const l = await new WsServer({ keepAliveTimeoutMs: 300, ...init }).listen(LOOP, (conn) => {
    conns.push(conn);
    conn.stream.on('error', (err: Error) => ((conn.stream as { lastError?: unknown }).lastError = err));
    conn.stream.pipe(conn.stream);
  });
  t.after(async () => {
    for (const c of conns) c.stream.destroy();
    await l.close();
  });
  return { l, conns };
}

/** Sends `request` raw and returns the whole response (until the server closes). */
function rawExchange(port: number, request: string, secure = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = secure ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }) : net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on(secure ? 'secureConnect' : 'connect', () => s.write(request));
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(parts).toString('latin1')));
  });
}

function upgradeRequest(path: string, extra = ''): string {
  const key = randomBytes(16).toString('base64');
  return `GET ${path} HTTP/1.1\r\nHost: example.org\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

function splitResponse(raw: string): { status: string; headers: Map<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const [status = '', ...lines] = raw.slice(0, end).split('\r\n');
  const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status, headers, body: raw.slice(end + 4) };
}

const alice = { user: 'alice' };
const bob = { user: 'bob' };

describe('WsServer routing', () => {
  for (const secure of [false, true]) {
    const scheme = secure ? 'wss' : 'ws';
    it(`${scheme}: two paths reach two users; meta carries path and user`, async (t) => {
      const table = new Map([
        ['/u/alice-7f3e', alice],
        ['/u/bob-19ac', bob],
      ]);
      const { l, conns } = await echoServer(t, { route: pathTableRoute(table), ...(secure && { tls: testCert() }) });
      for (const [path, who] of table) {
        const conn = await new WsCarrier({ tls: secure, path, pinSha256: testCert().fingerprintSha256 }).dial(l.address);
        assert.equal(conn.meta.path, path);
        if (secure) assert.equal(conn.meta.fingerprint, testCert().fingerprintSha256);
        conn.stream.end(`hello ${who.user}`);
        assert.equal((await readAll(conn.stream)).toString(), `hello ${who.user}`);
      }
      assert.deepEqual(
        conns.map((c) => [c.meta.path, c.meta.user]),
        [
          ['/u/alice-7f3e', 'alice'],
          ['/u/bob-19ac', 'bob'],
        ],
      );
    });

    it(`${scheme}: an upgrade to an unknown path gets the decoy 404, not 101`, async (t) => {
      const { l, conns } = await echoServer(t, { route: pathTableRoute(new Map([['/u/alice', alice]])), ...(secure && { tls: testCert() }) });
      const raw = splitResponse(await rawExchange(l.address.port, upgradeRequest('/u/mallory'), secure));
      assert.equal(raw.status, 'HTTP/1.1 404 Not Found');
      assert.equal(raw.body, NGINX_404);
      assert.equal(raw.headers.get('server'), 'nginx');
      assert.equal(raw.headers.get('connection'), 'keep-alive', 'nginx keeps a static 404 alive, Upgrade header or not');
      for (const h of raw.headers.keys()) assert.ok(!/^(upgrade|sec-websocket)/.test(h), `header ${h} in a decoy answer`);
      const err = await new WsCarrier({ tls: secure, path: '/u/mallory', pinSha256: testCert().fingerprintSha256 }).dial(l.address).catch((e: unknown) => e);
      assert.ok(err instanceof WsUpgradeError, `got ${String(err)}`);
      assert.equal(err.status, 404);
      assert.equal(conns.length, 0);
    });
  }

  it('the 101 answer looks like nginx in front of a WebSocket app', async (t) => {
    const { l, conns } = await echoServer(t, { route: pathTableRoute(new Map([['/u/alice', alice]])) });
    const s = net.connect(l.address.port, '127.0.0.1');
    t.after(() => s.destroy());
    s.write(upgradeRequest('/u/alice'));
    const first = await new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
    const { status, headers } = splitResponse(first);
    assert.equal(status, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(headers.get('server'), 'nginx');
    assert.ok(headers.get('date'));
    assert.deepEqual([...headers.keys()].sort(), ['connection', 'date', 'sec-websocket-accept', 'server', 'upgrade']);
    assert.equal(conns.length, 1);
  });

  it('a plain GET, a malformed upgrade, a POST upgrade and a route that throws all get the decoy', async (t) => {
    let calls = 0;
    const route: Route = async (req) => {
      calls++;
      if (req.url === '/u/boom') throw new Error('store down');
      return req.url === '/u/alice' ? { accept: true, meta: alice } : { accept: false };
    };
    const { l, conns } = await echoServer(t, { route });
    const port = l.address.port;
    const probes = [
      'GET /u/alice HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n',
      // right path, but no Sec-WebSocket-Key: ws would say "Missing or invalid Sec-WebSocket-Key header"
      'GET /u/alice HTTP/1.1\r\nHost: example.org\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n',
      upgradeRequest('/u/alice').replace('GET', 'POST'),
      upgradeRequest('/u/alice').replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8'),
      upgradeRequest('/u/boom'),
    ];
    for (const probe of probes) {
      const raw = splitResponse(await rawExchange(port, probe));
      assert.equal(raw.status, 'HTTP/1.1 404 Not Found', `probe ${JSON.stringify(probe.slice(0, 40))}`);
      assert.equal(raw.body, NGINX_404);
    }
    assert.equal(calls, 1, 'route is consulted only for well-formed upgrades');
    assert.equal(conns.length, 0);
  });

  it('CONNECT and garbage get nginx 400 pages', async (t) => {
    const { l } = await echoServer(t, { route: () => ({ accept: false }) });
    for (const probe of ['CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n', 'HELLO\r\n\r\n']) {
      const raw = splitResponse(await rawExchange(l.address.port, probe));
      assert.equal(raw.status, 'HTTP/1.1 400 Bad Request');
      assert.equal(raw.headers.get('server'), 'nginx');
      assert.match(raw.body, /<center><h1>400 Bad Request<\/h1><\/center>/);
    }
  });

  it('a static-site decoy answers an unknown-path upgrade with the site (200) when configured', async (t) => {
    const decoy = staticSite(SITE, { unknownPath: 'index' });
    const { l } = await echoServer(t, { route: () => ({ accept: false }), decoy });
    const raw = splitResponse(await rawExchange(l.address.port, upgradeRequest('/chat')));
    assert.equal(raw.status, 'HTTP/1.1 200 OK');
    assert.equal(raw.headers.get('content-type'), 'text/html');
    assert.match(raw.body, /Hollow Oak Pottery/);
  });

  it('a reverse-proxy decoy answers an upgrade with the backend response, Upgrade stripped', async (t) => {
    const seen: http.IncomingHttpHeaders[] = [];
    const backend = http.createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(403, { 'Content-Type': 'text/plain', Server: 'Apache/2.4.58' });
      res.end('members only');
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => backend.close(() => r())));
    const port = (backend.address() as net.AddressInfo).port;
    const { l } = await echoServer(t, { route: () => ({ accept: false }), decoy: reverseProxy(`http://127.0.0.1:${port}`) });
    const raw = splitResponse(await rawExchange(l.address.port, upgradeRequest('/socket')));
    assert.equal(raw.status, 'HTTP/1.1 403 Forbidden');
    assert.equal(raw.headers.get('server'), 'nginx');
    assert.match(raw.body, /members only/);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.upgrade, undefined);
    assert.equal(seen[0]?.host, 'example.org');
  });
});

describe('WsCarrier', () => {
  it('wss with a wrong pin: CertificateError, and the server never sees the path', async (t) => {
    let routed = 0;
    const { l } = await echoServer(t, {
      tls: testCert(),
      route: () => {
        routed++;
        return { accept: true };
      },
    });
    const err = await new WsCarrier({ tls: true, path: '/u/secret', pinSha256: otherCert().fingerprintSha256 }).dial(l.address).catch((e: unknown) => e);
    assert.ok(err instanceof CertificateError, `got ${String(err)}`);
    assert.ok(err instanceof AuthError);
    assert.equal(err.reason, 'pin-mismatch');
    assert.equal(routed, 0);
  });

  it('sends Host and custom headers; a path must start with /', async (t) => {
    let got: http.IncomingHttpHeaders | undefined;
    const { l } = await echoServer(t, {
      route: (req) => {
        got = req.headers;
        return { accept: true };
      },
    });
    const conn = await new WsCarrier({ tls: false, path: '/x?t=1', hostHeader: 'cdn.example.net', headers: { 'User-Agent': 'Mozilla/5.0' } }).dial(l.address);
    conn.stream.destroy();
    assert.equal(got?.host, 'cdn.example.net');
    assert.equal(got?.['user-agent'], 'Mozilla/5.0');
    assert.equal(got?.['sec-websocket-extensions'], undefined, 'permessage-deflate is off');
    assert.throws(() => new WsCarrier({ tls: false, path: 'x' }), { code: 'ERR_CONFIG' });
  });

  it('a message over maxPayload or a text message is a ProtocolError on the server side', async (t) => {
    const { l, conns } = await echoServer(t, { route: () => ({ accept: true }), maxPayloadBytes: 1024 });
    for (const send of [(ws: WebSocket) => ws.send(Buffer.alloc(2048), { binary: true }), (ws: WebSocket) => ws.send('text')]) {
      const n = conns.length;
      const ws = new WebSocket(`ws://127.0.0.1:${l.address.port}/any`, { perMessageDeflate: false });
      t.after(() => ws.terminate());
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      await within(
        (async () => {
          while (conns.length === n) await new Promise((r) => setImmediate(r));
        })(),
        5000,
        'accepted',
      );
      const server = conns[n] as StreamConn;
      send(ws);
      await within(closed(server.stream), 20_000, 'server stream closed');
      assert.ok((server.stream as { lastError?: unknown }).lastError instanceof ProtocolError);
      await within(new Promise((r) => ws.once('close', r)), 20_000, 'client closed');
    }
  });

  it('keepalive: a peer that stops answering pings is dropped with TimeoutError', async (t) => {
    const { l, conns } = await echoServer(t, { route: () => ({ accept: true }), stream: { keepaliveMs: 20 } });
    const ws = new WebSocket(`ws://127.0.0.1:${l.address.port}/any`, { perMessageDeflate: false, autoPong: false });
    t.after(() => ws.terminate());
    ws.on('error', () => ws.terminate()); // the server's drop may surface here
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    await within(
      (async () => {
        while (conns.length === 0 || !conns[0]?.stream.closed) await new Promise((r) => setTimeout(r, 10));
      })(),
      20_000,
      'server dropped the silent peer',
    );
    assert.ok((conns[0]?.stream as { lastError?: unknown }).lastError instanceof TimeoutError);
  });

  it('keepalive: an answering peer stays up across many intervals', async (t) => {
    const { l, conns } = await echoServer(t, { route: () => ({ accept: true }), stream: { keepaliveMs: 10 } });
    const conn = await new WsCarrier({ tls: false, path: '/any', stream: { keepaliveMs: 0 } }).dial(l.address);
    t.after(() => conn.stream.destroy());
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(conns[0]?.stream.closed, false);
    conn.stream.end('still here');
    assert.equal((await readAll(conn.stream)).toString(), 'still here');
  });
});

describe('framePieces', () => {
  it('slices big chunks, merges small ones, drops empty ones, keeps order', () => {
    const big = randomBytes(70_000);
    const small = [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cd')];
    const pieces = framePieces([...small, big, Buffer.from('ef')], 32_768);
    assert.deepEqual(
      pieces.map((p) => p.length),
      [4, 32_768, 32_768, 70_000 - 65_536, 2],
    );
    assert.deepEqual(Buffer.concat(pieces), Buffer.concat([Buffer.from('abcd'), big, Buffer.from('ef')]));
    assert.ok(pieces.every((p) => p.length > 0 && p.length <= 32_768));
  });
});

describe('ws client masking', () => {
  /** A bare (wss or ws) server that accepts one upgrade by hand and resolves with the first client frame's masking key. */
  async function firstMask(t: TestContext, secure: boolean): Promise<{ port: number; mask: Promise<Buffer> }> {
    let resolveMask: (b: Buffer) => void = () => undefined;
    const mask = new Promise<Buffer>((r) => (resolveMask = r));
    const onConn = (s: net.Socket): void => {
      let buf = Buffer.alloc(0);
      let upgraded = false;
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const key = /sec-websocket-key: *(\S+)/i.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? '';
          const accept = acceptKey(key);
          s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
          upgraded = true;
          buf = buf.subarray(end + 4);
        }
        if (buf.length >= 6) {
          assert.ok(((buf[1] as number) & 0x80) !== 0, 'client frames carry the mask bit');
          resolveMask(Buffer.from(buf.subarray(2, 6)));
        }
      });
      s.on('error', () => undefined);
    };
    const server = secure ? tls.createServer({ cert: testCert().cert, key: testCert().key }, onConn) : net.createServer(onConn);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    return { port: (server.address() as net.AddressInfo).port, mask };
  }

  it('wss with a pinned certificate sends zero masks (no per-byte XOR); plain ws keeps random ones', async (t) => {
    for (const secure of [true, false]) {
      const { port, mask } = await firstMask(t, secure);
      const conn = await new WsCarrier({ tls: secure, path: '/m', pinSha256: testCert().fingerprintSha256 }).dial({ host: '127.0.0.1', port });
      conn.stream.on('error', () => undefined); // our bare server never answers keepalive pings
      conn.stream.write(Buffer.from('ciphertext'));
      const m = await mask;
      conn.stream.destroy();
      if (secure) assert.deepEqual([...m], [0, 0, 0, 0]);
      else assert.notDeepEqual([...m], [0, 0, 0, 0]);
    }
  });
});

describe('WsStream slab reads', () => {
  it('a slice held by a slow reader keeps its read out of reuse; released in order, bytes stay intact', async (t) => {
    let serverConn: StreamConn | undefined;
    const l = await new WsServer({ route: () => ({ accept: true }) }).listen(LOOP, (conn) => (serverConn = conn));
    t.after(() => l.close());
    const client = await new WsCarrier({ tls: false, path: '/slab' }).dial(l.address);
    t.after(() => client.stream.destroy());
    while (serverConn === undefined) await new Promise((r) => setImmediate(r));
    const ws = serverConn.stream as WsStream;
    // Small slabs, so reads move to recycled ones while earlier slices wait in the stream's buffer.
    const slabs = ws.enableSlabReads({ readSize: 4096, slabSize: 8192 });
    assert.ok(slabs, 'slab reads on a TCP socket');
    const data = randomBytes(2 << 20);
    client.stream.end(data);
    const seen = createHash('sha256');
    ws.pause();
    await new Promise((r) => setTimeout(r, 50)); // the stream's buffer fills and the socket is held
    let n = 0;
    await new Promise<void>((resolve, reject) => {
      ws.on('data', (chunk: Buffer) => {
        ws.pause();
        // Consumed a loop turn later, as a reader with its own queue would; released after.
        setImmediate(() => {
          seen.update(chunk);
          n += chunk.length;
          slabs.release();
          ws.resume();
        });
      });
      ws.on('end', () => setImmediate(resolve));
      ws.on('error', reject);
      ws.resume();
    });
    assert.equal(n, data.length);
    assert.equal(seen.digest('hex'), sha256(data));
    // Every read went back: the socket holds its current slab and spares, not the 2 MiB it read.
    assert.ok(slabs.heldBytes() <= 4 * 8192, `holds ${slabs.heldBytes()} bytes`);
    ws.end();
  });
});

describe('WsStream write headroom', () => {
  it('a chunk written with headroom goes out as one buffer, its header in place; others as header + payload', async (t) => {
    let serverConn: StreamConn | undefined;
    const l = await new WsServer({ tls: testCert(), route: () => ({ accept: true }) }).listen(LOOP, (conn) => (serverConn = conn));
    t.after(() => l.close());
    // Pinned wss: zero masks, so the payload goes out as it is (a random mask needs a masked copy).
    const conn = await new WsCarrier({ tls: true, path: '/h', pinSha256: testCert().fingerprintSha256 }).dial(l.address);
    t.after(() => conn.stream.destroy());
    while (serverConn === undefined) await new Promise((r) => setImmediate(r));
    assert.equal((conn.stream as WsStream).tlsSocket?.getCipher().name, 'TLS_AES_128_GCM_SHA256', 'wss listener and client agree on AES-128-GCM');
    const socket = (conn.stream as unknown as { socket: net.Socket }).socket;
    const writes: Buffer[] = [];
    const write = socket.write.bind(socket) as (b: Buffer, cb?: () => void) => boolean;
    (socket as unknown as { write: typeof write }).write = (b: Buffer, cb?: () => void) => (writes.push(b), write(b, cb));
    const roomy = allocWithHeadroom(70_000).fill(7);
    assert.ok(hasHeadroom(roomy) && !hasHeadroom(roomy.subarray(1)) && !hasHeadroom(Buffer.alloc(70_000)));
    const plain = Buffer.alloc(20_000, 9);
    const got = readAll(serverConn.stream);
    await new Promise<void>((r) => conn.stream.write(roomy, () => r()));
    assert.equal(writes.length, 1, 'one socket write for the roomy chunk');
    assert.equal(writes[0]?.buffer, roomy.buffer, 'framed in the writer’s own buffer');
    assert.equal(writes[0]?.length, roomy.length + 14, '64-bit length header with its zero mask');
    await new Promise<void>((r) => conn.stream.write(plain, () => r()));
    assert.equal(writes.length, 3, 'header and payload for the plain chunk');
    conn.stream.end();
    const body = await got;
    assert.deepEqual(body, Buffer.concat([roomy, plain]));
    serverConn.stream.end();
  });
});
