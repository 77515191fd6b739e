/**
 * What every local front (SOCKS5, HTTP, -L) shares: a tracked, capped TCP
 * listener, credentials compared in constant time, the loopback-only rule
 * for fronts without a password, and ending a socket with a last reply.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { classifyHost } from '../core/address.js';
import { ClosedError, ConfigError, isBenignClose } from '../core/errors.js';
import { LogLimiter } from '../core/log-limiter.js';
import type { Logger } from '../core/logger.js';
import { LISTEN_BACKLOG } from '../core/limits.js';

/** A local listen address. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Username and password a front requires. */
export interface Credentials {
  username: string;
  password: string;
}

/** Compares credentials in constant time (digests first, so lengths do not leak either). */
export function checkCredentials(want: Credentials, got: Credentials): boolean {
  const h = (c: Credentials): Buffer => createHash('sha256').update(c.username).update('\0').update(c.password).digest();
  return timingSafeEqual(h(want), h(got));
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost') return true;
  const kind = classifyHost(h);
  if (kind === 'ipv4') return h.startsWith('127.');
  if (kind === 'ipv6') return h === '::1' || /^::ffff:127\./i.test(h) || /^0*:(0*:){6}0*1$/.test(h);
  return false;
}

/**
 * @param where what the error names (the flag and its value, e.g. `--socks 0.0.0.0:1080`)
 * @param howToAuth how the user adds credentials, e.g. `add --socks-auth USER:PASS`
 * @throws ConfigError when a proxy front would listen off loopback without credentials.
 */
export function requireAuthOffLoopback(front: string, host: string, auth: Credentials | undefined, where = `${front}.listen`, howToAuth = 'set a username and password'): void {
  if (auth === undefined && !isLoopbackHost(host)) {
    throw new ConfigError(where, `refusing to listen on ${host} without authentication (anyone who reaches it could use the tunnel); ${howToAuth}, or listen on 127.0.0.1`);
  }
}

/**
 * Sends a last reply and half-closes, discarding whatever the client still
 * sends; destroys the socket if the client has not closed within `lingerMs`.
 * (Destroying at once could turn unread input into an RST that loses the reply.)
 */
export function endWithReply(sock: Socket, reply: Buffer | null, lingerMs = 5000): void {
  if (reply) sock.end(reply);
  else sock.end();
  sock.resume();
  const t = setTimeout(() => sock.destroy(), lingerMs);
  t.unref();
  sock.once('close', () => clearTimeout(t));
}

/** Options of {@link TcpFront}. */
export interface TcpFrontInit {
  /** For log lines. */
  name: string;
  listen: ListenAddress;
  /** Connections at once; more are closed on accept. */
  maxConnections: number;
  logger: Logger;
  /** Each accepted socket (half-open allowed, no-delay set, 'error' logged). */
  onConnection: (sock: Socket) => void;
  /**
   * A connection over `maxConnections`: told why in its own protocol (a
   * SOCKS5 `general failure`, an HTTP 503) instead of a bare close. At most
   * `maxConnections / 8` (at least 16) such connections are held at once;
   * beyond that they are closed on accept. Without it they are closed.
   */
  onOverLimit?: (sock: Socket) => void;
}

/** A TCP listener that tracks its sockets, caps them, and closes them all on close(). */
export class TcpFront {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Connections over the limit being refused in their protocol. */
  private readonly refusing = new Set<Socket>();
  private closing: Promise<void> | undefined;
  /** A flood over the limit is one line and a count, not a line per connection. */
  private readonly limitLog = new LogLimiter();
  private acceptedCount = 0;

  constructor(private readonly init: TcpFrontInit) {}

  /** Listens. Rejects with the listen error (EADDRINUSE …). */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.init.listen.port, host: this.init.listen.host, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.init.logger.error({ err: err.message }, `${this.init.name} listener error`));
    this.init.logger.info({ listen: this.address }, `${this.init.name} listening`);
  }

  /** The bound address (after start). */
  get address(): ListenAddress {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new ClosedError(`${this.init.name} listener (not started)`);
    return { host: a.address, port: a.port };
  }

  /** Open connections now. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Connections accepted since start (over-limit ones not counted). */
  get accepted(): number {
    return this.acceptedCount;
  }

  private accept(sock: Socket): void {
    if (this.sockets.size >= this.init.maxConnections) {
      const answer = this.init.onOverLimit !== undefined && this.refusing.size < Math.max(16, this.init.maxConnections >> 3);
      this.limitLog.log(
        this.init.logger, 'warn', 'limit', { limit: this.init.maxConnections },
        `${this.init.name}: ${this.init.maxConnections} connections open, the most it serves at once; refusing new ones until some close`,
      );
      if (!answer) {
        sock.destroy();
        return;
      }
      this.track(sock, this.refusing);
      this.init.onOverLimit?.(sock);
      return;
    }
    this.track(sock, this.sockets);
    this.acceptedCount++;
    this.init.onConnection(sock);
  }

  private track(sock: Socket, set: Set<Socket>): void {
    set.add(sock);
    sock.once('close', () => set.delete(sock));
    sock.setNoDelay(true);
    sock.on('error', (err: Error) => {
      if (!isBenignClose(err)) this.init.logger.debug({ err: err.message }, `${this.init.name} client socket error`);
    });
  }

  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    this.closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
      for (const s of this.refusing) s.destroy();
      this.limitLog.flush();
    });
    return this.closing;
  }
}
