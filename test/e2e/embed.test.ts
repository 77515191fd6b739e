/**
 * The library API (src/index.ts) against a real `polytun server` process:
 * `connect(link)` → `tunnel.dial(host, port)` → a Duplex through the server.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect, ProxyStatusError, type Tunnel } from '../../src/index.js';
import { ensureBuilt, startServer, stopAll } from '../helpers/cli.js';

let echoServer: net.Server;
let echoPort = 0;
let deniedServer: net.Server;
let deniedPort = 0;
let deniedConns = 0;
let tunnel: Tunnel;

async function listen(srv: net.Server): Promise<number> {
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return (srv.address() as net.AddressInfo).port;
}

before(async () => {
  ensureBuilt();
  echoServer = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  echoPort = await listen(echoServer);
  deniedServer = net.createServer((s) => {
    deniedConns++;
    s.destroy();
  });
  deniedPort = await listen(deniedServer);
  // Loopback allowed, except the one port an explicit deny names (deny beats allow).
  const server = await startServer(['--allow', '127.0.0.1', '--deny', `127.0.0.1:${deniedPort}`]);
  tunnel = await connect(server.links[0] as string);
});

after(async () => {
  tunnel.close();
  await stopAll();
  await Promise.all([echoServer, deniedServer].map((s) => new Promise((r) => s.close(r))));
});

/** Reads until the stream ends; returns everything. */
async function readAll(s: Duplex): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('e2e embedding API', () => {
  it('dial() gives a Duplex: small round trips, then 4 MiB echoed intact', async () => {
    const s = await tunnel.dial('127.0.0.1', echoPort);
    const it = s[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    for (let i = 0; i < 20; i++) {
      const msg = `ping ${i}`;
      s.write(msg);
      let got = '';
      while (got.length < msg.length) got += ((await it.next()).value as Buffer).toString();
      assert.equal(got, msg);
    }
    const payload = randomBytes(4 << 20);
    const reading = (async () => {
      const h = createHash('sha256');
      let n = 0;
      for (let r = await it.next(); !r.done; r = await it.next()) {
        h.update(r.value);
        n += r.value.length;
      }
      return { n, sha: h.digest('hex') };
    })();
    s.end(payload);
    const got = await reading;
    assert.equal(got.n, payload.length);
    assert.equal(got.sha, createHash('sha256').update(payload).digest('hex'));
  });

  it('dial() by name: the server resolves localhost', async () => {
    const s = await tunnel.dial('localhost', echoPort);
    s.end('by name');
    assert.equal((await readAll(s)).toString(), 'by name');
  });

  it('a target the policy refuses rejects with ProxyStatusError status 2, and is never contacted', async () => {
    await assert.rejects(tunnel.dial('127.0.0.1', deniedPort), (err: unknown) => {
      assert.ok(err instanceof ProxyStatusError, String(err));
      assert.equal(err.status, 2);
      assert.equal(err.code, 'ERR_PROXY_STATUS');
      return true;
    });
    assert.equal(deniedConns, 0);
  });

  it('a closed port rejects with status 5 (connection refused)', async () => {
    const probe = net.createServer();
    const closedPort = await listen(probe);
    await new Promise((r) => probe.close(r));
    await assert.rejects(tunnel.dial('127.0.0.1', closedPort), (err: unknown) => err instanceof ProxyStatusError && err.status === 5);
  });

  it('the session stays usable after refusals', async () => {
    const s = await tunnel.dial('127.0.0.1', echoPort);
    s.end('still here');
    assert.equal((await readAll(s)).toString(), 'still here');
    assert.equal(tunnel.session.state, 'open');
  });
});
