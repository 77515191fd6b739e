import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import type { Listener } from '../../../src/carriers/types.js';
import { FailoverClient } from '../../../src/paths/failover.js';
import { generateKeyPair, type KeyPair } from '../../../src/secure/keys.js';
import { SessionServer } from '../../../src/server/session-server.js';
import type { Session } from '../../../src/session/session.js';
import { readAll } from '../../helpers/session-pair.js';

const serverKeys = generateKeyPair(); // a fleet shares its key
const clientKeys = generateKeyPair();

/** One server of the fleet; its streams echo with a tag naming the server. */
class FleetServer {
  server = new SessionServer<string>({ staticKeyPair: serverKeys, users: { byKey: () => 'alice' } });
  listener: Listener | undefined;
  conns = new Set<Duplex>();
  constructor(readonly tag: string) {
    this.server.on('session', (e: { session: Session }) =>
      e.session.onStream((s) => {
        s.on('error', () => undefined);
        s.write(`${tag}:`);
        s.pipe(s);
      }),
    );
  }
  async start(port = 0): Promise<number> {
    this.listener = await new TcpCarrier().listen({ host: '127.0.0.1', port }, (c) => {
      this.conns.add(c.stream);
      c.stream.once('close', () => this.conns.delete(c.stream));
      this.server.handle(c);
    });
    return this.listener.address.port;
  }
  /** The server process "dies": no listener, every connection cut, sessions forgotten. */
  async kill(): Promise<void> {
    await this.listener?.close();
    for (const c of this.conns) c.destroy();
    for (const e of this.server.sessions.values()) e.session.abort();
  }
}

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups) await c();
});

async function ask(fc: FailoverClient): Promise<string> {
  const s = (fc.session as Session).openStream();
  s.end('x');
  return (await readAll(s)).toString();
}

async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('master/backup servers', () => {
  it('fails over to the backup when the master stops answering, and back once it is healthy', async () => {
    const master = new FleetServer('master');
    const backup = new FleetServer('backup');
    const masterPort = await master.start();
    const backupPort = await backup.start();
    cleanups.push(() => master.kill(), () => backup.kill());
    const base = (port: number): { carrier: TcpCarrier; endpoint: { host: string; port: number }; serverPublicKey: Buffer; clientKeyPair: KeyPair; backoffBaseMs: number; backoffMaxMs: number } => ({
      carrier: new TcpCarrier(),
      endpoint: { host: '127.0.0.1', port },
      serverPublicKey: serverKeys.publicKey,
      clientKeyPair: clientKeys,
      backoffBaseMs: 20,
      backoffMaxMs: 100,
    });
    const fc = new FailoverClient({ servers: [base(masterPort), base(backupPort)], failoverAfterMs: 300, failbackAfterMs: 400, probeIntervalMs: 100 });
    cleanups.push(() => fc.close());
    await fc.connect();
    assert.equal(fc.serverIndex, 0);
    assert.equal(await ask(fc), 'master:x');

    const moved = once(fc, 'server');
    await master.kill();
    assert.deepEqual(await moved, [1]);
    assert.equal(await ask(fc), 'backup:x');

    // A stream that stays open on the backup must survive the failback (it drains).
    const longLived = (fc.session as Session).openStream();
    const longGot = readAll(longLived);
    longLived.write('a');

    const master2 = new FleetServer('master');
    await master2.start(masterPort);
    cleanups.push(() => master2.kill());
    await waitFor(() => fc.serverIndex === 0, 'failback to the master');
    assert.equal(await ask(fc), 'master:x');
    longLived.end('b');
    assert.equal((await longGot).toString(), 'backup:ab');
  });

  it('connect() skips a dead master and starts on the backup', async () => {
    const backup = new FleetServer('backup');
    const backupPort = await backup.start();
    cleanups.push(() => backup.kill());
    const deadPort = await (async () => {
      const s = new FleetServer('gone');
      const p = await s.start();
      await s.kill();
      return p;
    })();
    const mk = (port: number) => ({ carrier: new TcpCarrier(), endpoint: { host: '127.0.0.1', port }, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys });
    const fc = new FailoverClient({ servers: [mk(deadPort), mk(backupPort)], probeIntervalMs: 60_000 });
    cleanups.push(() => fc.close());
    await fc.connect();
    assert.equal(fc.serverIndex, 1);
    assert.equal(await ask(fc), 'backup:x');
  });
});

describe('master shutdown', () => {
  it('a master that shuts down gracefully (CLOSE shutdown) is failed over just the same', async () => {
    const master = new FleetServer('master');
    const backup = new FleetServer('backup');
    const masterPort = await master.start();
    const backupPort = await backup.start();
    cleanups.push(() => master.kill(), () => backup.kill());
    const mk = (port: number) => ({ carrier: new TcpCarrier(), endpoint: { host: '127.0.0.1', port }, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, backoffBaseMs: 20, backoffMaxMs: 100 });
    const fc = new FailoverClient({ servers: [mk(masterPort), mk(backupPort)], failoverAfterMs: 300, probeIntervalMs: 60_000 });
    cleanups.push(() => fc.close());
    await fc.connect();
    const moved = once(fc, 'server');
    // Graceful: sessions get CLOSE(shutdown), then the listener goes away.
    master.server.close();
    await master.listener?.close();
    assert.deepEqual(await moved, [1]);
    assert.equal(await ask(fc), 'backup:x');
  });
});

describe('every server down longer than the grace period', () => {
  const mk = (port: number) => ({
    carrier: new TcpCarrier(),
    endpoint: { host: '127.0.0.1', port },
    serverPublicKey: serverKeys.publicKey,
    clientKeyPair: clientKeys,
    session: { graceMs: 150 },
    backoffBaseMs: 20,
    backoffMaxMs: 100,
    reconnectBaseMs: 20,
    reconnectMaxMs: 100,
  });

  async function fleetDown(): Promise<{ fc: FailoverClient; masterPort: number; backupPort: number }> {
    const master = new FleetServer('master');
    const backup = new FleetServer('backup');
    const masterPort = await master.start();
    const backupPort = await backup.start();
    cleanups.push(() => master.kill(), () => backup.kill());
    const fc = new FailoverClient({ servers: [mk(masterPort), mk(backupPort)], failoverAfterMs: 100, failbackAfterMs: 60_000, probeIntervalMs: 60_000 });
    cleanups.push(() => fc.close());
    await fc.connect();
    assert.equal(await ask(fc), 'master:x');
    const lost = once(fc, 'detached');
    await Promise.all([master.kill(), backup.kill()]);
    await lost;
    // Past the grace period: the master's session is closed for good.
    await waitFor(() => fc.session?.state === 'closed', 'the grace period to run out');
    return { fc, masterPort, backupPort };
  }

  it('the backup back first: the client moves to it by itself', async () => {
    const { fc, backupPort } = await fleetDown();
    const backup2 = new FleetServer('backup');
    await backup2.start(backupPort);
    cleanups.push(() => backup2.kill());
    await waitFor(() => fc.serverIndex === 1 && fc.session?.state === 'open', 'a move to the backup', 30_000);
    assert.equal(await ask(fc), 'backup:x');
  });

  it('the master back first: its new session is used', async () => {
    const { fc, masterPort } = await fleetDown();
    const master2 = new FleetServer('master');
    await master2.start(masterPort);
    cleanups.push(() => master2.kill());
    await waitFor(() => fc.serverIndex === 0 && fc.session?.state === 'open', 'a new session on the master', 30_000);
    assert.equal(await ask(fc), 'master:x');
  });
});
