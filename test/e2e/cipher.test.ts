/**
 * Issue 16 item 1, end to end: the record cipher chosen by hardware or
 * forced by `--cipher`, with real `polytun server` / `polytun client`
 * processes over tcp, bytes through a -L forward to an echo on loopback.
 *
 *   test ─▶ -L ══ session (aes-256-gcm | chacha20-poly1305) ══▶ server ─▶ echo 127.0.0.1
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { aesAcceleration } from '../../src/secure/cipher.js';
import { readAll, sha256 } from '../helpers/byte-streams.js';
import { ensureBuilt, freePort, polytun, runCli, startClient, startServer, stopAll, type Server } from '../helpers/cli.js';

let echo: net.Server;
let echoPort = 0;
let auto: Server;
let forcedAes: Server;

before(async () => {
  ensureBuilt();
  echo = net.createServer((s) => {
    s.on('error', () => undefined); // a client test that ends early resets it
    s.pipe(s);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as net.AddressInfo).port;
  [auto, forcedAes] = await Promise.all([startServer(['--allow', '127.0.0.1']), startServer(['--allow', '127.0.0.1', '--cipher', 'aes-256-gcm'])]);
});

after(async () => {
  await stopAll();
  echo.close();
});

/** 4 MiB there and back through a client's -L forward; both hashes equal. */
async function moveBytes(port: number): Promise<void> {
  const data = randomBytes(4 << 20);
  const sock = net.connect(port, '127.0.0.1');
  const back = readAll(sock);
  sock.end(data);
  assert.equal(sha256(await back), sha256(data));
}

/** A client of `server` with `extra` flags: moves bytes, returns its log and what `polytun status` (JSON and text) says. */
async function session(server: Server, extra: string[]): Promise<{ log: string; json: Record<string, unknown>; text: string }> {
  const [fwd, status] = [await freePort(), await freePort()];
  const c = await startClient(server.links[0] as string, ['--no-socks', '--status', `127.0.0.1:${status}`, '-L', `127.0.0.1:${fwd}:127.0.0.1:${echoPort}`, ...extra], fwd);
  try {
    await moveBytes(fwd);
    const json = await runCli(['status', '--status', `127.0.0.1:${status}`, '--json']);
    const text = await runCli(['status', '--status', `127.0.0.1:${status}`]);
    assert.equal(json.code, 0, json.stderr);
    return { log: c.log(), json: JSON.parse(json.stdout) as Record<string, unknown>, text: text.stdout };
  } finally {
    assert.equal(await c.stop(), 0);
  }
}

describe('record cipher, client ↔ server processes', () => {
  const local = aesAcceleration().accelerated ? 'aes-256-gcm' : 'chacha20-poly1305';

  it(`auto on both ends (this machine: ${local}): bytes move, the connect line and polytun status name the cipher; the server logs its policy`, async () => {
    const r = await session(auto, []);
    assert.match(r.log, new RegExp(`connected .*cipher=${local}`));
    assert.equal(r.json.cipher, local);
    assert.deepEqual(Object.keys(r.json).slice(3, 5), ['carrier', 'cipher']);
    assert.match(r.text, new RegExp(`^cipher: +${local}$`, 'm'));
    assert.match(auto.log(), /record cipher .*cipher=auto aesAcceleration=(true|false)/);
  });

  it('--cipher chacha20-poly1305 on the client beats an accelerated server on auto', async () => {
    const r = await session(auto, ['--cipher', 'chacha20-poly1305']);
    assert.match(r.log, /connected .*cipher=chacha20-poly1305/);
    assert.equal(r.json.cipher, 'chacha20-poly1305');
  });

  it('--cipher aes-256-gcm on the server: an auto client gets it', async () => {
    const r = await session(forcedAes, []);
    assert.match(r.log, /connected .*cipher=aes-256-gcm/);
    assert.equal(r.json.cipher, 'aes-256-gcm');
  });

  it('a client forcing chacha20-poly1305 against a server forcing aes-256-gcm is refused by name and exits 1 (--refused-retry 0)', async () => {
    const c = polytun(['client', forcedAes.links[0] as string, '--no-socks', '--no-status', '--cipher', 'chacha20-poly1305', '--refused-retry', '0']);
    const [code] = (await once(c.child, 'exit')) as [number | null];
    assert.equal(code, 1, c.log());
    assert.match(c.log(), /no common record cipher: we require chacha20-poly1305, the server requires aes-256-gcm/);
  });
});
