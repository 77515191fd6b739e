/**
 * Plain TCP stream carrier. Sockets are half-open capable (`allowHalfOpen`),
 * Nagle is off (the layers above batch their own writes with cork/uncork) and
 * TCP keepalive is on so a dead peer behind a NAT is eventually noticed even
 * when the session layer is idle.
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { nullLogger, type Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { enableSlabReads } from '../core/slab-reads.js';
import { declareCapabilities, type StreamCapabilities } from '../core/stream-caps.js';
import { guardDial } from './dial.js';
import { PreAuthGate } from './preauth.js';
import { DialError, ListenError, errnoOf } from './errors.js';
import { formatEndpoint } from './types.js';
import type { DialOptions, Endpoint, Listener, StreamCarrier, StreamConn } from './types.js';
import { LISTEN_BACKLOG } from '../core/limits.js';

/** Options of {@link TcpCarrier}. */
export interface TcpCarrierInit {
  /** Local address to bind outgoing connections to (a source interface). */
  localAddress?: string;
  /** Idle time before the first TCP keepalive probe, ms. @default 30000 */
  keepAliveInitialDelayMs?: number;
  /** Happy-eyeballs delay before trying the next address family, ms. @default 250 */
  autoSelectFamilyAttemptTimeoutMs?: number;
  /** Listen backlog (capped by net.core.somaxconn). @default LISTEN_BACKLOG (4096) */
  backlog?: number;
  /** Where listener-level errors are reported. @default nullLogger */
  logger?: Logger;
  /** Bind outgoing connections to this interface (SO_BINDTODEVICE; native addon, CAP_NET_RAW). */
  device?: string;
  /** Firewall mark on outgoing connections (SO_MARK; native addon, CAP_NET_ADMIN). */
  mark?: number;
  /** Kernel MPTCP sockets (native addon): outgoing connections, and the listening socket (IP literal hosts only). @default false */
  mptcp?: boolean;
  /** Listener: unauthenticated connections held at once; more are closed on accept. @default PREAUTH_MAX_CONNS */
  maxPreAuthConns?: number;
  /** Listener: close a connection not authenticated within this long, ms (backstop). @default PREAUTH_TIMEOUT_MS */
  preAuthTimeoutMs?: number;
  /** Listener: where to report the pre-auth counters (preauth.ts), labelled by listener. @default none */
  metrics?: Metrics;
}

/** The pre-auth gate of a listener on `at` built from carrier options. */
export function gateFor(scheme: string, at: Endpoint, init: TcpCarrierInit | undefined, logger: Logger): PreAuthGate {
  return new PreAuthGate({
    name: `${scheme}://${formatEndpoint(at)}`,
    logger,
    ...(init?.maxPreAuthConns !== undefined ? { max: init.maxPreAuthConns } : {}),
    ...(init?.preAuthTimeoutMs !== undefined ? { timeoutMs: init.preAuthTimeoutMs } : {}),
    ...(init?.metrics !== undefined ? { metrics: init.metrics } : {}),
  });
}

/**
 * What a connected net.Socket can do: its write callbacks run in order once
 * the kernel (or, for TLS, OpenSSL) has the bytes, and it can read into
 * recycled slabs (core/slab-reads.ts).
 */
export function socketCapabilities(socket: net.Socket): StreamCapabilities {
  return {
    buffersFreeOnWriteCallback: true,
    slabReads: (opts) => enableSlabReads(socket, { ...opts, recycle: true }),
  };
}

/**
 * Wraps a connected socket as a StreamConn and declares its capabilities
 * (`caps`; TLS passes its own); addresses are captured now, since they
 * vanish on destroy.
 */
export function socketConn(socket: net.Socket, meta: Readonly<Record<string, string>> = {}, caps: StreamCapabilities = socketCapabilities(socket)): StreamConn {
  declareCapabilities(socket, caps);
  return {
    stream: socket,
    remote: formatEndpoint({ host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }),
    local: formatEndpoint({ host: socket.localAddress ?? '?', port: socket.localPort ?? 0 }),
    meta,
  };
}

/** TCP carrier: `dial` opens a socket, `listen` accepts them. */
export class TcpCarrier implements StreamCarrier {
  readonly kind = 'stream';
  readonly scheme = 'tcp';
  private readonly init: TcpCarrierInit;
  private readonly logger: Logger;

  constructor(init: TcpCarrierInit = {}) {
    this.init = init;
    this.logger = init.logger ?? nullLogger;
  }

  /** Opens a TCP connection; rejects with DialError (errno kept), AbortedError or TimeoutError. */
  async dial(to: Endpoint, opts?: DialOptions): Promise<StreamConn> {
    const socket = await guardDial(
      `tcp dial ${formatEndpoint(to)}`,
      opts,
      (signal) => this.connectSocket(to, signal),
      (late) => late.destroy(),
    );
    return socketConn(socket);
  }

  /**
   * Connects a raw socket, honouring `signal` (which the caller owns, along
   * with any deadline). Used by `dial` and by carriers layered on TCP (TLS).
   */
  connectSocket(to: Endpoint, signal: AbortSignal): Promise<net.Socket> {
    if (this.init.device !== undefined || this.init.mark !== undefined || this.init.mptcp) return this.connectWithSocketOptions(to, signal);
    return new Promise((resolve, reject) => {
      const opts: net.TcpNetConnectOpts = {
        host: to.host,
        port: to.port,
        allowHalfOpen: true,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: this.init.keepAliveInitialDelayMs ?? 30_000,
        autoSelectFamily: true,
        autoSelectFamilyAttemptTimeout: this.init.autoSelectFamilyAttemptTimeoutMs ?? 250,
      };
      if (this.init.localAddress !== undefined) opts.localAddress = this.init.localAddress;
      const socket = net.connect(opts);
      const cleanup = (): void => {
        socket.off('connect', onConnect);
        socket.off('error', onError);
        signal.removeEventListener('abort', onAbort);
      };
      const onConnect = (): void => {
        cleanup();
        resolve(socket);
      };
      const onError = (err: Error): void => {
        cleanup();
        socket.destroy();
        reject(new DialError(formatEndpoint(to), errnoOf(err), { cause: err }));
      };
      const onAbort = (): void => {
        cleanup();
        socket.destroy();
        reject(signal.reason);
      };
      socket.once('connect', onConnect);
      socket.once('error', onError);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Socket options Node cannot set before connect (device, mark, MPTCP) go
   * through the native addon, which connects an IP literal: resolve first,
   * then try each address in turn.
   */
  private async connectWithSocketOptions(to: Endpoint, signal: AbortSignal): Promise<net.Socket> {
    const { connectWithOptions } = await import('./socket-opts.js');
    const addrs = net.isIP(to.host) ? [to.host] : (await lookup(to.host, { all: true })).map((a) => a.address);
    let last: unknown;
    for (const host of addrs) {
      try {
        return await connectWithOptions({
          host,
          port: to.port,
          signal,
          keepAliveInitialDelayMs: this.init.keepAliveInitialDelayMs ?? 30_000,
          ...(this.init.device !== undefined ? { device: this.init.device } : {}),
          ...(this.init.mark !== undefined ? { mark: this.init.mark } : {}),
          ...(this.init.mptcp ? { mptcp: true } : {}),
          ...(this.init.localAddress !== undefined ? { localAddress: this.init.localAddress } : {}),
        });
      } catch (err) {
        if (signal.aborted) throw err;
        last = err;
      }
    }
    throw last ?? new DialError(formatEndpoint(to), 'ENOTFOUND');
  }

  /** Listens on host:port (port 0 picks a free port, reported in `address`). */
  async listen(at: Endpoint, onConn: (conn: StreamConn) => void): Promise<Listener> {
    const server = net.createServer({
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: this.init.keepAliveInitialDelayMs ?? 30_000,
    });
    const gate = gateFor('tcp', at, this.init, this.logger);
    server.on('connection', (socket: net.Socket) => {
      if (gate.admit(socket)) onConn({ ...socketConn(socket), authenticated: () => gate.release(socket) });
    });
    await listenServer(server, at, this.init.backlog, this.init.mptcp === true);
    server.on('error', (err) => gate.listenerError(err));
    return new ServerListener(server, gate);
  }
}

/** Binds `server` to `at` (as a kernel MPTCP listener when `mptcp`), turning a bind failure into ListenError. */
export async function listenServer(server: net.Server, at: Endpoint, backlog = LISTEN_BACKLOG, mptcp = false): Promise<void> {
  // Node cannot create an MPTCP socket: the addon makes the listening fd (loaded only when asked for).
  const fd = mptcp ? (await import('./socket-opts.js')).mptcpListenFd(at.host, at.port, backlog) : undefined;
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(new ListenError(formatEndpoint(at), errnoOf(err), { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if (fd !== undefined) server.listen({ fd });
    else server.listen({ host: at.host, port: at.port, backlog });
  });
}

/** A Listener over a net.Server (also used by the TLS carrier). */
export class ServerListener implements Listener {
  readonly address: Endpoint;
  private closed: Promise<void> | undefined;

  /**
   * `gate`: the listener's unauthenticated-connection bounds, exposed for
   * status and tests. `onClose`: what else stops with the listener.
   */
  constructor(
    private readonly server: net.Server,
    readonly gate?: PreAuthGate,
    private readonly onClose?: () => void,
  ) {
    const a = server.address() as net.AddressInfo;
    this.address = { host: a.address, port: a.port };
  }

  close(): Promise<void> {
    // net.Server#close's callback waits for every accepted connection to
    // end; our contract is "stop accepting only", so we resolve once the
    // listening handle is released (the fd is closed synchronously by
    // close(), the event loop turn lets libuv finish the handle).
    this.closed ??= new Promise((resolve) => {
      this.server.close();
      this.onClose?.();
      setImmediate(resolve);
    });
    return this.closed;
  }
}
