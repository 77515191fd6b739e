import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { DialError, ListenError } from '../../../src/carriers/errors.js';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import { parseListenUrl } from '../../../src/config/values.js';
import { connectWithOptions, mptcpStatus, SocketOptionError, socketOptionsOf } from '../../../src/carriers/socket-opts.js';
import type { ConnectWithOptionsInit } from '../../../src/carriers/socket-opts.js';
import { AbortedError, ConfigError } from '../../../src/core/errors.js';
import { ADDON_PATH } from '../../../src/native/addon.js';
import { deadTcpEndpoint, withFreePort } from '../../helpers/net-fixtures.js';
import { waitUntil } from '../../helpers/eventually.js';

const noAddon = existsSync(ADDON_PATH) ? false : 'native addon not built (npm run build:native)';
if (noAddon) console.log(`# socket-opts skipped: ${noAddon}`);

/** Echo server on 127.0.0.1 that records each peer's address and tracks open connections. */
class EchoServer {
  readonly server = net.createServer((s) => {
    this.peers.push(s.remoteAddress ?? '?');
    this.sockets.add(s);
    s.on('error', () => s.destroy()); // a cancelled dial may reset it
    s.on('close', () => this.sockets.delete(s));
    s.pipe(s);
  });
  readonly peers: string[] = [];
  readonly sockets = new Set<net.Socket>();
  port = 0;
  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }
  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function roundTrip(socket: net.Socket, text: string): Promise<string> {
  socket.end(text);
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}


/** Runs a connect whose option may need a privilege we lack; skips with the reason then. */
async function connectOrSkip(t: TestContext, init: ConnectWithOptionsInit): Promise<net.Socket | undefined> {
  try {
    return await connectWithOptions(init);
  } catch (err) {
    if (err instanceof SocketOptionError && err.errno === 'EPERM') {
      t.skip(`no privilege for ${err.option}: ${err.message}`);
      return undefined;
    }
    throw err;
  }
}

describe('connectWithOptions (loopback)', { skip: noAddon }, () => {
  const echo = new EchoServer();
  before(() => echo.start());
  after(() => echo.stop());

  it('connects plain TCP and carries data both ways', async () => {
    const s = await connectWithOptions({ host: '127.0.0.1', port: echo.port });
    assert.equal(s.remotePort, echo.port);
    assert.deepEqual(socketOptionsOf(s), { protocol: 'tcp', device: undefined, mark: 0 });
    assert.equal(await roundTrip(s, 'plain tcp'), 'plain tcp');
  });

  it('opens a real MPTCP socket when the kernel supports it', async (t) => {
    const status = mptcpStatus();
    if (!status.available) {
      console.log(`# MPTCP test skipped: ${status.reason}`);
      return t.skip(`MPTCP unavailable: ${status.reason}`);
    }
    const s = await connectWithOptions({ host: '127.0.0.1', port: echo.port, mptcp: true });
    assert.equal(socketOptionsOf(s).protocol, 'mptcp');
    assert.equal(await roundTrip(s, 'over mptcp'), 'over mptcp');
  });

  it("mptcp: 'prefer' connects either way", async () => {
    const s = await connectWithOptions({ host: '127.0.0.1', port: echo.port, mptcp: 'prefer' });
    assert.equal(socketOptionsOf(s).protocol, mptcpStatus().available ? 'mptcp' : 'tcp');
    assert.equal(await roundTrip(s, 'preferred'), 'preferred');
  });

  it("binds to device 'lo' and sets a mark, as the kernel confirms", async (t) => {
    const s = await connectOrSkip(t, { host: '127.0.0.1', port: echo.port, device: 'lo', mark: 0x2a });
    if (s === undefined) return;
    assert.deepEqual(socketOptionsOf(s), { protocol: 'tcp', device: 'lo', mark: 0x2a });
    assert.equal(await roundTrip(s, 'bound to lo'), 'bound to lo');
  });

  it('binds the local address and port', async () => {
    const { s, port } = await withFreePort('127.0.0.2', async (port) => ({
      s: await connectWithOptions({ host: '127.0.0.1', port: echo.port, localAddress: '127.0.0.2', localPort: port }),
      port,
    }));
    assert.equal(s.localAddress, '127.0.0.2');
    assert.equal(s.localPort, port);
    assert.equal(await roundTrip(s, 'from .2'), 'from .2');
    assert.ok(echo.peers.includes('127.0.0.2'));
  });

  it('a device that does not exist fails with SocketOptionError ENODEV naming it', async () => {
    await assert.rejects(connectWithOptions({ host: '127.0.0.1', port: echo.port, device: 'nosuchdev0' }), (e: unknown) => {
      assert.ok(e instanceof SocketOptionError);
      assert.equal(e.code, 'ERR_SOCKET_OPTION');
      assert.equal(e.option, 'device');
      assert.equal(e.errno, 'ENODEV');
      assert.match(e.message, /no network device named 'nosuchdev0'/);
      return true;
    });
  });

  it('a local address of the wrong family or not on this host is a SocketOptionError', async () => {
    await assert.rejects(connectWithOptions({ host: '127.0.0.1', port: echo.port, localAddress: '::1' }), (e: unknown) => e instanceof SocketOptionError && e.option === 'localAddress' && e.errno === 'EINVAL');
    // 192.0.2.1 (TEST-NET-1) is never assigned here; bind() fails locally, no packet is sent.
    await assert.rejects(connectWithOptions({ host: '127.0.0.1', port: echo.port, localAddress: '192.0.2.1' }), (e: unknown) => e instanceof SocketOptionError && e.errno === 'EADDRNOTAVAIL');
  });

  it('a refused connection is a DialError ECONNREFUSED', async () => {
    const dead = await deadTcpEndpoint();
    await assert.rejects(connectWithOptions({ host: dead.host, port: dead.port }), (e: unknown) => e instanceof DialError && e.errno === 'ECONNREFUSED');
  });

  it('rejects host names and bad ports before creating a socket', async () => {
    await assert.rejects(connectWithOptions({ host: 'localhost', port: echo.port }), ConfigError);
    await assert.rejects(connectWithOptions({ host: '127.0.0.1', port: 0 }), ConfigError);
  });

  it('abort while connecting rejects with AbortedError and closes the socket', async () => {
    const ac = new AbortController();
    const p = connectWithOptions({ host: '127.0.0.1', port: echo.port, signal: ac.signal });
    ac.abort();
    await assert.rejects(p, AbortedError);
    // On loopback the kernel may already have completed the handshake; the
    // server must then see that connection closed, i.e. the fd was not leaked.
    await waitUntil(() => echo.sockets.size === 0, 'the server side of the aborted connection to close');
    await assert.rejects(connectWithOptions({ host: '127.0.0.1', port: echo.port, signal: ac.signal }), AbortedError);
  });
});

describe('MPTCP listener', { skip: noAddon }, () => {
  it('accepts MPTCP clients as MPTCP and plain TCP clients as TCP (as the kernel reports on the accepted socket)', async (t) => {
    const status = mptcpStatus();
    if (!status.available) {
      console.log(`# MPTCP listener test skipped: ${status.reason}`);
      return t.skip(`MPTCP unavailable: ${status.reason}`);
    }
    const accepted: string[] = [];
    const listener = await new TcpCarrier({ mptcp: true }).listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      const s = conn.stream as net.Socket;
      accepted.push(socketOptionsOf(s).protocol);
      s.pipe(s);
    });
    t.after(() => listener.close());
    for (const [mptcp, want] of [[true, 'mptcp'], [false, 'tcp']] as const) {
      const c = await connectWithOptions({ host: '127.0.0.1', port: listener.address.port, mptcp });
      assert.equal(await roundTrip(c, `hello ${want}`), `hello ${want}`);
      assert.equal(accepted.at(-1), want, `a ${want} client, seen from the listener`);
    }
  });

  it('refuses a bad address with ListenError, and the listen URL option is checked', async () => {
    await assert.rejects(new TcpCarrier({ mptcp: true }).listen({ host: 'localhost', port: 0 }, () => undefined), ListenError);
    assert.deepEqual(parseListenUrl('tcp://127.0.0.1:7000?mptcp'), { scheme: 'tcp', host: '127.0.0.1', port: 7000, url: 'tcp://127.0.0.1:7000?mptcp', mptcp: true });
    assert.match(String(parseListenUrl('tls://127.0.0.1:7000?mptcp')), /tcp:\/\/ listeners only/);
    assert.match(String(parseListenUrl('tcp://example.org:7000?mptcp')), /needs an IP address/);
    assert.match(String(parseListenUrl('tcp://127.0.0.1:7000?fast')), /unknown listen option/);
  });
});
