/**
 * Issue "Proxy client and server", end to end: real `polytun server` and
 * `polytun client` processes, driven by curl and by a raw SOCKS5 client
 * (for byte-exact replies), against a node HTTP origin on loopback.
 *
 *   curl / raw socks ─▶ client (socks5, http) ══ session over TCP ══▶ server ─▶ origin 127.0.0.1
 *
 * Tests that need curl skip with a reason when it is missing; CI installs it
 * (scripts/install-test-deps.sh).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server as HttpServer } from 'node:http';
import type net from 'node:net';
import { Readable, pipeline } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { TcpRelay } from '../tools/relay.js';
import { ensureBuilt, freePort, have, ROOT, startClient, startServer, stopAll, type Proc } from '../helpers/cli.js';
import { RawConn } from '../helpers/net-fixtures.js';

const skipCurl = have('curl') ? false : 'curl is not installed (run scripts/install-test-deps.sh)';
const MiB = 1 << 20;

/** Deterministic pseudo-random bytes (xorshift32): origin and checker agree without storing the body. */
function* pattern(total: number, chunk = 256 * 1024): Generator<Buffer> {
  let x = 0x2545f491;
  for (let sent = 0; sent < total; sent += chunk) {
    const b = Buffer.allocUnsafe(Math.min(chunk, total - sent));
    for (let i = 0; i < b.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b.writeUInt32LE(x >>> 0, i); // chunk sizes used here are multiples of 4
    }
    yield b;
  }
}

const digests = new Map<number, string>();
function sha256Of(n: number): string {
  let d = digests.get(n);
  if (d === undefined) {
    const h = createHash('sha256');
    for (const b of pattern(n)) h.update(b);
    digests.set(n, (d = h.digest('hex')));
  }
  return d;
}

interface CurlResult {
  code: number | null;
  bytes: number;
  sha256: string;
  /** The first 64 KiB of stdout as text. */
  text: string;
  stderr: string;
}

interface CurlOptions {
  /** Sees the running count of bytes received. */
  onBytes?: (total: number) => void;
  /** Read nothing for this long at first: curl, then the proxy's socket to curl, back up. */
  slowStartMs?: number;
}

/** Runs curl; stdout is hashed as it streams. */
async function curl(args: string[], opts: CurlOptions = {}): Promise<CurlResult> {
  const child = spawn('curl', ['-sS', '--max-time', '60', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (opts.slowStartMs) {
    child.stdout.pause();
    const t = setTimeout(() => child.stdout.resume(), opts.slowStartMs);
    child.once('close', () => clearTimeout(t));
  }
  const h = createHash('sha256');
  let bytes = 0;
  let text = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    h.update(c);
    if (bytes < 65536) text += c.subarray(0, 65536 - bytes).toString();
    bytes += c.length;
    opts.onBytes?.(bytes);
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, bytes, sha256: h.digest('hex'), text, stderr };
}

/** SOCKS5 address block for an IPv4 literal: ATYP 1, 4 bytes, port. */
function ipv4Dest(ip: string, port: number): Buffer {
  return Buffer.from([1, ...ip.split('.').map(Number), port >> 8, port & 0xff]);
}

/** SOCKS5 address block for a name: ATYP 3, length, bytes, port. */
function domainDest(name: string, port: number): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([Buffer.from([3, n.length]), n, Buffer.from([port >> 8, port & 0xff])]);
}

/** Greeting offering "no auth"; asserts the server picks it. */
async function socksGreet(raw: RawConn): Promise<void> {
  raw.sock.write(Buffer.from([5, 1, 0]));
  assert.deepEqual([...(await raw.take(2))], [5, 0]);
}

/** Sends a request and returns its reply (an IPv4 or IPv6 bound address is read whole). */
async function socksRequest(raw: RawConn, cmd: number, dest: Buffer): Promise<Buffer> {
  raw.sock.write(Buffer.concat([Buffer.from([5, cmd, 0]), dest]));
  const head = await raw.take(4);
  const addr = await raw.take(head[3] === 4 ? 18 : 6);
  return Buffer.concat([head, addr]);
}

let origin: HttpServer;
let originPort = 0;
let originConns = 0;
const originErrors: Error[] = [];
let open: { socks: number; http: number; status: number; client: Proc };
let strict: { socks: number; http: number; client: Proc };
const closers: (() => Promise<unknown>)[] = [];

before(async () => {
  ensureBuilt();
  // The origin: /hello answers a short text, /blob/N streams N pattern bytes.
  origin = createServer((req, res) => {
    const blob = /^\/blob\/(\d+)$/.exec(req.url ?? '');
    if (blob) {
      const n = Number(blob[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      // pipeline handles backpressure and a client that leaves early (then err is set and res destroyed).
      pipeline(Readable.from(pattern(n)), res, (err) => {
        if (err && err.code !== 'ERR_STREAM_PREMATURE_CLOSE') originErrors.push(err);
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from origin, host=${req.headers.host ?? ''}\n`);
  });
  origin.on('connection', () => originConns++);
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  originPort = (origin.address() as net.AddressInfo).port;
  closers.push(() => new Promise((r) => origin.close(r)));

  const permissive = await startServer(['--allow', '127.0.0.1']);
  const [socks, http, status] = [await freePort(), await freePort(), await freePort()];
  const client = await startClient(permissive.links[0] as string, ['--socks', `127.0.0.1:${socks}`, '--http', `127.0.0.1:${http}`, '--status', `127.0.0.1:${status}`], status);
  open = { socks, http, status, client };

  // No --allow: the default policy refuses loopback.
  const refusing = await startServer();
  const [s2, h2] = [await freePort(), await freePort()];
  const c2 = await startClient(refusing.links[0] as string, ['--socks', `127.0.0.1:${s2}`, '--http', `127.0.0.1:${h2}`, '--no-status'], h2);
  strict = { socks: s2, http: h2, client: c2 };
});

after(async () => {
  await stopAll();
  for (const c of closers.reverse()) await c();
  assert.deepEqual(originErrors, [], 'origin errors');
});

const url = (path: string, host = '127.0.0.1'): string => `http://${host}:${originPort}${path}`;

describe('e2e proxy: curl through the fronts', () => {
  it('SOCKS5 (--socks5-hostname): a page and 20 MiB whose SHA-256 matches', { skip: skipCurl }, async () => {
    const page = await curl(['--socks5-hostname', `127.0.0.1:${open.socks}`, url('/hello')]);
    assert.equal(page.code, 0, page.stderr);
    assert.equal(page.text, `hello from origin, host=127.0.0.1:${originPort}\n`);
    const big = await curl(['--socks5-hostname', `127.0.0.1:${open.socks}`, url(`/blob/${20 * MiB}`)]);
    assert.equal(big.code, 0, big.stderr);
    assert.equal(big.bytes, 20 * MiB);
    assert.equal(big.sha256, sha256Of(20 * MiB));
  });

  it('SOCKS5: a reader that stalls at first still gets all 20 MiB (credit resumes after backpressure)', { skip: skipCurl }, async () => {
    const r = await curl(['--socks5-hostname', `127.0.0.1:${open.socks}`, url(`/blob/${20 * MiB}`)], { slowStartMs: 500 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.bytes, 20 * MiB);
    assert.equal(r.sha256, sha256Of(20 * MiB));
  });

  it('HTTP proxy (-x): absolute-form GET and a CONNECT tunnel, 20 MiB each', { skip: skipCurl }, async () => {
    for (const extra of [[], ['--proxytunnel']]) {
      // --fail: any non-2xx answer is an exit code, not a body.
      const r = await curl(['--fail', '-x', `http://127.0.0.1:${open.http}`, ...extra, url(`/blob/${20 * MiB}`)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.bytes, 20 * MiB);
      assert.equal(r.sha256, sha256Of(20 * MiB));
    }
  });

  it('a domain target (localhost) is sent unresolved and resolved by the server', async () => {
    const raw = await RawConn.open(open.socks);
    await socksGreet(raw);
    const rep = await socksRequest(raw, 1, domainDest('localhost', originPort));
    assert.equal(rep[1], 0x00, 'succeeded');
    raw.sock.end(`GET /hello HTTP/1.0\r\nHost: localhost:${originPort}\r\n\r\n`);
    const body = (await raw.rest()).toString();
    assert.match(body, /^HTTP\/1\.[01] 200 /);
    assert.ok(body.endsWith(`hello from origin, host=localhost:${originPort}\n`), body);
    if (skipCurl) return;
    const r = await curl(['--socks5-hostname', `127.0.0.1:${open.socks}`, url('/hello', 'localhost')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, `hello from origin, host=localhost:${originPort}\n`);
  });
});

describe('e2e proxy: destination policy without --allow', () => {
  it('SOCKS5 CONNECT to 127.0.0.1 gets REP 0x02 and the target sees no connection', async () => {
    const before = originConns;
    const raw = await RawConn.open(strict.socks);
    await socksGreet(raw);
    const rep = await socksRequest(raw, 1, ipv4Dest('127.0.0.1', originPort));
    assert.equal(rep[1], 0x02, 'connection not allowed by ruleset');
    assert.equal((await raw.rest()).length, 0, 'closed after the reply');
    assert.equal(originConns, before);
  });

  it('curl fails with its SOCKS error and the HTTP proxy answers 403', { skip: skipCurl }, async () => {
    const before = originConns;
    const s = await curl(['--socks5-hostname', `127.0.0.1:${strict.socks}`, url('/hello')]);
    assert.equal(s.code, 97, `CURLE_PROXY expected; ${s.stderr}`);
    assert.match(s.stderr, /SOCKS5/i);
    const h = await curl(['-x', `http://127.0.0.1:${strict.http}`, '-w', '%{http_code}', '-o', '/dev/null', url('/hello')]);
    assert.equal(h.text, '403');
    const t = await curl(['-x', `http://127.0.0.1:${strict.http}`, '--proxytunnel', '-w', '%{http_connect}', '-o', '/dev/null', url('/hello')]);
    assert.notEqual(t.code, 0);
    assert.equal(t.text, '403');
    assert.equal(originConns, before, 'the loopback target saw no connection');
  });
});

describe('e2e proxy: malformed SOCKS5 input', () => {
  /** A good CONNECT + GET after each bad case: the client process still serves. */
  async function stillServes(): Promise<void> {
    const raw = await RawConn.open(open.socks);
    await socksGreet(raw);
    assert.equal((await socksRequest(raw, 1, ipv4Dest('127.0.0.1', originPort)))[1], 0);
    raw.sock.end('GET /hello HTTP/1.0\r\n\r\n');
    assert.match((await raw.rest()).toString(), /hello from origin/);
    assert.equal(open.client.child.exitCode, null);
  }

  const cases: { name: string; send: (raw: RawConn) => Promise<void> | void; expect: number[] }[] = [
    // VER 4 is not SOCKS5: no reply is meaningful, just a close.
    { name: 'SOCKS4 request (wrong version)', send: (r) => void r.sock.write(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])), expect: [] },
    // 1 KiB that is not SOCKS at all (a TLS record header first): close.
    { name: '1 KiB of garbage', send: (r) => void r.sock.write(Buffer.concat([Buffer.from([0x16, 3, 1]), Buffer.alloc(1021, 0xa7)])), expect: [] },
    // 1 KiB of 0x05: a greeting offering only method 5: "no acceptable methods".
    { name: '1 KiB of 0x05', send: (r) => void r.sock.write(Buffer.alloc(1024, 5)), expect: [5, 0xff] },
    { name: 'greeting with zero methods', send: (r) => void r.sock.write(Buffer.from([5, 0])), expect: [5, 0xff] },
    // A 255-byte domain (the wire maximum) is no DNS name (labels ≤ 63, names ≤ 253):
    // the server's policy refuses it as a bad name before any lookup: "not allowed".
    { name: 'oversize domain', send: (r) => void r.sock.write(Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0]), domainDest('a'.repeat(255), 80)])), expect: [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0] },
    { name: 'unknown address type', send: (r) => void r.sock.write(Buffer.from([5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80])), expect: [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0] },
    { name: 'BIND command', send: (r) => void r.sock.write(Buffer.concat([Buffer.from([5, 1, 0, 5, 2, 0]), ipv4Dest('127.0.0.1', originPort)])), expect: [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0] },
  ];
  for (const c of cases) {
    it(`${c.name}: answered ${c.expect.length ? `[${c.expect.join(',')}]` : 'with a close'}; the next request works`, async () => {
      const before = originConns;
      const raw = await RawConn.open(open.socks);
      await c.send(raw);
      assert.deepEqual([...(await raw.rest())], c.expect);
      assert.equal(originConns, before, 'nothing was dialed');
      await stillServes();
    });
  }

  // Truncated messages, then EOF: the client will never finish them and no
  // reply fits, so the front closes (run side by side: were the close left to
  // the 10 s handshake timer, the test would still pass, only slower).
  it('truncated greeting / truncated request, then EOF: closed without a reply; the next request works', async () => {
    const before = originConns;
    const [greeting, request] = await Promise.all([RawConn.open(open.socks), RawConn.open(open.socks)]);
    greeting.sock.end(Buffer.from([5, 3, 0]));
    request.sock.end(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0]));
    const [g, r] = await Promise.all([greeting.rest(), request.rest()]);
    assert.deepEqual([...g], []);
    assert.deepEqual([...r], [5, 0], 'only the method selection');
    assert.equal(originConns, before);
    await stillServes();
  });
});

describe('e2e proxy: carrier cut during a download', () => {
  it('a 50 MiB curl download survives two carrier cuts; logs are one-line', { skip: skipCurl }, async () => {
    const server = await startServer(['--allow', '127.0.0.1']);
    const link = server.links[0] as string;
    const serverPort = Number(new URL(link.replace('polytun://', 'http://')).port);
    const relay = new TcpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port: serverPort } });
    await relay.start();
    closers.push(() => relay.close());
    const socks = await freePort();
    const client = await startClient(link.replace(`:${serverPort}?`, `:${relay.address.port}?`), ['--socks', `127.0.0.1:${socks}`, '--no-status'], socks);
    let cuts = 0;
    const r = await curl(['--socks5-hostname', `127.0.0.1:${socks}`, url(`/blob/${50 * MiB}`)], { onBytes: (got) => {
      if ((cuts === 0 && got >= 10 * MiB) || (cuts === 1 && got >= 30 * MiB)) cuts += relay.cutAll({ mode: 'reset' }) > 0 ? 1 : 0;
    } });
    assert.equal(cuts, 2, 'two cuts happened mid-download');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.bytes, 50 * MiB);
    assert.equal(r.sha256, sha256Of(50 * MiB));
    assert.equal(client.child.exitCode, null);
    const log = client.log();
    assert.match(log, /connection to server lost; reconnecting/);
    assert.match(log, /session resumed/);
    for (const [who, text] of [['client', log], ['server', server.log()]] as const) {
      assert.ok(!text.includes('    at '), `${who} log has a stack trace:\n${text}`);
      for (const line of text.split('\n').filter(Boolean)) assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARN|DEBUG|ERROR) /, `${who} log line`);
    }
    assert.equal(await client.stop(), 0);
    assert.equal(await server.stop(), 0);
  });
});

describe('e2e proxy: polytun status', () => {
  it('shows state open and every front', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [`${ROOT}/bin/polytun.js`, 'status', '--status', `127.0.0.1:${open.status}`]);
    assert.match(stdout, /^state: +open$/m);
    assert.match(stdout, new RegExp(`^fronts: +socks5 127\\.0\\.0\\.1:${open.socks}, http 127\\.0\\.0\\.1:${open.http}, status 127\\.0\\.0\\.1:${open.status}$`, 'm'));
    const json = JSON.parse((await run(process.execPath, [`${ROOT}/bin/polytun.js`, 'status', '--status', `127.0.0.1:${open.status}`, '--json'])).stdout) as { state: string; role: string; fronts: { kind: string }[] };
    assert.equal(json.state, 'open');
    assert.equal(json.role, 'client');
    assert.deepEqual(json.fronts.map((f) => f.kind), ['socks5', 'http', 'status']);
  });
});

