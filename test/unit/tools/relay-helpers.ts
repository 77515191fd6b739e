/**
 * Loopback fixtures for the relay tests: a TCP echo server, a TCP sink that
 * hashes what it receives, a UDP echo/sink, and a condition poller. Every
 * fixture's close() releases its sockets so the test process exits alone.
 */
import { createHash } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { TimeoutError } from '../../../src/core/errors.js';

/**
 * Polls `cond` every 10 ms. The deadline only turns a hang into a readable
 * failure; no test asserts on how long this takes.
 */
export async function waitFor(cond: () => boolean, what: string, deadlineMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > deadlineMs) throw new TimeoutError(`waiting for ${what}`);
    await sleep(10);
  }
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A TCP server that echoes every byte back (and FIN after FIN). */
export interface EchoServer {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

/** Starts an echo server on 127.0.0.1 with a free port. */
export async function startEcho(): Promise<EchoServer> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    echo.accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  const echo: EchoServer = { port: await listen(server), accepted: 0, close: () => closeServer(server, sockets) };
  return echo;
}

/** One connection as seen by the sink. */
export interface SinkConn {
  bytes: number;
  hash: ReturnType<typeof createHash>;
  ended: boolean;
  closed: boolean;
  errorCode: string | undefined;
  socket: Socket;
}

/** A TCP server that reads (or, with `paused`, never reads) and records what arrives. */
export interface Sink {
  port: number;
  conns: SinkConn[];
  close(): Promise<void>;
}

/** Starts a sink on 127.0.0.1 with a free port; `paused` makes it never read (a stuck receiver). */
export async function startSink(opts: { paused?: boolean } = {}): Promise<Sink> {
  const sockets = new Set<Socket>();
  const conns: SinkConn[] = [];
  const server = createServer({ pauseOnConnect: opts.paused === true }, (s) => {
    sockets.add(s);
    const c: SinkConn = { bytes: 0, hash: createHash('sha256'), ended: false, closed: false, errorCode: undefined, socket: s };
    conns.push(c);
    s.on('error', (err: NodeJS.ErrnoException) => (c.errorCode = err.code));
    s.on('close', () => {
      c.closed = true;
      sockets.delete(s);
    });
    s.on('end', () => (c.ended = true));
    if (opts.paused !== true) {
      s.on('data', (b: Buffer) => {
        c.bytes += b.length;
        c.hash.update(b);
      });
    }
  });
  return { port: await listen(server), conns, close: () => closeServer(server, sockets) };
}

/** A connected client socket that records how it ended. */
export interface Client {
  socket: Socket;
  received: Buffer[];
  ended: boolean;
  closed: boolean;
  errorCode: string | undefined;
}

/** Connects to 127.0.0.1:port and resolves once connected. */
export async function connectClient(port: number): Promise<Client> {
  const socket = connect({ host: '127.0.0.1', port });
  const c: Client = { socket, received: [], ended: false, closed: false, errorCode: undefined };
  socket.on('data', (b: Buffer) => c.received.push(b));
  socket.on('end', () => (c.ended = true));
  socket.on('error', (err: NodeJS.ErrnoException) => (c.errorCode = err.code));
  socket.on('close', () => (c.closed = true));
  await once(socket, 'connect');
  return c;
}

/** Total bytes a client received. */
export function receivedBytes(c: Client): number {
  return c.received.reduce((n, b) => n + b.length, 0);
}

/** Writes `data` in 64 KiB pieces, honouring 'drain', until done or the socket dies. */
export async function writeAll(socket: Socket, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length && !socket.destroyed && socket.writable; off += 65536) {
    if (!socket.write(data.subarray(off, off + 65536))) {
      await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
    }
  }
}

/** A UDP socket on loopback recording what arrives; `echo` sends each packet back. */
export interface UdpPeer {
  socket: UdpSocket;
  port: number;
  packets: Array<{ msg: Buffer; from: RemoteInfo }>;
  close(): Promise<void>;
}

/** Binds a UDP socket on 127.0.0.1 with a free port. */
export async function startUdp(opts: { echo?: boolean } = {}): Promise<UdpPeer> {
  const socket = createSocket('udp4');
  const packets: UdpPeer['packets'] = [];
  socket.on('message', (msg, from) => {
    packets.push({ msg, from });
    if (opts.echo === true) socket.send(msg, from.port, from.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return {
    socket,
    port: socket.address().port,
    packets,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** Sends one datagram to 127.0.0.1:port and waits until the kernel took it. */
export function sendUdp(socket: UdpSocket, msg: Buffer, port: number): Promise<void> {
  return new Promise((resolve, reject) => socket.send(msg, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
}

/** A 4-byte big-endian sequence number followed by `pad` filler bytes. */
export function seqPacket(seq: number, pad = 60): Buffer {
  const b = Buffer.alloc(4 + pad, seq & 0xff);
  b.writeUInt32BE(seq, 0);
  return b;
}
