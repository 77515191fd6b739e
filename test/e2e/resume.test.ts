/**
 * Issue "core session": 100 MiB through one stream while the carrier TCP
 * connection is cut several times through the impairment relay; the received
 * SHA-256 equals the sent one and neither process restarts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TcpRelay } from '../tools/relay.js';
import { ensureBuilt, freePort, startClient, startServer, stopAll } from '../helpers/cli.js';

before(() => ensureBuilt());
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of closers) await c();
  await stopAll();
});

/** Deterministic pseudo-random bytes (xorshift), so sender and checker agree without storing 100 MiB twice. */
function* pattern(total: number, chunk = 256 * 1024): Generator<Buffer> {
  let x = 0x9e3779b9;
  for (let sent = 0; sent < total; sent += chunk) {
    const n = Math.min(chunk, total - sent);
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i + 4 <= n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b.writeUInt32LE(x >>> 0, i);
    }
    yield b;
  }
}

describe('e2e: session resume across carrier cuts', () => {
  it('100 MiB through a -L forward arrives intact while the carrier is cut 4 times', async () => {
    const TOTAL = 100 << 20;
    // The target: hashes what it receives, answers with the hex digest.
    const target = net.createServer((sock) => {
      const h = createHash('sha256');
      let n = 0;
      sock.on('data', (c: Buffer) => {
        h.update(c);
        n += c.length;
      });
      sock.on('end', () => sock.end(`${n} ${h.digest('hex')}`));
      sock.on('error', () => undefined);
    });
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    closers.push(() => new Promise((r) => target.close(r)));
    const targetPort = (target.address() as net.AddressInfo).port;

    const server = await startServer(['--allow', '127.0.0.1']);
    const serverPort = Number(new URL((server.links[0] as string).replace('polytun://', 'http://')).port);
    const relay = new TcpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port: serverPort } });
    await relay.start();
    closers.push(() => relay.close());
    const viaRelay = (server.links[0] as string).replace(`:${serverPort}?`, `:${relay.address.port}?`);
    const fwdPort = await freePort();
    const client = await startClient(viaRelay, ['-L', `127.0.0.1:${fwdPort}:127.0.0.1:${targetPort}`, '--no-socks', '--no-status'], fwdPort);
    const pids = [server.child.pid, client.child.pid];

    const sock = net.connect(fwdPort, '127.0.0.1');
    await once(sock, 'connect');
    let reply = '';
    sock.on('data', (c: Buffer) => (reply += c.toString()));
    const sent = createHash('sha256');
    let off = 0;
    let cuts = 0;
    for (const b of pattern(TOTAL)) {
      sent.update(b);
      if (!sock.write(b)) await once(sock, 'drain');
      off += b.length;
      if (off % (20 << 20) === 0 && cuts < 4) {
        cuts += relay.cutAll({ mode: 'reset' }) > 0 ? 1 : 0;
      }
    }
    sock.end();
    await once(sock, 'end');
    assert.equal(cuts, 4, 'four cuts happened mid-transfer');
    assert.equal(reply, `${TOTAL} ${sent.digest('hex')}`);
    assert.ok(relay.stats.cuts >= 4);
    // Same processes, still running: nothing restarted.
    assert.deepEqual([server.child.pid, client.child.pid], pids);
    assert.equal(server.child.exitCode, null);
    assert.equal(client.child.exitCode, null);
    assert.match(client.log(), /session resumed/);
    assert.equal(await client.stop(), 0);
    assert.equal(await server.stop(), 0);
  });
});
