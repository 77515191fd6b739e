import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  HttpProxyError,
  HttpProxyRequestParser,
  encodeProxyResponse,
  parseProxyAuthorization,
  rewriteForOrigin,
} from '../../../src/client/http-proxy-codec.js';
import type { HttpProxyParserInit, HttpProxyRequest } from '../../../src/client/http-proxy-codec.js';
import { ClosedError } from '../../../src/core/errors.js';

interface Outcome {
  req: HttpProxyRequest | null;
  /** The request's remainder followed by everything fed after the head. */
  tail: Buffer;
  error: unknown;
}

function drive(chunks: Buffer[], init?: HttpProxyParserInit): Outcome {
  const p = new HttpProxyRequestParser(init);
  let req: HttpProxyRequest | null = null;
  const after: Buffer[] = [];
  try {
    for (const c of chunks) {
      if (req) after.push(c);
      else req = p.push(c);
      if (req && after.length === 0) after.push(req.remainder);
    }
  } catch (err) {
    return { req, tail: Buffer.concat(after), error: err };
  }
  return { req: req && { ...req, remainder: Buffer.alloc(0) }, tail: Buffer.concat(after), error: undefined };
}

const bytewise = (buf: Buffer): Buffer[] => [...buf].map((b) => Buffer.from([b]));

function parse(text: string | Buffer): HttpProxyRequest {
  const buf = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const whole = drive([buf]);
  if (whole.error) throw whole.error;
  assert.deepEqual(drive(bytewise(buf)), whole, 'byte-at-a-time must match');
  assert.ok(whole.req);
  return { ...whole.req, remainder: whole.tail };
}

function reject(text: string | Buffer, status: number, reason?: RegExp, init?: HttpProxyParserInit): HttpProxyError {
  const buf = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const results = [drive([buf], init), drive(bytewise(buf), init)];
  for (const o of results) {
    assert.ok(o.error instanceof HttpProxyError, `expected HttpProxyError for ${JSON.stringify(buf.toString('latin1').slice(0, 80))}, got ${String(o.error)}`);
    assert.equal(o.error.status, status, o.error.message);
    assert.equal(o.error.code, 'ERR_PROTOCOL');
    if (reason) assert.match(o.error.message, reason);
  }
  return results[0]?.error as HttpProxyError;
}

describe('HTTP proxy request heads', () => {
  test('CONNECT with pipelined tunnel bytes', () => {
    const r = parse('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8\r\n\r\n\x16\x03\x01');
    assert.equal(r.method, 'CONNECT');
    assert.deepEqual(r.target, { host: 'example.com', port: 443, kind: 'domain' });
    assert.equal(r.path, null);
    assert.equal(r.version, 'HTTP/1.1');
    assert.deepEqual(r.headers, [['Host', 'example.com:443'], ['User-Agent', 'curl/8']]);
    assert.equal(r.body, 'none');
    assert.equal(r.rawHeadBytes, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8\r\n\r\n'.length);
    assert.deepEqual(r.remainder, Buffer.from([0x16, 0x03, 0x01]));
  });

  test('CONNECT to IPv6 and IPv4 literals', () => {
    assert.deepEqual(parse('CONNECT [::1]:8080 HTTP/1.1\r\n\r\n').target, { host: '::1', port: 8080, kind: 'ipv6' });
    assert.deepEqual(parse('CONNECT [0:0::1]:8080 HTTP/1.0\r\n\r\n').target, { host: '::1', port: 8080, kind: 'ipv6' });
    assert.deepEqual(parse('CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n').target, { host: '127.0.0.1', port: 22, kind: 'ipv4' });
  });

  test('absolute-form GET: default port 80, origin-form path', () => {
    const r = parse('GET http://example.com/a/b?c=d HTTP/1.1\r\nhost: example.com\r\nACCEPT: */*\r\n\r\n');
    assert.deepEqual(r.target, { host: 'example.com', port: 80, kind: 'domain' });
    assert.equal(r.authority, 'example.com');
    assert.equal(r.path, '/a/b?c=d');
    assert.deepEqual(r.headers, [['host', 'example.com'], ['ACCEPT', '*/*']]);
    assert.equal(r.body, 'none');
    assert.equal(r.remainder.length, 0);
  });

  test('absolute-form target variants', () => {
    const cases: [string, string, number, string][] = [
      ['http://example.com', 'example.com', 80, '/'],
      ['HTTP://example.com?x=1', 'example.com', 80, '/?x=1'],
      ['http://example.com:/p#frag', 'example.com', 80, '/p'],
      ['http://example.com:8080/p', 'example.com', 8080, '/p'],
      ['http://[::1]:8080/x', '::1', 8080, '/x'],
      ['http://[::1]/', '::1', 80, '/'],
      ['http://10.0.0.1:81', '10.0.0.1', 81, '/'],
    ];
    for (const [uri, host, port, path] of cases) {
      const r = parse(`OPTIONS ${uri} HTTP/1.1\r\n\r\n`);
      assert.equal(r.target.host, host, uri);
      assert.equal(r.target.port, port, uri);
      assert.equal(r.path, path, uri);
    }
  });

  test('POST body and pipelined bytes land in the remainder; framing is reported', () => {
    const r = parse('POST http://example.com/up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET http://x.example/ HTTP/1.1\r\n');
    assert.equal(r.body, 5);
    assert.equal(r.remainder.toString(), 'helloGET http://x.example/ HTTP/1.1\r\n');
    assert.equal(parse('PUT http://e.example/ HTTP/1.1\r\ncontent-length: 7, 7\r\n\r\n').body, 7);
    assert.equal(parse('PUT http://e.example/ HTTP/1.1\r\nTRANSFER-ENCODING: gzip, Chunked\r\n\r\n').body, 'chunked');
    assert.equal(parse('PUT http://e.example/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n').body, 'none');
  });

  test('leading blank lines are ignored; header whitespace is trimmed', () => {
    const r = parse('\r\n\r\nGET http://e.example/ HTTP/1.1\r\nX-A:   v  \t\r\nX-Empty:\r\n\r\n');
    assert.deepEqual(r.headers, [['X-A', 'v'], ['X-Empty', '']]);
    assert.equal(r.rawHeadBytes, 4 + 'GET http://e.example/ HTTP/1.1\r\nX-A:   v  \t\r\nX-Empty:\r\n\r\n'.length);
  });

  test('obs-text in values and non-ASCII targets pass through byte for byte', () => {
    const r = parse(Buffer.from('GET http://e.example/\xe9 HTTP/1.1\r\nX: caf\xe9\r\n\r\n', 'latin1'));
    assert.equal(r.path, '/\xe9');
    assert.deepEqual(r.headers, [['X', 'caf\xe9']]);
  });

  test('feeding after the head is a ClosedError', () => {
    const p = new HttpProxyRequestParser();
    assert.ok(p.push(Buffer.from('CONNECT a.example:1 HTTP/1.1\r\n\r\n')));
    assert.throws(() => p.push(Buffer.from('x')), ClosedError);
  });
});

describe('HTTP proxy request errors', () => {
  test('400: unsupported targets, with a reason', () => {
    reject('GET /x HTTP/1.1\r\nHost: e.example\r\n\r\n', 400, /origin-form/);
    reject('OPTIONS * HTTP/1.1\r\n\r\n', 400, /origin-form/);
    reject('GET https://e.example/ HTTP/1.1\r\n\r\n', 400, /CONNECT/);
    reject('GET ftp://e.example/ HTTP/1.1\r\n\r\n', 400, /scheme ftp/);
    reject('GET http://user:pw@e.example/ HTTP/1.1\r\n\r\n', 400, /userinfo/);
    reject('GET http:///x HTTP/1.1\r\n\r\n', 400, /empty host/);
    reject('GET http://::1/ HTTP/1.1\r\n\r\n', 400, /brackets/);
    reject('GET e.example HTTP/1.1\r\n\r\n', 400, /absolute URI/);
    reject('CONNECT e.example HTTP/1.1\r\n\r\n', 400, /missing port/);
    reject('CONNECT e.example:0 HTTP/1.1\r\n\r\n', 400, /port 0/);
    reject('CONNECT e.example:99999 HTTP/1.1\r\n\r\n', 400, /bad port/);
    reject('CONNECT 127.1:80 HTTP/1.1\r\n\r\n', 400, /IPv4/);
    reject('CONNECT [fe80::1%25eth0]:80 HTTP/1.1\r\n\r\n', 400);
  });

  test('400: malformed request lines', () => {
    reject('GET  http://e.example/ HTTP/1.1\r\n\r\n', 400, /request line/);
    reject('GET http://e.example/\r\n\r\n', 400, /request line/);
    reject('G(T http://e.example/ HTTP/1.1\r\n\r\n', 400, /method/);
    reject('GET http://e.example/ HTTP/1\r\n\r\n', 400, /version/);
    reject('GET http://e.example/ http/1.1\r\n\r\n', 400, /version/);
    reject('GET http://e.example/\x7f HTTP/1.1\r\n\r\n', 400, /target/);
  });

  test('505: other HTTP versions', () => {
    reject('GET http://e.example/ HTTP/2.0\r\n\r\n', 505);
    reject('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505);
  });

  test('400: header injection, folding, NUL, bare CR/LF', () => {
    reject('GET http://e.example/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n', 400, /folding/);
    reject('GET http://e.example/ HTTP/1.1\r\nX : a\r\n\r\n', 400, /header name/);
    reject('GET http://e.example/ HTTP/1.1\r\nX\x01: a\r\n\r\n', 400, /header name/);
    reject('GET http://e.example/ HTTP/1.1\r\nnocolon\r\n\r\n', 400, /colon/);
    reject('GET http://e.example/ HTTP/1.1\r\n: a\r\n\r\n', 400, /colon/);
    reject('GET http://e.example/ HTTP/1.1\r\nX: a\x01b\r\n\r\n', 400, /control/);
    reject('GET http://e.example/ HTTP/1.1\r\nX: a\0b\r\n\r\n', 400, /NUL/);
    reject('GET http://e.example/ HTTP/1.1\r\nX: a\nInjected: 1\r\n\r\n', 400, /bare LF/);
    reject('GET http://e.example/ HTTP/1.1\r\nX: a\rInjected: 1\r\n\r\n', 400, /bare CR/);
    reject('GET http://e.example/ HTTP/1.1\n\n', 400, /bare LF/);
  });

  test('400: ambiguous framing and duplicate Host', () => {
    reject('POST http://e.example/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 400, /both/);
    reject('POST http://e.example/ HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n', 400, /conflicting/);
    reject('POST http://e.example/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 400, /Content-Length/);
    reject('POST http://e.example/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 400, /chunked/);
    reject('POST http://e.example/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 400, /HTTP\/1.0/);
    reject('GET http://e.example/ HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n', 400, /Host/);
  });

  test('431: head over 16 KiB or too many fields', () => {
    const big = `GET http://e.example/ HTTP/1.1\r\nX: ${'a'.repeat(16384)}\r\n\r\n`;
    reject(big, 431);
    // Exactly at the limit is fine.
    const line = 'GET http://e.example/ HTTP/1.1\r\n';
    const fill = 16384 - line.length - 'X: \r\n\r\n'.length;
    assert.equal(parse(`${line}X: ${'a'.repeat(fill)}\r\n\r\n`).rawHeadBytes, 16384);
    reject(`${line}X: ${'a'.repeat(fill + 1)}\r\n\r\n`, 431);
    // A client that never ends its head is cut off at the limit, not buffered forever.
    const p = new HttpProxyRequestParser();
    assert.throws(() => {
      for (let i = 0; i < 100; i++) p.push(Buffer.alloc(1024, 0x61));
    }, (err: unknown) => err instanceof HttpProxyError && err.status === 431);
    reject(`${line}${'X: 1\r\n'.repeat(129)}\r\n`, 431, /header fields/);
    reject(`${line}X: 1\r\nY: 2\r\n\r\n`, 431, undefined, { maxHeaders: 1 });
  });

  test('the error sticks', () => {
    const p = new HttpProxyRequestParser();
    let first: unknown;
    try {
      p.push(Buffer.from('GET /x HTTP/1.1\r\n\r\n'));
    } catch (err) {
      first = err;
    }
    assert.ok(first instanceof HttpProxyError);
    assert.throws(() => p.push(Buffer.from('x')), (err: unknown) => err === first);
  });
});

describe('rewriteForOrigin', () => {
  test('origin-form line, Host from the URI, hop-by-hop fields dropped, Connection: close', () => {
    const r = parse(
      'GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: evil.example\r\nProxy-Connection: keep-alive\r\n' +
        'Proxy-Authorization: Basic dTpw\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\n' +
        'TE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nAccept: */*\r\nuser-agent: t\r\n\r\n',
    );
    assert.equal(
      rewriteForOrigin(r).toString('latin1'),
      'GET /p?q HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\nuser-agent: t\r\nConnection: close\r\n\r\n',
    );
  });

  test('Host is added when the client sent none; body framing survives a Connection listing', () => {
    const r = parse('POST http://e.example/ HTTP/1.0\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok');
    assert.equal(rewriteForOrigin(r).toString('latin1'), 'POST / HTTP/1.0\r\nHost: e.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\n');
  });

  test('websocket upgrades are kept', () => {
    const r = parse('GET http://e.example/ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n');
    assert.equal(
      rewriteForOrigin(r).toString('latin1'),
      'GET /ws HTTP/1.1\r\nHost: e.example\r\nSec-WebSocket-Key: k\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    );
  });

  test('CONNECT has nothing to rewrite', () => {
    assert.throws(() => rewriteForOrigin(parse('CONNECT a.example:1 HTTP/1.1\r\n\r\n')), HttpProxyError);
  });
});

describe('parseProxyAuthorization / encodeProxyResponse', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  test('Basic credentials', () => {
    assert.deepEqual(parseProxyAuthorization(`Basic ${b64('user:pass')}`), { username: 'user', password: 'pass' });
    assert.deepEqual(parseProxyAuthorization(`basic   ${b64('u:p:w')} `), { username: 'u', password: 'p:w' });
    assert.deepEqual(parseProxyAuthorization(`Basic ${b64('ü:€')}`), { username: 'ü', password: '€' });
    assert.deepEqual(parseProxyAuthorization(`Basic ${Buffer.from('\xe9:x', 'latin1').toString('base64')}`), { username: 'é', password: 'x' });
    assert.deepEqual(parseProxyAuthorization(`Basic ${b64(':')}`), { username: '', password: '' });
  });

  test('anything else is null', () => {
    for (const h of ['Bearer abc', 'Basic', `Basic ${b64('nocolon')}`, 'Basic !!!!', 'Basic dXNlcjpwYXNz=', 'Basic dXNlcjpwYXN=', `Digest ${b64('a:b')}`]) {
      assert.equal(parseProxyAuthorization(h), null, h);
    }
  });

  test('responses', () => {
    assert.equal(encodeProxyResponse(200).toString(), 'HTTP/1.1 200 Connection Established\r\n\r\n');
    assert.equal(
      encodeProxyResponse(407, [['Proxy-Authenticate', 'Basic realm="polytun"']]).toString(),
      'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="polytun"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    );
    assert.throws(() => encodeProxyResponse(400, [['X', 'a\r\nSet-Cookie: x']]), HttpProxyError);
  });
});

// ---- property tests ----

const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,12}$/);
const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
const arbRequest = fc
  .record({
    connect: fc.boolean(),
    method: token,
    host: fc.oneof(fc.domain(), fc.ipV4(), fc.constant('[::1]')),
    port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    path: fc.webPath(),
    headers: fc.array(fc.tuple(token.filter((t) => !['host', 'content-length', 'transfer-encoding'].includes(t.toLowerCase())), value), { maxLength: 10 }),
    rest: fc.uint8Array({ maxLength: 40 }),
  })
  .map((r) => {
    const authority = r.port === undefined && !r.connect ? r.host : `${r.host}:${r.port ?? 443}`;
    const line = r.connect ? `CONNECT ${authority} HTTP/1.1` : `${r.method === 'CONNECT' ? 'GET' : r.method} http://${authority}${r.path} HTTP/1.1`;
    const head = `${line}\r\n${r.headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
    return { wire: Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(r.rest)]), r };
  });

function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

describe('HTTP proxy parser properties', () => {
  test('valid requests parse identically however they are chunked', () => {
    fc.assert(
      fc.property(arbRequest, fc.array(fc.nat(), { maxLength: 20 }), ({ wire, r }, cuts) => {
        const whole = drive([wire]);
        assert.equal(whole.error, undefined);
        assert.ok(whole.req);
        assert.deepEqual(whole.req.headers, r.headers);
        assert.deepEqual(whole.tail, Buffer.from(r.rest));
        assert.equal(whole.req.target.port, r.port ?? (r.connect ? 443 : 80));
        assert.deepEqual(drive(split(wire, cuts)), whole);
        assert.deepEqual(drive(bytewise(wire)), whole);
        if (!r.connect) assert.ok(rewriteForOrigin(whole.req).toString('latin1').endsWith('\r\nConnection: close\r\n\r\n'));
      }),
      { numRuns: 300 },
    );
  });

  test('random and mutated input only raises HttpProxyError, identically for any chunking', () => {
    const mutated = fc
      .tuple(arbRequest, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
      .map(([{ wire }, muts]) => {
        const w = Buffer.from(wire);
        for (const [at, v] of muts) w[at % w.length] = v;
        return w;
      });
    const input = fc.oneof(mutated, fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)));
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 20 }), (wire, cuts) => {
        const whole = drive([wire], { maxHeadBytes: 256 });
        if (whole.error !== undefined) assert.ok(whole.error instanceof HttpProxyError, String(whole.error));
        for (const other of [drive(split(wire, cuts), { maxHeadBytes: 256 }), drive(bytewise(wire), { maxHeadBytes: 256 })]) {
          assert.deepEqual(other.req, whole.req);
          assert.equal((other.error as Error | undefined)?.message, (whole.error as Error | undefined)?.message);
        }
        if (whole.req && whole.req.path !== null) rewriteForOrigin(whole.req);
      }),
      { numRuns: 1000 },
    );
  });
});
