/**
 * Loopback fixtures for socket carrier tests: a port nobody listens on, a
 * server that accepts and never speaks, and the kernel's buffer ceiling.
 */
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
