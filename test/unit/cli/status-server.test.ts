import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { startStatusServer, type StatusServer } from '../../../src/cli/status-server.js';
import { fetchStatus, formatAge, formatBytes, formatStatus, StatusUnavailableError } from '../../../src/cli/cmd-status.js';

/** A raw GET with a chosen method, path and Host header. */
function get(port: number, path: string, opts: { method?: string; host?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { host: opts.host ?? `127.0.0.1:${port}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('startStatusServer', () => {
  let server: StatusServer;
  let calls = 0;
  let fail = false;
  before(async () => {
    server = await startStatusServer({
      listen: { host: '127.0.0.1', port: 0 },
      getStatus: async () => {
        calls++;
        if (fail) throw new Error('session table unavailable');
        return { state: 'open', streams: calls };
      },
    });
  });
  after(async () => {
    await server.close();
  });

  it('GET /status answers fresh JSON per request', async () => {
    const a = await get(server.address.port, '/status');
    const b = await get(server.address.port, '/status?x=1');
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'application/json');
    assert.equal(a.headers['access-control-allow-origin'], undefined);
    const sa = JSON.parse(a.body) as { streams: number };
    const sb = JSON.parse(b.body) as { streams: number };
    assert.equal(sb.streams, sa.streams + 1);
  });

  it('everything else is 404', async () => {
    assert.equal((await get(server.address.port, '/')).status, 404);
    assert.equal((await get(server.address.port, '/status/x')).status, 404);
    assert.equal((await get(server.address.port, '/status', { method: 'POST' })).status, 404);
  });

  it('a non-loopback Host header is refused (DNS rebinding)', async () => {
    assert.equal((await get(server.address.port, '/status', { host: 'evil.example' })).status, 403);
    assert.equal((await get(server.address.port, '/status', { host: `localhost:${server.address.port}` })).status, 200);
    assert.equal((await get(server.address.port, '/status', { host: `[::1]:${server.address.port}` })).status, 200);
  });

  it('a failing getStatus is a 500, not a crash', async () => {
    fail = true;
    try {
      assert.equal((await get(server.address.port, '/status')).status, 500);
    } finally {
      fail = false;
    }
    assert.equal((await get(server.address.port, '/status')).status, 200);
  });

  it('refuses non-loopback addresses unless allowed, and reports bind failures', async () => {
    await assert.rejects(startStatusServer({ listen: { host: '0.0.0.0', port: 0 }, getStatus: () => ({}) }), (err: unknown) => err instanceof ConfigError && /loopback only/.test(err.message));
    await assert.rejects(
      startStatusServer({ listen: { host: '127.0.0.1', port: server.address.port }, getStatus: () => ({}) }),
      (err: unknown) => err instanceof ConfigError && /cannot listen/.test(err.message),
    );
  });

  it('close is idempotent', async () => {
    const s = await startStatusServer({ listen: { host: '127.0.0.1', port: 0 }, getStatus: () => ({}) });
    await Promise.all([s.close(), s.close()]);
    await s.close();
    await assert.rejects(get(s.address.port, '/status'), /ECONNREFUSED/);
  });

  it('fetchStatus reads it and reports HTTP errors as StatusUnavailableError', async () => {
    const s = (await fetchStatus(server.address, 2000)) as { state: string };
    assert.equal(s.state, 'open');
    fail = true;
    try {
      await assert.rejects(fetchStatus(server.address, 2000), (err: unknown) => err instanceof StatusUnavailableError && /HTTP 500/.test(err.message));
    } finally {
      fail = false;
    }
  });
});

describe('formatStatus', () => {
  it('prints known fields and skips missing ones', () => {
    const now = Date.parse('2025-01-01T00:01:00Z');
    const text = formatStatus(
      {
        state: 'open', server: 'vps:4433', carrier: 'tls', since: '2025-01-01T00:00:00Z', rttMs: 3.25, bytesSent: 10, bytesReceived: 5 * 1024 ** 3,
        streams: 2, reconnects: 1, fronts: [{ kind: 'socks5', listen: '127.0.0.1:1080' }], lastError: 'boom\nforged line',
      },
      now,
    );
    assert.equal(
      text,
      [
        'state:      open',
        'server:     vps:4433 (tls)',
        'since:      2025-01-01T00:00:00Z (60 s ago)',
        'rtt:        3.3 ms',
        'traffic:    sent 10 B, received 5.0 GiB',
        'streams:    2 open',
        'reconnects: 1',
        'fronts:     socks5 127.0.0.1:1080',
        'last error: boom?forged line',
        '',
      ].join('\n'),
    );
    assert.equal(formatStatus(null), 'state: unknown\nrtt:   not measured yet\n');
  });

  it('shows the record cipher on its own line after the server, when the client reports one', () => {
    const base = { state: 'open', server: 'vps:4433', carrier: 'tcp', rttMs: 3.25 };
    assert.equal(formatStatus({ ...base, cipher: 'aes-256-gcm' }), 'state:  open\nserver: vps:4433 (tcp)\ncipher: aes-256-gcm\nrtt:    3.3 ms\n');
    assert.equal(formatStatus(base), 'state:  open\nserver: vps:4433 (tcp)\nrtt:    3.3 ms\n');
  });

  it('counts resumes and new sessions, and shows the current session\'s age', () => {
    const text = formatStatus({ state: 'open', since: '2025-01-01T00:00:00Z', sessionAgeMs: 75_400, reconnects: 3, resumes: 2, newSessions: 1 });
    assert.match(text, /^session: {4}1 min 15 s old \(since 2025-01-01T00:00:00Z\)$/m);
    assert.match(text, /^reconnects: 3 \(2 resumed, 1 new session\)$/m);
    assert.doesNotMatch(text, /^since:/m);
    assert.match(formatStatus({ reconnects: 2, resumes: 0, newSessions: 2 }), /^reconnects: 2 \(0 resumed, 2 new sessions\)$/m);
    assert.equal(formatAge(59_499), '59 s');
    assert.equal(formatAge(7_500_000), '2 h 5 min');
    assert.equal(formatAge(90_000_000), '1 d 1 h');
  });

  it('counts UDP datagrams in the traffic line, both directions', () => {
    const text = formatStatus({ state: 'open', bytesSent: 1000, bytesReceived: 24, udpDatagramsSent: 3, udpBytesSent: 24, udpDatagramsReceived: 2, udpBytesReceived: 1000 });
    assert.match(text, /^traffic: +sent 1\.0 KiB, received 1\.0 KiB; udp: sent 3 datagrams \(24 B\), received 2 \(1000 B\)$/m);
  });

  it('formatBytes', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(1024 ** 4 * 2048), '2048.0 TiB');
  });
});
