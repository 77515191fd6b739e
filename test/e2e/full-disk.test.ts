/**
 * A full disk, for real: the server's data dir on a small tmpfs that the
 * test fills and frees (needs root; CI is root).
 *
 * - First start: the server cannot write its key. It exits 1 with one line
 *   naming the file, leaves nothing half-written, and starts normally once
 *   there is space.
 * - A restart on a full disk: the user store opens read-only with a "disk
 *   full" warning, and the server serves its users; once there is space the
 *   store is writable again by itself (a new user can be added).
 * - A running gateway: per-user traffic cannot be saved while the disk is
 *   full. The tunnel keeps working, the failure is logged (and its end), and
 *   once there is space again the store holds every byte, none lost and none
 *   counted twice.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, freePort, polytun, startClient, stopAll } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { api, echoServer, startGateway } from '../helpers/gateway.js';
import { RawConn } from '../helpers/net-fixtures.js';
import { mountSmallDisk, smallDiskUnavailableReason, type SmallDisk } from '../helpers/small-disk.js';

const skip = smallDiskUnavailableReason();
if (skip) console.log(`# full-disk e2e skipped: ${skip}`);

describe('a full disk', { skip }, () => {
  const disks: SmallDisk[] = [];
  let echo: Awaited<ReturnType<typeof echoServer>>;
  before(async () => {
    ensureBuilt();
    echo = await echoServer();
  });
  after(async () => {
    await stopAll();
    await echo.close();
    for (const d of disks) d.remove();
  });

  it('first start: exit 1 naming the key file, nothing left behind; starts once there is space', async () => {
    const disk = mountSmallDisk(4096); // keys, users and the SQLite user store once there is space
    disks.push(disk);
    const dataDir = join(disk.dir, 'data');
    disk.fill();
    const p = polytun(['server', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dataDir]);
    const [code] = (await once(p.child, 'exit')) as [number | null];
    assert.equal(code, 1, p.log());
    assert.match(p.log(), /server\.key: cannot write: ENOSPC: no space left on device/);
    assert.doesNotMatch(p.log(), /\n\s+at /, 'a message, not a stack trace');
    assert.deepEqual(readdirSync(dataDir), [], 'no partial key or temporary file');
    disk.free();
    const again = polytun(['server', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dataDir]);
    let out = '';
    again.child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    await eventually(async () => assert.match(out, /^polytun:\/\//m, again.log()), 15_000);
    assert.ok(['server.key', 'users.db', 'users.json'].every((f) => readdirSync(dataDir).includes(f)), readdirSync(dataDir).join(' '));
    await again.stop();
  });

  it('gateway: the tunnel keeps working while traffic cannot be saved, and no byte is lost', async () => {
    const disk = mountSmallDisk(16 * 1024);
    disks.push(disk);
    const gw = await startGateway({ dataDir: join(disk.dir, 'gw'), listen: ['tcp://127.0.0.1:0'], extra: ['--allow', '127.0.0.1', '--set', 'gateway.trafficFlushMs=200'] });
    const port = await freePort();
    const client = await startClient(gw.links[0] as string, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--no-socks', '--no-status'], port);
    const conn = await RawConn.open(port);
    const chunk = 'f'.repeat(64 * 1024);
    let sent = 0;
    const echoRounds = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        assert.equal((await conn.roundTrip(chunk)).length, chunk.length);
        sent += chunk.length;
      }
    };
    const traffic = async (): Promise<{ bytesUp: number; bytesDown: number }> => {
      const r = await api(gw, 'GET', '/api/users/default/traffic');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body as { bytesUp: number; bytesDown: number };
    };
    await echoRounds(4);
    await eventually(async () => {
      const t = await traffic();
      assert.deepEqual([t.bytesUp, t.bytesDown], [sent, sent]);
    });

    disk.fill();
    await echoRounds(8); // the tunnel does not care
    await eventually(async () => assert.match(gw.log(), /traffic flush to the user store failed/));
    const during = await traffic();
    assert.ok(during.bytesUp < sent, `the store could not have saved ${sent} bytes while full: ${JSON.stringify(during)}`);

    disk.free();
    await eventually(async () => {
      const t = await traffic();
      assert.equal(t.bytesUp, sent, 'bytes up, once there is space');
      assert.equal(t.bytesDown, sent, 'bytes down, once there is space');
    });
    assert.match(gw.log(), /traffic flush to the user store works again/);
    // Still exact a few flushes later: the failed batches were not counted twice.
    await new Promise((r) => setTimeout(r, 600));
    const t = await traffic();
    assert.equal(t.bytesUp, sent);
    assert.equal(t.bytesDown, sent);
    conn.end();
    await client.stop();
    await gw.stop(false);
  });

  it('restart on a full disk: "disk full", the store is opened read-only, and the server keeps serving; writable again once there is space', async () => {
    const disk = mountSmallDisk(16 * 1024);
    disks.push(disk);
    const dataDir = join(disk.dir, 'gw');
    // A fixed port: links.json, where the restarted server's links come from, cannot be rewritten on a full disk.
    const listen = [`tcp://127.0.0.1:${await freePort()}`];
    const first = await startGateway({ dataDir, listen, extra: ['--allow', '127.0.0.1'] });
    await first.stop(false);
    disk.fill();
    const gw = await startGateway({ dataDir, listen, extra: ['--allow', '127.0.0.1'] });
    assert.match(gw.log(), /WARN +disk full: the user store is open READ-ONLY/);
    assert.doesNotMatch(gw.log(), /disk I\/O error/);
    const port = await freePort();
    const client = await startClient(gw.links[0] as string, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--no-socks', '--no-status'], port);
    const conn = await RawConn.open(port);
    assert.equal(await conn.roundTrip('served from a full disk'), 'served from a full disk');
    const refused = await api(gw, 'POST', '/api/users', { name: 'late', kind: 'key' });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.match(String(refused.body.message), /read-only: disk full/);
    disk.free();
    // The store reopens read-write on a write at most every 10 s.
    await eventually(async () => assert.equal((await api(gw, 'POST', '/api/users', { name: 'late', kind: 'key' })).status, 201), 30_000);
    assert.match(gw.log(), /the user store is writable again/);
    conn.end();
    await client.stop();
    await gw.stop(false);
  });
});
