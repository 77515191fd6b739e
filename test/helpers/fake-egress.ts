/**
 * A server-side stand-in for the proxy egress, for client front tests: it
 * serves CONNECT, BIND and UDP (src/proxy/wire.ts) on a server session by
 * dialing, listening and relaying on loopback with plain net/dgram. It
 * deliberately shares no code with src/client, so a bug there cannot hide
 * behind the same bug here. Also the loopback echo/HTTP servers the tests
 * point at.
 */
import { execFile } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { makeDestination, type Destination } from '../../src/core/address.js';
import type { Logger } from '../../src/core/logger.js';
import { decodeOpen, decodeUdp, encodeBindReply, encodeOpen, encodeUdp } from '../../src/proxy/wire.js';
import type { Session } from '../../src/session/session.js';
import type { SessionServer } from '../../src/server/session-server.js';

export interface FakeEgressInit {
  /** A non-zero status to refuse a CONNECT with (e.g. 0x02 "not allowed"). */
  refuse?: (dest: Destination) => number | undefined;
}

export interface FakeEgress {
  /** Every CONNECT destination, as the server received it. */
  readonly connects: Destination[];
  /** Every BIND request. */
  readonly binds: Destination[];
  /** Live server-side listeners by bind id. */
  readonly listeners: Map<number, net.Server>;
  /** Every UDP flow id seen. */
  readonly flows: Set<number>;
  close(): void;
}

/** Relays both ways until either side ends or fails (half-close passed through). */
function pipeBoth(a: Duplex, b: Duplex): void {
  const kill = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', kill);
  b.on('error', kill);
  a.pipe(b);
  b.pipe(a);
}

function unmap(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/** Reads the first byte of `s` (the status), putting the rest back. */
function firstByte(s: Duplex): Promise<number | undefined> {
  return new Promise((resolve) => {
    const onReadable = (): void => {
      const c = s.read() as Buffer | null;
      if (!c) return;
      s.off('readable', onReadable);
      s.off('close', onClose);
      if (c.length > 1) s.unshift(c.subarray(1));
      resolve(c[0]);
    };
    const onClose = (): void => resolve(undefined);
    s.on('readable', onReadable);
    s.once('close', onClose);
  });
}

/** Serves the proxy protocol on one server session. */
export function fakeEgress(session: Session, init: FakeEgressInit = {}): FakeEgress {
  const connects: Destination[] = [];
  const binds: Destination[] = [];
  const listeners = new Map<number, net.Server>();
  const sockets = new Set<net.Socket>();
  const udpFlows = new Map<number, UdpSocket>();
  const flowsSeen = new Set<number>();
  let nextBind = 100;
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  session.onStream((s) => {
    s.on('error', () => undefined); // resets are part of the tests; 'close' cleans up
    const req = decodeOpen(s.openPayload);
    if (req.kind === 'connect') {
      connects.push(req.dest);
      const refusal = init.refuse?.(req.dest);
      if (refusal) {
        s.end(Buffer.from([refusal]));
        s.resume();
        return;
      }
      const sock = net.connect({ host: req.dest.host, port: req.dest.port, allowHalfOpen: true });
      track(sock);
      let connected = false;
      sock.once('connect', () => {
        connected = true;
        s.write(Buffer.from([0]));
        pipeBoth(sock, s);
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        if (connected) return;
        s.end(Buffer.from([err.code === 'ECONNREFUSED' ? 0x05 : 0x04]));
        s.resume();
      });
    } else if (req.kind === 'bind') {
      binds.push(req.dest);
      const bindId = nextBind++;
      const accepted = new Set<net.Socket>();
      const server = net.createServer({ allowHalfOpen: true }, (sock) => {
        track(sock);
        accepted.add(sock);
        sock.once('close', () => accepted.delete(sock));
        sock.on('error', () => sock.destroy());
        const peer = makeDestination(unmap(sock.remoteAddress ?? '0.0.0.0'), sock.remotePort ?? 0);
        const as = session.openStream(encodeOpen({ kind: 'accepted', bindId, peer }));
        as.on('error', () => sock.destroy());
        void firstByte(as).then((st) => {
          if (st === 0) pipeBoth(sock, as);
          else {
            sock.destroy();
            as.destroy();
          }
        });
      });
      server.on('error', () => s.end(Buffer.from([0x01])));
      server.listen(req.dest.port, req.dest.host, () => {
        const a = server.address() as net.AddressInfo;
        listeners.set(bindId, server);
        s.write(encodeBindReply(bindId, makeDestination(a.address, a.port)));
      });
      const release = (): void => {
        listeners.delete(bindId);
        server.close();
        for (const c of accepted) c.destroy();
      };
      s.on('end', () => {
        release();
        s.end();
      });
      s.once('close', release);
      s.resume();
    } else {
      s.destroy();
    }
  });

  session.onDatagram((flow, payload) => {
    const { addr, data } = decodeUdp(payload);
    let u = udpFlows.get(flow);
    flowsSeen.add(flow);
    if (!u) {
      const sock = createSocket(addr.kind === 'ipv6' ? 'udp6' : 'udp4');
      sock.on('message', (msg, rinfo) => session.sendDatagram(flow, encodeUdp(makeDestination(rinfo.address, rinfo.port), msg)));
      sock.on('error', () => {
        // An unreachable target ends this flow's socket; the next datagram opens another.
        udpFlows.delete(flow);
        sock.close();
      });
      udpFlows.set(flow, sock);
      u = sock;
    }
    u.send(Buffer.from(data), addr.port, addr.host);
  });

  return {
    connects,
    binds,
    listeners,
    flows: flowsSeen,
    close() {
      for (const srv of listeners.values()) srv.close();
      listeners.clear();
      for (const s of sockets) s.destroy();
      for (const u of udpFlows.values()) u.close();
      udpFlows.clear();
    },
  };
}

/** Serves the proxy protocol on every session `server` opens from now on (renewals included). */
export function fakeEgressOnEverySession(server: SessionServer<string>, init: FakeEgressInit = {}): { all: FakeEgress[]; close(): void } {
  const all: FakeEgress[] = [];
  server.on('session', (e: { session: Session }) => all.push(fakeEgress(e.session, init)));
  return { all, close: () => all.forEach((e) => e.close()) };
}

// ───────────────────────── loopback targets ─────────────────────────

export interface Closable<A> {
  address: A;
  close(): Promise<void>;
}

/** A TCP echo server (half-close aware: ends after echoing everything). */
export async function tcpEcho(host = '127.0.0.1'): Promise<Closable<net.AddressInfo>> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    socks.add(s);
    s.once('close', () => socks.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  return {
    address: srv.address() as net.AddressInfo,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** A UDP echo server that prefixes each reply with `prefix`. */
export async function udpEcho(host = '127.0.0.1', prefix = ''): Promise<Closable<{ address: string; port: number }>> {
  const u = createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  u.on('message', (msg, rinfo) => u.send(Buffer.concat([Buffer.from(prefix), msg]), rinfo.port, rinfo.address));
  await new Promise<void>((r) => u.bind(0, host, r));
  return { address: u.address(), close: () => new Promise<void>((r) => u.close(() => r())) };
}

/** An HTTP server answering `hello <method> <url> host=<Host>` and echoing request bodies. */
export async function httpOrigin(host = '127.0.0.1'): Promise<Closable<net.AddressInfo> & { seen: http.IncomingMessage['headers'][] }> {
  const seen: http.IncomingMessage['headers'][] = [];
  const srv = http.createServer((req, res) => {
    seen.push(req.headers);
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'text/plain');
      res.end(`hello ${req.method} ${req.url} host=${req.headers.host}${parts.length ? ` body=${Buffer.concat(parts).toString()}` : ''}`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  return {
    address: srv.address() as net.AddressInfo,
    seen,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

// ───────────────────────── raw sockets, curl, logs ─────────────────────────

/** Reads exact byte counts from a socket, for hand-written protocol exchanges. */
export class SocketReader {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;

  constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    sock.on('error', () => undefined); // surfaced as "ended" below
    this.closed = new Promise((r) => sock.once('close', () => r()));
    sock.once('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  /** The next `n` bytes; rejects if the socket closes first. */
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`socket closed after ${this.buf.length} of ${n} bytes`);
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Everything until the socket closes. */
  async rest(): Promise<Buffer> {
    await this.closed;
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return out;
  }

  /** Reads until `marker` has been seen; returns everything up to and including it. */
  async until(marker: string): Promise<string> {
    for (;;) {
      const i = this.buf.indexOf(marker);
      if (i >= 0) return (await this.read(i + marker.length)).toString('latin1');
      if (this.ended) throw new Error(`socket closed before ${JSON.stringify(marker)}; got ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

/** Connects a raw TCP socket. */
export async function rawConnect(port: number, host = '127.0.0.1'): Promise<{ sock: net.Socket; reader: SocketReader }> {
  const sock = net.connect({ port, host });
  const reader = new SocketReader(sock);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return { sock, reader };
}

/** The curl binary, if installed. */
export function curlPath(): string | undefined {
  for (const p of ['/usr/bin/curl', '/usr/local/bin/curl', '/bin/curl']) {
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not at this path; try the next
    }
  }
  return undefined;
}

/** Runs curl with no proxy environment; resolves with stdout, rejects with stderr on failure. */
export function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(curlPath() ?? 'curl', ['-sS', '--max-time', '30', ...args], { env: { PATH: process.env.PATH ?? '/usr/bin' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`curl ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A logger that keeps every line, for tests that check what was logged. */
export function recordingLogger(): Logger & { lines: { level: string; obj: object; msg: string | undefined }[] } {
  const lines: { level: string; obj: object; msg: string | undefined }[] = [];
  const make = (bindings: Record<string, unknown>): Logger => ({
    debug: (obj, msg) => lines.push({ level: 'debug', obj: { ...bindings, ...obj }, msg }),
    info: (obj, msg) => lines.push({ level: 'info', obj: { ...bindings, ...obj }, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj: { ...bindings, ...obj }, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj: { ...bindings, ...obj }, msg }),
    child: (b) => make({ ...bindings, ...b }),
  });
  return Object.assign(make({}), { lines });
}
