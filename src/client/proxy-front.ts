/**
 * What the SOCKS5 and HTTP proxy fronts share: a capped TCP listener
 * (TcpFront), authentication required off loopback, refusal lines folded
 * per key, and a time limit on the request head — a client that neither
 * finishes its head in time nor keeps its sending side open is closed.
 * Subclasses parse their protocol in `onConnection`.
 */
import type { Socket } from 'node:net';
import { nullLogger, type Logger } from '../core/logger.js';
import { RefusalLog } from './refusal.js';
import { requireAuthOffLoopback, TcpFront, type Credentials, type ListenAddress } from './tcp-front.js';

/** The options every proxy front takes. */
export interface ProxyFrontInit {
  /** Where to listen. Port 0 picks a free port (see `address`). */
  listen: ListenAddress;
  /** Mandatory on a non-loopback `listen` host. */
  auth?: Credentials;
  logger?: Logger;
  /** Connections handled at once; more are closed on accept. @default 1024 */
  maxConnections?: number;
}

/** See the file comment. */
export abstract class ProxyFront {
  protected readonly log: Logger;
  protected readonly refusals: RefusalLog;
  protected readonly maxConnections: number;
  private readonly tcp: TcpFront;

  /** `front`: the name in logs and errors (`socks5`, `http`); `listenerName`: the listener's, in its log lines. */
  constructor(
    private readonly front: string,
    listenerName: string,
    private readonly base: ProxyFrontInit,
  ) {
    this.log = (base.logger ?? nullLogger).child({ front });
    this.refusals = new RefusalLog(this.log);
    this.maxConnections = base.maxConnections ?? 1024;
    this.tcp = new TcpFront({
      name: listenerName,
      listen: base.listen,
      maxConnections: this.maxConnections,
      logger: this.log,
      onConnection: (sock) => this.onConnection(sock, false),
      onOverLimit: (sock) => this.onConnection(sock, true),
    });
  }

  /** Listens. @throws ConfigError (non-loopback without auth), or the listen error (EADDRINUSE …) */
  async start(): Promise<void> {
    requireAuthOffLoopback(this.front, this.base.listen.host, this.base.auth);
    await this.tcp.start();
  }

  /** The bound address (after start). */
  get address(): ListenAddress {
    return this.tcp.address;
  }

  /** Open connections now, and accepted since start (for the dashboard). */
  get counters(): { connections: number; accepted: number } {
    return { connections: this.tcp.connections, accepted: this.tcp.accepted };
  }

  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void> {
    this.refusals.flush();
    return this.tcp.close();
  }

  /** A new connection; `overLimit`: beyond maxConnections, to be answered with a refusal the client can report. */
  protected abstract onConnection(sock: Socket, overLimit: boolean): void;

  /**
   * Starts the head's time limit on `sock`; a client that half-closes before
   * its head is complete will never finish it and is closed too. Call the
   * returned function once the head is complete (or failed).
   */
  protected watchHead(sock: Socket, timeoutMs: number, what: string): () => void {
    const timer = setTimeout(() => {
      this.log.debug({ remote: sock.remoteAddress }, `${what} timed out`);
      sock.destroy();
    }, timeoutMs);
    sock.once('close', () => clearTimeout(timer));
    const onEnd = (): void => {
      if (!sock.writableEnded) sock.destroy(); // else our last reply is on its way; the socket closes by itself
    };
    sock.once('end', onEnd);
    return () => {
      clearTimeout(timer);
      sock.off('end', onEnd);
    };
  }
}
