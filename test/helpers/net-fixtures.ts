/**
 * Loopback fixtures for socket carrier tests: a port nobody listens on, a
 * server that accepts and never speaks, and the kernel's buffer ceiling.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Endpoint } from '../../src/carriers/types.js';

/**
 * A loopback endpoint that refuses every connection (RST, ECONNREFUSED), for
 * as long as this process lives.
 *
 * A port that was bound and released ("free a moment ago") is not enough:
 * any process on the machine may bind it again before the test dials it (a
 * concurrent test file's server did, and the dial succeeded). Here the port
 * stays owned by a connected socket that was explicitly bound to it, so
 * nobody listens there, bind(port 0) never hands it out and connect() never
 * picks it as a source port (which could otherwise self-connect). Every
 * call for one host returns the same port; the sockets are unref'd so they
 * do not keep the process alive.
 */
export async function deadTcpEndpoint(host = '127.0.0.1'): Promise<Endpoint> {
  let held = refusingPorts.get(host);
  if (held === undefined) {
    held = holdRefusingPort(host);
    refusingPorts.set(host, held);
    held.catch(() => refusingPorts.delete(host)); // a failed attempt is retried by the next caller
  }
  return { host, port: await held };
}

const refusingPorts = new Map<string, Promise<number>>();

async function holdRefusingPort(host: string): Promise<number> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((sock) => {
    accepted.push(sock);
    sock.unref();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  server.unref();
  const { port } = server.address() as net.AddressInfo;
  // localAddress makes Node bind() explicitly before connecting: an explicitly
  // bound port is excluded from both kinds of automatic port choice.
  const holder = net.connect({ host, port, localAddress: host });
  await once(holder, 'connect');
  holder.unref();
  // Should the holder ever die, the port is no longer guaranteed to refuse: forget it.
  holder.on('close', () => refusingPorts.delete(host));
  holder.on('error', () => holder.destroy());
  const local = holder.localPort;
  assert.ok(local !== undefined && local > 0, 'the holder socket has a local port');
  return local;
}

/**
 * Runs `attempt` with a loopback port that was free a moment ago, retrying
 * with another port when someone else took it in between (EADDRINUSE): for
 * tests that must hand an explicit port to the code under test.
 */
export async function withFreePort<T>(host: string, attempt: (port: number) => Promise<T>, tries = 10): Promise<T> {
  for (let i = 1; ; i++) {
    const s = net.createServer();
    await new Promise<void>((resolve) => s.listen(0, host, resolve));
    const { port } = s.address() as net.AddressInfo;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    try {
      return await attempt(port);
    } catch (err) {
      const code = (err as { errno?: unknown; code?: unknown }).errno ?? (err as { code?: unknown }).code;
      if (code !== 'EADDRINUSE' || i >= tries) throw err;
    }
  }
}

/** A TCP server that accepts connections and never sends a byte (a stalled TLS handshake). */
export async function silentTcpServer(host = '127.0.0.1'): Promise<{ at: Endpoint; sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const s = net.createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => sock.destroy()); // the dialer resets it when it gives up
    sock.resume();
  });
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as net.AddressInfo;
  return {
    at: { host, port },
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const sock of sockets) sock.destroy();
        s.close(() => resolve());
      }),
  };
}

/**
 * Upper bound of bytes a TCP connection can hold in kernel buffers: the
 * sender's maximum send buffer plus the receiver's maximum receive buffer
 * (Linux sysctls). Falls back to 64 MiB where /proc is not readable.
 */
export function tcpKernelBufferBytes(): number {
  try {
    const max = (path: string): number => Number(readFileSync(path, 'utf8').trim().split(/\s+/)[2]);
    const total = max('/proc/sys/net/ipv4/tcp_wmem') + max('/proc/sys/net/ipv4/tcp_rmem');
    if (Number.isFinite(total) && total > 0) return total;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return 64 * 1024 * 1024;
}

/**
 * A raw TCP client that buffers what it receives: byte-exact protocol checks
 * (take, rest) and echo round trips through a tunnel (roundTrip).
 */
export class RawConn {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  closed = false;
  /** A reset by the peer is one way of closing; kept for the failure message. */
  error: Error | undefined;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    sock.on('error', (err) => (this.error = err));
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  static async open(port: number): Promise<RawConn> {
    const s = net.connect(port, '127.0.0.1');
    await once(s, 'connect');
    return new RawConn(s);
  }

  private async until(cond: () => boolean): Promise<void> {
    while (!cond() && !this.closed) await new Promise<void>((r) => (this.wake = r));
  }

  /** Exactly `n` bytes; fails if the peer closes first. */
  async take(n: number): Promise<Buffer> {
    await this.until(() => this.buf.length >= n);
    assert.ok(this.buf.length >= n, `closed after ${this.buf.length} of ${n} bytes (${this.error?.message ?? 'no error'})`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Everything received until the connection closed. */
  async rest(): Promise<Buffer> {
    await this.until(() => false);
    return this.buf;
  }

  /** Drops what was buffered, sends `text`, and resolves with what came back once as many bytes arrived (or the connection closed). */
  async roundTrip(text: string): Promise<string> {
    this.buf = Buffer.alloc(0);
    this.sock.write(text);
    const want = Buffer.byteLength(text);
    await this.until(() => this.buf.length >= want);
    return this.buf.toString();
  }

  /** Resolves once the connection is closed. */
  async closedP(): Promise<void> {
    await this.until(() => false);
  }

  end(): void {
    this.sock.destroy();
  }
}
