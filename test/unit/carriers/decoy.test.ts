import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { nginxErrorBody, nginxNotFound, reverseProxy, staticSite, type Decoy } from '../../../src/carriers/decoy.js';

const FIXTURE = new URL('../../fixtures/decoy-site/index.html', import.meta.url).pathname;
const INDEX = readFileSync(FIXTURE);
const NGINX_404 = '<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
const SECRET = 'TOP-SECRET-' + randomBytes(8).toString('hex');
/** Every header an nginx static or error answer carries; anything else is a tell. */
const NGINX_HEADERS = new Set(['server', 'date', 'content-type', 'content-length', 'connection', 'last-modified', 'etag', 'location', 'transfer-encoding']);

interface Reply {
  status: number;
  reason: string;
  headers: http.IncomingHttpHeaders;
  rawHeaderNames: string[];
  body: Buffer;
}

/** One request with the path sent exactly as given (no client-side normalization). */
function request(port: number, reqPath: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: reqPath, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          reason: res.statusMessage ?? '',
          headers: res.headers,
          rawHeaderNames: res.rawHeaders.filter((_, i) => i % 2 === 0),
          body: Buffer.concat(parts),
        }),
      );
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function serve(t: TestContext, decoy: Decoy): Promise<number> {
  const server = http.createServer(decoy);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

function assertLooksLikeNginx(r: Reply): void {
  assert.equal(r.headers.server, 'nginx');
  for (const name of r.rawHeaderNames) assert.ok(NGINX_HEADERS.has(name.toLowerCase()), `unexpected header ${name}`);
  assert.equal(r.rawHeaderNames[0], 'Server', 'nginx sends Server first');
  assert.doesNotMatch(JSON.stringify(r.headers) + r.body.toString('latin1'), /polytun|websocket|node/i);
}

/** site/ (the fixture + assets) with a secret file beside it and a symlink pointing at it. */
function makeSite(t: TestContext): string {
  const top = mkdtempSync(path.join(tmpdir(), 'decoy-'));
  t.after(() => rmSync(top, { recursive: true, force: true }));
  const site = path.join(top, 'site');
  mkdirSync(path.join(site, 'blog'), { recursive: true });
  mkdirSync(path.join(site, 'empty'));
  writeFileSync(path.join(site, 'index.html'), INDEX);
  writeFileSync(path.join(site, 'style.css'), 'body{color:#333}');
  writeFileSync(path.join(site, 'app.js'), 'console.log(1)');
  writeFileSync(path.join(site, 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  writeFileSync(path.join(site, 'archive.bin'), randomBytes(10));
  writeFileSync(path.join(site, 'blog', 'index.html'), '<p>blog</p>');
  writeFileSync(path.join(site, '.env'), SECRET);
  writeFileSync(path.join(top, 'secret.txt'), SECRET);
  symlinkSync(path.join(top, 'secret.txt'), path.join(site, 'leak.txt'));
  symlinkSync(top, path.join(site, 'up'));
  return site;
}

describe('staticSite', () => {
  it('serves index.html for / with nginx headers, HEAD without body, 304 on a matching ETag', async (t) => {
    const port = await serve(t, staticSite(path.dirname(FIXTURE)));
    const r = await request(port, '/');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, INDEX);
    assert.equal(r.headers['content-type'], 'text/html');
    assert.equal(r.headers['content-length'], String(INDEX.length));
    assert.match(String(r.headers.etag), /^"[0-9a-f]+-[0-9a-f]+"$/);
    assert.ok(r.headers['last-modified']);
    assert.equal(r.headers['keep-alive'], undefined, 'Node default Keep-Alive header must not leak');
    assert.deepEqual(r.rawHeaderNames, ['Server', 'Date', 'Content-Type', 'Content-Length', 'Last-Modified', 'Connection', 'ETag']);
    assertLooksLikeNginx(r);
    const h = await request(port, '/index.html', { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.body.length, 0);
    assert.equal(h.headers['content-length'], String(INDEX.length));
    const cached = await request(port, '/', { headers: { 'If-None-Match': String(r.headers.etag) } });
    assert.equal(cached.status, 304);
    assert.equal(cached.body.length, 0);
  });

  it('content types follow the extension; unknown ones are application/octet-stream', async (t) => {
    const port = await serve(t, staticSite(makeSite(t)));
    const want: Record<string, string> = {
      '/style.css': 'text/css',
      '/app.js': 'application/javascript',
      '/logo.svg': 'image/svg+xml',
      '/archive.bin': 'application/octet-stream',
      '/blog/': 'text/html',
    };
    for (const [p, type] of Object.entries(want)) {
      const r = await request(port, p);
      assert.equal(r.status, 200, p);
      assert.equal(r.headers['content-type'], type, p);
    }
  });

  it("unknown paths get nginx's 404 page, or the index with 200 when configured", async (t) => {
    const site = makeSite(t);
    const port = await serve(t, staticSite(site));
    const r = await request(port, '/wp-login.php');
    assert.equal(r.status, 404);
    assert.equal(r.body.toString(), NGINX_404);
    assert.equal(r.headers['content-type'], 'text/html');
    assertLooksLikeNginx(r);
    const spa = await serve(t, staticSite(site, { unknownPath: 'index' }));
    const s = await request(spa, '/some/route');
    assert.equal(s.status, 200);
    assert.deepEqual(s.body, INDEX);
  });

  it('directory traversal in any spelling, dotfiles and escaping symlinks → 404, never the secret', async (t) => {
    const port = await serve(t, staticSite(makeSite(t)));
    const attempts = [
      '/../../etc/passwd',
      '/../secret.txt',
      '/..%2fsecret.txt',
      '/%2e%2e/secret.txt',
      '/%2e%2e%2fsecret.txt',
      '/%2E%2E%2Fsecret.txt',
      '/.%2e/secret.txt',
      '/blog/../../secret.txt',
      '/blog/%2e%2e/%2e%2e/secret.txt',
      '/..\\secret.txt',
      '/..%5csecret.txt',
      '/%5c..%5csecret.txt',
      '/%252e%252e/secret.txt',
      '/index.html%00/../../secret.txt',
      '//../secret.txt',
      '/....//secret.txt',
      '/.env',
      '/leak.txt',
      '/up/secret.txt',
      '/etc/passwd',
    ];
    for (const p of attempts) {
      const r = await request(port, p);
      assert.equal(r.status, 404, `${p} → ${r.status}`);
      assert.equal(r.body.toString(), NGINX_404, p);
    }
  });

  it('a directory without its slash redirects; bad percent-encoding is 400; POST is 405', async (t) => {
    const port = await serve(t, staticSite(makeSite(t)));
    const dir = await request(port, '/blog');
    assert.equal(dir.status, 301);
    assert.equal(dir.headers.location, '/blog/');
    assert.equal((await request(port, '/empty/')).status, 404);
    const bad = await request(port, '/%zz');
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.connection, 'close');
    assert.equal(bad.body.toString(), nginxErrorBody(400));
    const post = await request(port, '/', { method: 'POST', body: Buffer.from('x=1'), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(post.status, 405);
    assert.equal(post.reason, 'Not Allowed');
  });
});

describe('nginxNotFound', () => {
  it('answers every method and path with the default 404', async (t) => {
    const port = await serve(t, nginxNotFound());
    for (const [method, p] of [
      ['GET', '/'],
      ['POST', '/api'],
      ['HEAD', '/x'],
    ] as const) {
      const r = await request(port, p, { method });
      assert.equal(r.status, 404);
      assert.equal(r.headers['content-length'], String(NGINX_404.length));
      assert.equal(r.body.toString(), method === 'HEAD' ? '' : NGINX_404);
      assertLooksLikeNginx(r);
    }
  });

  it('the server name is configurable', async (t) => {
    const port = await serve(t, nginxNotFound({ serverName: 'nginx/1.24.0' }));
    const r = await request(port, '/');
    assert.equal(r.headers.server, 'nginx/1.24.0');
    assert.match(r.body.toString(), /<center>nginx\/1\.24\.0<\/center>/);
  });
});

describe('reverseProxy', () => {
  async function backend(t: TestContext, handler: http.RequestListener): Promise<number> {
    const server = http.createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as net.AddressInfo).port;
  }

  it("returns the backend's answer, streams bodies both ways, strips hop-by-hop headers", async (t) => {
    let seen: http.IncomingHttpHeaders = {};
    let seenUrl = '';
    const bport = await backend(t, (req, res) => {
      seen = req.headers;
      seenUrl = req.url ?? '';
      const h = createHash('sha256');
      req.on('data', (d: Buffer) => h.update(d));
      req.on('end', () => {
        res.setHeader('Server', 'gunicorn');
        res.setHeader('X-Accel-Redirect', '/internal');
        res.setHeader('X-Request-Id', 'abc123');
        res.setHeader('Connection', 'keep-alive, X-Hop-Resp');
        res.setHeader('X-Hop-Resp', 'drop me');
        res.writeHead(201, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ sha256: h.digest('hex') }));
      });
    });
    const port = await serve(t, reverseProxy(`http://127.0.0.1:${bport}`));
    const body = randomBytes(1024 * 1024);
    const r = await request(port, '/api/upload?x=1', {
      method: 'POST',
      body,
      headers: { Host: 'shop.example', Connection: 'keep-alive, X-Hop', 'X-Hop': 'secret', 'Proxy-Authorization': 'Basic Zm9vOmJhcg==', 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(r.status, 201);
    assert.deepEqual(JSON.parse(r.body.toString()), { sha256: createHash('sha256').update(body).digest('hex') });
    assert.equal(r.headers.server, 'nginx');
    assert.equal(r.headers['x-request-id'], 'abc123');
    assert.equal(r.headers['x-accel-redirect'], undefined);
    assert.equal(r.headers['x-hop-resp'], undefined);
    assert.equal(seenUrl, '/api/upload?x=1');
    assert.equal(seen.host, 'shop.example');
    assert.equal(seen['x-hop'], undefined);
    assert.equal(seen['proxy-authorization'], undefined);
  });

  it('preserveHost: false sends the backend host; a dead backend is a 502 nginx page', async (t) => {
    let host = '';
    const bport = await backend(t, (req, res) => {
      host = req.headers.host ?? '';
      res.end('ok');
    });
    const port = await serve(t, reverseProxy(`http://127.0.0.1:${bport}/base/`, { preserveHost: false }));
    assert.equal((await request(port, '/')).body.toString(), 'ok');
    assert.equal(host, `127.0.0.1:${bport}`);

    const deadServer = http.createServer();
    await new Promise<void>((r) => deadServer.listen(0, '127.0.0.1', r));
    const deadPort = (deadServer.address() as net.AddressInfo).port;
    await new Promise<void>((r) => deadServer.close(() => r()));
    const dead = await serve(t, reverseProxy(`http://127.0.0.1:${deadPort}`));
    const r = await request(dead, '/');
    assert.equal(r.status, 502);
    assert.equal(r.body.toString(), nginxErrorBody(502));
    assertLooksLikeNginx(r);
  });

  it('a silent backend is a 504 after timeoutMs', async (t) => {
    const pending: http.ServerResponse[] = [];
    const bport = await backend(t, (_req, res) => void pending.push(res));
    t.after(() => pending.forEach((res) => res.destroy()));
    const port = await serve(t, reverseProxy(`http://127.0.0.1:${bport}`, { timeoutMs: 100 }));
    const r = await request(port, '/slow');
    assert.equal(r.status, 504);
    assert.equal(r.reason, 'Gateway Time-out');
  });
});
