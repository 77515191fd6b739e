/**
 * Loopback fixtures for socket carrier tests: a port nobody listens on, a
 * server that accepts and never speaks, and the kernel's buffer ceiling.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Endpoint } from '../../src/carriers/types.js';

/** A loopback port that was free a moment ago (bound, then released). */
export async function deadTcpEndpoint(host = '127.0.0.1'): Promise<Endpoint> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return { host, port };
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
