/**
 * Issue "Multi-user gateway on one port", end to end: real `polytun server`
 * processes with the user store, admin API, mtt controller and provisioning,
 * real `polytun client` processes over wss and tcp, an echo target on
 * loopback.
 *
 *   polytun client ══ wss://127.0.0.1:P/u/<path> ══▶ polytun server ─▶ echo 127.0.0.1
 *   polytun client ══ wss://127.0.0.1:P/tunnel + Authorization: Bearer … ══▶ (token users)
 *   test ──▶ admin API / mtt controller (loopback) ──▶ user store ──▶ live effect
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync, statSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeDestination } from '../../src/core/address.js';
import { RejectCode, RejectedError } from '../../src/core/errors.js';
import { ProxyClient } from '../../src/client/proxy-client.js';
import { SocksReply } from '../../src/server/egress.js';
import { CertificateError } from '../../src/carriers/errors.js';
import { TlsCarrier } from '../../src/carriers/tls.js';
import { WsUpgradeError } from '../../src/carriers/ws.js';
import { provisionClient } from '../../src/config/provision-client.js';
import { decodeLink, encodeLink } from '../../src/config/link.js';
import { clientForLink } from '../../src/config/dial-link.js';
import { encodeKey, generateKeyPair, generateToken } from '../../src/secure/keys.js';
import { ensureBuilt, freePort, polytun, ROOT, startClient, stopAll, waitForPort, runCli } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { api, echoServer, mtt, startGateway, type GatewayProc, handshake } from '../helpers/gateway.js';
import { RawConn } from '../helpers/net-fixtures.js';

const opts = ['--no-socks', '--no-status'];

/** The link of `user` for `carrier`, from the admin API. */
async function linkOf(gw: GatewayProc, user: string, carrier: 'tcp' | 'wss'): Promise<string> {
  const r = await api(gw, 'GET', `/api/users/${encodeURIComponent(user)}/links`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const link = (r.body.links as string[]).find((l) => decodeLink(l).carrier === carrier);
  assert.ok(link, `no ${carrier} link in ${JSON.stringify(r.body.links)}`);
  return link;
}

const rejects = (code: number) => (err: unknown) => err instanceof RejectedError && err.reject === code;

describe('multi-user gateway', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gw: GatewayProc;

  before(async () => {
    ensureBuilt();
    echo = await echoServer();
    // --allow 127.0.0.1: users without a fixed destination may reach the echo target on loopback.
    gw = await startGateway({ controller: true, extra: ['--allow', '127.0.0.1', '--set', 'gateway.trafficFlushMs=200', '--ws-token-path', '/tunnel'] });
  });
  after(async () => {
    await stopAll();
    await echo.close();
  });

  it('prints the default user its tcp and wss links; wss carries the path, SNI-less IP host, pin and server key', () => {
    const [tcp, wss] = gw.links.map((l) => decodeLink(l));
    assert.equal(tcp?.carrier, 'tcp');
    assert.equal(wss?.carrier, 'wss');
    assert.match(wss?.path ?? '', /^\/u\/[0-9a-f]{32}$/);
    assert.equal(wss?.fingerprint?.length, 43);
    assert.equal(wss?.sni, undefined, 'no SNI for an IP host');
    assert.equal(wss?.serverKey, tcp?.serverKey);
    assert.match(gw.stdout(), /admin token \(shown once/);
  });

  it('the default user, imported from users.json, connects over wss; `polytun link` prints the same links', async () => {
    await handshake(gw.links[1] as string);
    const listen = gw.links.map((l) => {
      const d = decodeLink(l);
      return ['--listen', `${d.carrier}://${d.host}:${d.port}`];
    });
    const printed = await run(['link', '--data-dir', gw.dataDir, ...listen.flat()]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.deepEqual(printed.stdout.trim().split('\n'), gw.links);
    // Without --listen: the server recorded where it listens in the data dir.
    const recorded = await run(['link', '--data-dir', gw.dataDir]);
    assert.equal(recorded.code, 0, recorded.stderr);
    assert.deepEqual(recorded.stdout.trim().split('\n'), gw.links);
  });

  it('wss straight to the server: records ride TLS-bound (said in the client log); records.tlsBound=false keeps their AEAD', async () => {
    for (const [extra, want] of [
      [[], 'tls-bound'],
      [['--set', 'records.tlsBound=false'], 'aead'],
    ] as const) {
      const port = await freePort();
      const c = await startClient(gw.links[1] as string, ['--no-socks', '--no-status', '-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, ...extra], port);
      const conn = await RawConn.open(port);
      assert.equal(await conn.roundTrip(`records ${want}`), `records ${want}`);
      conn.sock.destroy();
      assert.match(c.log(), new RegExp(`connected .*carrier=wss records=${want}`));
      await c.stop();
    }
  });

  it("a user's policy overrides apply to its CONNECTs; /api/status reports the gateway", async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'ivan', kind: 'key', wssPath: 'auto', policy: { deny: [`127.0.0.1:${echo.port}`] } });
    const link = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const c = clientForLink(decodeLink(link), { handshakeTimeoutMs: 5000 });
    try {
      await c.connect();
      const proxy = new ProxyClient({ session: () => c.session });
      const denied = await proxy.connect(makeDestination('127.0.0.1', echo.port), { waitStatus: true });
      denied.stream.destroy();
      assert.equal(denied.status, SocksReply.notAllowed, 'the user deny entry beats the server --allow');
      const status = await api(gw, 'GET', '/api/status');
      assert.equal(status.status, 200);
      assert.equal(status.body.store, 'sqlite');
      assert.ok((status.body.sessions as number) >= 1);
      assert.deepEqual((status.body.listeners as { carrier: string }[]).map((l) => l.carrier), ['tcp', 'wss']);
      const sessions = await api(gw, 'GET', '/api/sessions?user=ivan');
      assert.equal((sessions.body.sessions as { userName: string }[])[0]?.userName, 'ivan');
    } finally {
      c.close();
    }
  });

  it("a user whose stored policy does not parse gets a closed session, not a crashed server", async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'judy', kind: 'key', wssPath: 'auto', policy: { allow: ['10.0.0.0/99'] } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const c = clientForLink(decodeLink((made.body.links as string[])[0] as string), { handshakeTimeoutMs: 5000 });
    try {
      const session = await c.connect();
      const [err] = (await once(session, 'closed')) as [Error];
      assert.match(err.message, /configuration error/);
    } finally {
      c.close();
    }
    await handshake(gw.links[0] as string); // still serving
  });

  it("a user's WSS path does not carry another user's key", async () => {
    const frank = await api(gw, 'POST', '/api/users', { name: 'frank', kind: 'key', wssPath: 'auto' });
    const grace = await api(gw, 'POST', '/api/users', { name: 'grace', kind: 'key', wssPath: 'auto' });
    const f = decodeLink((frank.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string);
    const g = decodeLink((grace.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string);
    await handshake(encodeLink(g));
    await assert.rejects(handshake(encodeLink({ ...f, credential: g.credential })), rejects(RejectCode.unauthorized));
  });

  it('mtt controller: a fresh server pings 0; add a path with a dst, reach it over wss whatever target is asked, ping, del, reset', async () => {
    // The default user this gateway created is not the controller's: mtt's "0 = restarted, push again".
    assert.equal(await mtt(gw, JSON.stringify({ opt: 9 })), '{"res":1}');
    assert.equal(await mtt(gw, JSON.stringify({ opt: 1, args_bunch: [{ path: '/mtt/alpha', dst: `127.0.0.1:${echo.port}` }] })), '{"res":1}');
    const link = await linkOf(gw, 'mtt:/mtt/alpha', 'wss');
    assert.equal(decodeLink(link).path, '/mtt/alpha');
    const port = await freePort();
    // The -L target is a documentation address nobody may dial: the user's dst wins.
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:198.51.100.7:9`, ...opts], port);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('through wss to dst'), 'through wss to dst');

    assert.equal(await mtt(gw, JSON.stringify({ opt: 9 })), '{"res":1,"current_users":1}');
    assert.equal(await mtt(gw, JSON.stringify({ opt: 2, args_bunch: [{ path: '/mtt/alpha' }] })), '{"res":1}');
    // Deleting a path does not cut the live connection (mtt semantics)…
    assert.equal(await conn.roundTrip('still here'), 'still here');
    // …but the path is gone: a new upgrade gets the decoy's 404.
    await assert.rejects(handshake(link), (err: unknown) => err instanceof WsUpgradeError && err.status === 404);
    conn.end();
    await client.stop();

    assert.equal(await mtt(gw, JSON.stringify({ opt: 1, args_bunch: [{ path: '/mtt/b', dst: '127.0.0.1:1' }, { path: '/mtt/c', dst: '127.0.0.1:2' }] })), '{"res":1}');
    assert.equal(await mtt(gw, JSON.stringify({ opt: 9 })), '{"res":1,"current_users":2}');
    // A float opt does not unmarshal into Go's int: no reply, and above all no reset.
    assert.equal(await mtt(gw, '{"opt":3.0}'), '');
    assert.equal(await mtt(gw, JSON.stringify({ opt: 9 })), '{"res":1,"current_users":2}');
    assert.equal(await mtt(gw, JSON.stringify({ opt: 3 })), '{"res":1}');
    assert.equal(await mtt(gw, JSON.stringify({ opt: 9 })), '{"res":1}');
    // Reset deletes the controller's users only: the default user still connects.
    await handshake(gw.links[0] as string);
  });

  it('mtt controller: a body of 2 MiB + 1 byte gets no reply, as from mtt', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024 + 1, 0x20);
    assert.equal(await mtt(gw, big), '');
  });

  it('admin API: 401 without or with a wrong token, 400 naming the field, 413 for a huge body', async () => {
    assert.equal((await api(gw, 'GET', '/api/users', undefined, null)).status, 401);
    assert.equal((await api(gw, 'GET', '/api/users', undefined, 'x'.repeat(43))).status, 401);
    const bad = await api(gw, 'POST', '/api/users', { name: 'typo', kind: 'key', quotaBytes: '5' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'body.quotaBytes');
    const huge = await api(gw, 'POST', '/api/users', { name: 'huge', kind: 'key', policy: { allow: Array.from({ length: 5000 }, () => '203.0.113.1') } });
    assert.equal(huge.status, 413);
  });

  it('admin API: a new user connects at once; disabled gets a typed reject; ?kick=false keeps its live connection and says so; a plain delete cuts it', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'alice', kind: 'key', wssPath: 'auto' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const wss = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const tcp = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'tcp') as string;
    await handshake(wss); // no restart, no wait

    assert.equal((await api(gw, 'PATCH', '/api/users/alice', { enabled: false })).status, 200);
    await assert.rejects(handshake(wss), rejects(RejectCode.disabled));
    assert.equal((await api(gw, 'PATCH', '/api/users/alice', { enabled: true })).status, 200);

    const port = await freePort();
    const client = await startClient(wss, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, ...opts], port);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('before delete'), 'before delete');
    // ?kick=false lets its live session finish, and the reply says one is left.
    const del = await api(gw, 'DELETE', '/api/users/alice?kick=false');
    // At least the -L client's session (the handshake() probes above may still be in their resume grace).
    assert.deepEqual({ ...del.body, liveSessions: Number(del.body.liveSessions) >= 1 }, { deleted: true, id: (made.body.user as { id: string }).id, kicked: 0, liveSessions: true });
    assert.match(gw.log(), /INFO +admin API: user created user=alice /);
    assert.match(gw.log(), /INFO +admin API: user deleted; its live sessions go on until they end user=alice .*liveSessions=[1-9]/);
    assert.match(gw.log(), /INFO +session opened session=[0-9a-f]{8} user=alice remote=/);
    await assert.rejects(handshake(tcp), rejects(RejectCode.unauthorized));
    assert.equal(await conn.roundTrip('after delete'), 'after delete');
    conn.end();
    await client.stop();

    const bob = await api(gw, 'POST', '/api/users', { name: 'bob', kind: 'key', wssPath: 'auto' });
    const bobLink = (bob.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const port2 = await freePort();
    const client2 = await startClient(bobLink, ['-L', `127.0.0.1:${port2}:127.0.0.1:${echo.port}`, ...opts], port2);
    const conn2 = await RawConn.open(port2);
    assert.equal(await conn2.roundTrip('bob'), 'bob');
    const sessions = await api(gw, 'GET', '/api/sessions?user=bob');
    assert.equal((sessions.body.sessions as unknown[]).length, 1);
    // The default: a deleted user's sessions are closed too.
    const kicked = await api(gw, 'DELETE', '/api/users/bob');
    assert.deepEqual([kicked.status, kicked.body.kicked, kicked.body.liveSessions], [200, 1, 0]);
    await conn2.closedP();
    await eventually(async () => assert.match(client2.log(), /server refused: session kicked; trying again every 60 s.*code 3: user deleted/));
    assert.equal(client2.child.exitCode, null, 'a refused client waits and retries; it does not exit');
    await client2.stop();
  });

  it('token in the upgrade request: a token user on the shared path relays; a wrong or missing token gets the decoy, exactly as an unknown path', async () => {
    // A key user without a path of its own, made a token user through the admin API.
    assert.equal((await api(gw, 'POST', '/api/users', { name: 'tina', kind: 'key', wssPath: null })).status, 201);
    const set = await api(gw, 'PATCH', '/api/users/tina', { token: 'auto' });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const link = (set.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const d = decodeLink(link);
    assert.deepEqual([d.path, d.credentialKind, d.credential], ['/tunnel', 'token', set.body.secret]);
    // `polytun link` prints the same link.
    const printed = await run(['link', '--data-dir', gw.dataDir, '--listen', `wss://127.0.0.1:${d.port}`, '--ws-token-path', '/tunnel', '--user', 'tina']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout.trim(), link);

    const port = await freePort();
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, ...opts], port);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('picked by its token'), 'picked by its token');
    const sessions = await api(gw, 'GET', '/api/sessions?user=tina');
    assert.equal((sessions.body.sessions as unknown[]).length, 1);
    conn.end();
    await client.stop();

    const decoy = (err: unknown): boolean => err instanceof WsUpgradeError && err.status === 404;
    await assert.rejects(handshake(encodeLink({ ...d, credential: generateToken() })), decoy, 'a wrong token');
    await assert.rejects(handshake(encodeLink({ ...d, credential: encodeKey(generateKeyPair().privateKey), credentialKind: 'key' })), decoy, 'no token');
    await assert.rejects(handshake(encodeLink({ ...d, path: '/' })), decoy, 'the right token on another path');
    // Byte for byte (but the Date header) what an unknown path gets.
    const unknown = await rawUpgrade(d.port, d.fingerprint as string, '/no-such-path');
    assert.match(unknown, /^HTTP\/1\.1 404 /);
    assert.equal(await rawUpgrade(d.port, d.fingerprint as string, '/tunnel', `Bearer ${'x'.repeat(43)}`), unknown);
    assert.equal(await rawUpgrade(d.port, d.fingerprint as string, '/tunnel'), unknown);
    assert.doesNotMatch(gw.log(), new RegExp(String(set.body.secret)), 'the token is never logged');
  });

  it('a client whose user is disabled and kicked says why once, retries every --refused-retry, and comes back when re-enabled', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'rita', kind: 'key', wssPath: 'auto' });
    const link = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const port = await freePort();
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--refused-retry', '400', ...opts], port);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('before'), 'before');
    const mark = gw.log().length;
    const t0 = Date.now();
    assert.equal((await api(gw, 'PATCH', '/api/users/rita', { enabled: false })).status, 200);
    assert.equal((await api(gw, 'POST', '/api/users/rita/kick')).status, 200);
    await conn.closedP();
    const rejections = (): number => (gw.log().slice(mark).match(/client rejected.*disabled/g) ?? []).length;
    await new Promise((r) => setTimeout(r, 2000)); // a window for the rate check below
    // A loaded machine may fit fewer attempts in the window: wait for two, however long.
    await eventually(async () => assert.ok(rejections() >= 2, `the client stopped trying (${rejections()} attempts)`), 30_000);
    const rejected = rejections();
    const elapsed = Date.now() - t0;
    assert.ok(rejected >= 2, `the client stopped trying (${rejected} attempts)`);
    assert.ok(rejected <= Math.floor(elapsed / 400) + 1, `${rejected} attempts in ${elapsed} ms with --refused-retry 400`);
    assert.match(client.log(), /server refused: session kicked; trying again every 400 ms/);
    assert.equal((client.log().match(/server refused: user disabled; trying again/g) ?? []).length, 1, client.log());

    assert.equal((await api(gw, 'PATCH', '/api/users/rita', { enabled: true })).status, 200);
    await eventually(async () => {
      const again = await RawConn.open(port);
      try {
        assert.equal(await again.roundTrip('back by itself'), 'back by itself');
      } finally {
        again.end();
      }
    });
    assert.match(client.log(), /server accepts us again/);
    await client.stop();
  });

  it('--refused-retry 0: a kicked client says why and exits with status 1', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'rex', kind: 'key', wssPath: 'auto' });
    const link = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const port = await freePort();
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--refused-retry', '0', ...opts], port);
    const exited = once(client.child, 'exit');
    assert.equal((await api(gw, 'POST', '/api/users/rex/kick')).status, 200);
    const [code] = (await exited) as [number | null];
    assert.equal(code, 1, client.log());
    assert.match(client.log(), /server refused: session kicked; not trying again/);
    assert.match(client.log(), /^polytun: server refused: session kicked$/m);
  });

  it('refused at start: exit 1 with --refused-retry 0; otherwise wait, and start once the user is re-enabled', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'sam', kind: 'key', wssPath: 'auto', enabled: false });
    const link = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const gaveUp = await run(['client', link, '--refused-retry', '0', ...opts]);
    assert.equal(gaveUp.code, 1, gaveUp.stderr);
    assert.match(gaveUp.stderr, /^polytun: server refused: user disabled$/m);

    const port = await freePort();
    const client = polytun(['client', link, '-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--refused-retry', '300', ...opts]);
    await eventually(async () => assert.match(client.log(), /server refused: user disabled; trying again every 300 ms/));
    assert.equal(client.child.exitCode, null);
    assert.equal((await api(gw, 'PATCH', '/api/users/sam', { enabled: true })).status, 200);
    await waitForPort(port, '127.0.0.1', client);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('started late'), 'started late');
    conn.end();
    assert.equal((client.log().match(/server refused/g) ?? []).length, 1, client.log());
    await client.stop();
  });

  it('quota: the session of a user past its quota is closed with the quota reason; new ones are refused', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'carol', kind: 'key', wssPath: 'auto', quotaBytes: 256 * 1024 });
    const link = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const port = await freePort();
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, ...opts], port);
    const conn = await RawConn.open(port);
    const chunk = 'q'.repeat(64 * 1024);
    let echoed = 0;
    for (let i = 0; i < 64 && !conn.closed; i++) echoed += (await conn.roundTrip(chunk)).length;
    assert.ok(conn.closed, `the connection outlived the quota (${echoed} bytes echoed)`);
    assert.ok(echoed < 4 * 1024 * 1024, `${echoed} bytes went through a 256 KiB quota`);
    await eventually(async () => assert.match(client.log(), /server refused: traffic quota exceeded;.*code 4: traffic quota exceeded/));
    await assert.rejects(handshake(link), rejects(RejectCode.quotaExceeded));
    const t = await eventually(async () => {
      const r = await api(gw, 'GET', '/api/users/carol/traffic');
      assert.ok((r.body.totalBytes as number) >= 256 * 1024, JSON.stringify(r.body));
      return r.body;
    });
    assert.equal(t.remainingBytes, 0);
    await client.stop();
  });
});

describe('expiry', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gw: GatewayProc;
  before(async () => {
    ensureBuilt();
    echo = await echoServer();
    gw = await startGateway({ extra: ['--allow', '127.0.0.1'] });
  });
  after(async () => {
    await stopAll();
    await echo.close();
  });

  it('the live session of a user whose account expires is closed with the expiry reason; new ones are refused', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'henry', kind: 'key', wssPath: 'auto', expiresAt: Date.now() + 4000 });
    const link = (made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string;
    const port = await freePort();
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, ...opts], port);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('before expiry'), 'before expiry');
    await conn.closedP();
    await eventually(async () => assert.match(client.log(), /server refused: account expired;.*code 5: account expired/));
    await assert.rejects(handshake(link), rejects(RejectCode.expired));
    await client.stop();
  });
});

describe('provisioning', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gw: GatewayProc;
  const saveDir = mkdtempSync(join(tmpdir(), 'polytun-prov-'));

  before(async () => {
    ensureBuilt();
    echo = await echoServer();
    gw = await startGateway({ admin: 'http', extra: ['--allow', '127.0.0.1'] });
  });
  after(async () => {
    await stopAll();
    await echo.close();
    rmSync(saveDir, { recursive: true, force: true });
  });

  it('polytun client --provision fetches, saves (0600) and connects; a restart keeps tokens valid; https is pinned', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'dave', kind: 'key', wssPath: 'auto', provisionPassword: 'correct horse battery' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const file = join(saveDir, 'dave.yaml');
    const port = await freePort();
    const client = polytun(['client', '--provision', `${gw.admin?.replace('http://', 'http://dave:correct%20horse%20battery@')}`, '--save', file, '-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, ...opts]);
    await waitForPort(port, '127.0.0.1', client);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('provisioned'), 'provisioned');
    conn.end();
    await client.stop();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const saved = readFileSync(file, 'utf8');
    assert.match(saved, /^# polytun client config for user 'dave'/);
    assert.match(saved, /^link: polytun:\/\//m);

    const wrong = await run(['client', '--provision', `${gw.admin?.replace('http://', 'http://dave:wrong-password@')}`, '--save', join(saveDir, 'x.yaml'), ...opts]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /refused the user name or password/);

    const token = await fetch(`${gw.admin}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'dave', password: 'correct horse battery' }) });
    const { access_token: accessToken } = (await token.json()) as { access_token: string };
    // Restart on the same data dir, now with the admin API over https.
    await gw.stop(false);
    const wss = decodeLink(gw.links[1] as string);
    const before = gw.links.slice(0, 2).map((l) => ({ ...decodeLink(l), port: 0 }));
    gw = await startGateway({ dataDir: gw.dataDir, admin: 'https', extra: ['--allow', '127.0.0.1'] });
    // A restart prints no secret link (stdout goes to the journal); it says how to get them.
    assert.doesNotMatch(gw.stdout(), /polytun:\/\//);
    assert.match(gw.stdout(), /^# \d+ users; links are printed only when a user is created: polytun link --data-dir /m);
    // Same keys, paths and certificate after a restart (only the kernel-chosen ports differ).
    assert.deepEqual(gw.links.slice(0, 2).map((l) => ({ ...decodeLink(l), port: 0 })), before);
    const url = `${gw.admin?.replace('https://', 'https://dave:correct%20horse%20battery@')}/?fp=${wss.fingerprint ?? ''}`;
    const port2 = await freePort();
    const again = polytun(['client', '--provision', url, '--save', file, '-L', `127.0.0.1:${port2}:127.0.0.1:${echo.port}`, ...opts]);
    await waitForPort(port2, '127.0.0.1', again);
    const conn2 = await RawConn.open(port2);
    assert.equal(await conn2.roundTrip('after restart'), 'after restart');
    conn2.end();
    await again.stop();
    // A wrong pin stops provisioning before the password is sent.
    const badPin = provisionClient(url.replace(/fp=[^&]+/, `fp=${'A'.repeat(43)}`), { save: join(saveDir, 'y.yaml') });
    await assert.rejects(badPin, (err: unknown) => err instanceof CertificateError && err.reason === 'pin-mismatch');
    // The token issued before the restart still opens /config.
    const cfgReply = await httpsGetPinned(gw.admin as string, '/config', accessToken, wss.fingerprint ?? '');
    assert.equal(cfgReply.status, 200);
    assert.equal((cfgReply.body.user as { name: string }).name, 'dave');
  });
});

describe('PostgreSQL fleet: two servers share one user store', () => {
  const dir = join(tmpdir(), `polytun-gw-pg-${process.pid}-${Date.now()}`);
  let url: string | undefined;
  let skip: string | undefined;
  let a: GatewayProc | undefined;
  let b: GatewayProc | undefined;

  before(async () => {
    ensureBuilt();
    const started = await pgCluster(['start', dir]);
    if (started.code === 3) skip = `PostgreSQL binaries are not installed (${started.stderr}); run scripts/install-test-deps.sh`;
    else if (started.code !== 0) assert.fail(`pg-test-cluster.sh start failed: ${started.stderr}`);
    else url = started.stdout;
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    if (url !== undefined) assert.equal((await pgCluster(['stop', dir])).code, 0);
  });

  it('a user added through server A\'s admin API connects to server B at once; a delete on A refuses it on B', async (t) => {
    if (skip !== undefined) return t.skip(skip);
    a = await startGateway({ admin: 'http', extra: ['--store', url as string] });
    b = await startGateway({ admin: false, extra: ['--store', url as string] });
    const made = await api(a, 'POST', '/api/users', { name: 'erin', kind: 'key', wssPath: 'auto' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    // Erin's wss link, pointed at B: B's port, B's own server key and certificate.
    const onA = decodeLink((made.body.links as string[]).find((l) => decodeLink(l).carrier === 'wss') as string);
    const bWss = decodeLink(b.links.find((l) => decodeLink(l).carrier === 'wss') as string);
    const onB = encodeLink({ ...onA, port: bWss.port, serverKey: bWss.serverKey, ...(bWss.fingerprint ? { fingerprint: bWss.fingerprint } : {}) });
    // The change reaches B through LISTEN/NOTIFY: asynchronous, so a few tries are allowed.
    await eventually(() => handshake(onB));
    assert.equal((await api(a, 'DELETE', '/api/users/erin')).status, 200);
    await eventually(() => assert.rejects(handshake(onB), (err: unknown) => err instanceof WsUpgradeError && err.status === 404));
  });
});

/** Runs scripts/pg-test-cluster.sh. */
function pgCluster(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile('bash', [join(ROOT, 'scripts/pg-test-cluster.sh'), ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      done({ code, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

/** GET over https pinned to `fp` (the server's self-signed certificate). */
async function httpsGetPinned(base: string, path: string, token: string, fp: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const u = new URL(base);
  const conn = await new TlsCarrier({ pinSha256: fp, alpn: ['http/1.1'], minVersion: 'TLSv1.2' }).dial({ host: u.hostname, port: Number(u.port) });
  return new Promise((resolve, reject) => {
    const req = http.request({ path, headers: { host: u.host, authorization: `Bearer ${token}`, connection: 'close' }, createConnection: () => conn.stream as Socket }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends a WebSocket upgrade to `path` over TLS pinned to `fp`; resolves with the whole answer, its Date header blanked. */
async function rawUpgrade(port: number, fp: string, path: string, authorization?: string): Promise<string> {
  const conn = await new TlsCarrier({ pinSha256: fp, alpn: ['http/1.1'], minVersion: 'TLSv1.2' }).dial({ host: '127.0.0.1', port });
  const auth = authorization === undefined ? '' : `Authorization: ${authorization}\r\n`;
  conn.stream.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${auth}\r\n`);
  // One whole response (headers, then Content-Length bytes of body): the
  // decoy keeps the connection alive as nginx does, so waiting for the close
  // cost its 75 s keep-alive per call.
  let text = '';
  await new Promise<void>((resolve) => {
    const complete = (): boolean => {
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const len = Number(/^Content-Length: *(\d+)/im.exec(text.slice(0, end))?.[1] ?? 0);
      return text.length >= end + 4 + len;
    };
    conn.stream.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (complete()) resolve();
    });
    conn.stream.once('close', () => resolve());
    conn.stream.once('end', () => resolve());
  });
  conn.stream.destroy();
  return text.replace(/^Date: .*$/m, 'Date: -');
}

const run = (args: string[]): ReturnType<typeof runCli> => runCli(args, 30_000);
