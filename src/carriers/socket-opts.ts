/**
 * TCP connections with socket options Node cannot set before connect:
 * bind to a device (SO_BINDTODEVICE, the way to pin a path to one WAN link),
 * a firewall mark (SO_MARK, for policy routing), MPTCP (IPPROTO_MPTCP) and a
 * local address/port.
 *
 * Why the connect happens in C: a net.Socket built from an fd that is not yet
 * connected cannot then be `.connect()`ed (Node would open a new handle), so
 * the addon creates the socket, applies the options, connects without
 * blocking and watches for writability with uv_poll on Node's own loop. Only
 * the connected fd is wrapped: `new net.Socket({ fd, readable, writable })`.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { ConfigError, PolytunError } from '../core/errors.js';
import { nativeBinding, nativeErrnoOf } from '../native/addon.js';
import { guardDial } from './dial.js';
import { DialError, ListenError } from './errors.js';
import { formatEndpoint } from './types.js';

/** IPPROTO_MPTCP from <netinet/in.h>. */
export const IPPROTO_MPTCP = 262;

/** A socket option could not be applied (no such device, missing capability, bad local address…). */
export class SocketOptionError extends PolytunError {
  /** The OS error name, e.g. `ENODEV`. */
  readonly errno: string;
  /** Which option failed: `device`, `mark`, `mptcp`, `localAddress` or `socket`. */
  readonly option: string;
  constructor(option: string, errno: string, message: string, options?: { cause?: unknown }) {
    super('ERR_SOCKET_OPTION', message, options);
    this.option = option;
    this.errno = errno;
  }
}

/** Options of connectWithOptions. */
export interface ConnectWithOptionsInit {
  /** Target IP literal (no DNS here; IPv6 may carry `%scope`). */
  host: string;
  port: number;
  /** Bind the socket to this network device (SO_BINDTODEVICE; needs CAP_NET_RAW). */
  device?: string;
  /** Firewall mark for policy routing (SO_MARK; needs CAP_NET_ADMIN). */
  mark?: number;
  /**
   * Open an MPTCP socket. `true` fails with SocketOptionError (option
   * `mptcp`) when the kernel cannot; `'prefer'` falls back to TCP. A peer
   * without MPTCP is handled by the kernel (plain TCP on the wire). @default false
   */
  mptcp?: boolean | 'prefer';
  /** Local source address (same family as host). */
  localAddress?: string;
  /** Local source port. @default 0 (ephemeral) */
  localPort?: number;
  /** Nagle off. @default true */
  noDelay?: boolean;
  /** TCP keepalive initial delay, ms; 0 disables keepalive. @default 30000 */
  keepAliveInitialDelayMs?: number;
  /** Cancels the connect (rejects with AbortedError; the socket is closed). */
  signal?: AbortSignal;
  /** @default 10000 */
  timeoutMs?: number;
}

const OPTION_OF_SYSCALL: Record<string, string> = {
  'setsockopt(SO_BINDTODEVICE)': 'device',
  'setsockopt(SO_MARK)': 'mark',
  bind: 'localAddress',
  socket: 'socket',
};

function mapError(err: unknown, target: string, mptcp: boolean): unknown {
  const n = nativeErrnoOf(err);
  if (n === undefined) return err;
  if (n.syscall === 'connect') return new DialError(target, n.code, { cause: err });
  const option = n.syscall === 'socket' && mptcp ? 'mptcp' : (OPTION_OF_SYSCALL[n.syscall] ?? n.syscall);
  return new SocketOptionError(option, n.code, `dial ${target}: ${n.message}`, { cause: err });
}

/** Starts the native connect; resolves with the connected fd. */
function connectFd(init: ConnectWithOptionsInit, mptcp: boolean, target: string, signal: AbortSignal): Promise<number> {
  const b = nativeBinding('socket options (device/mark/MPTCP)');
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    let handle: object;
    const onAbort = (): void => {
      b.connectCancel(handle);
      reject(signal.reason);
    };
    try {
      handle = b.connectStart(
        init.host,
        init.port,
        init.device ?? null,
        init.mark ?? -1,
        mptcp,
        init.localAddress ?? null,
        init.localPort ?? 0,
        (err, fd) => {
          signal.removeEventListener('abort', onAbort);
          if (err !== null) reject(mapError(err, target, mptcp));
          else resolve(fd);
        },
      );
    } catch (err) {
      reject(mapError(err, target, mptcp));
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Connects to `host:port` with the given socket options and resolves with a
 * connected net.Socket (half-open allowed). Rejects with DialError (errno of
 * the connect), SocketOptionError (an option failed), ConfigError (host not
 * an IP literal, bad port), TimeoutError, AbortedError or
 * NativeUnavailableError.
 */
export async function connectWithOptions(init: ConnectWithOptionsInit): Promise<net.Socket> {
  if (net.isIP(init.host.split('%')[0] ?? '') === 0) {
    throw new ConfigError('connectWithOptions.host', `must be an IP literal (resolve names first), got '${init.host}'`);
  }
  if (!Number.isInteger(init.port) || init.port < 1 || init.port > 65535) {
    throw new ConfigError('connectWithOptions.port', `must be an integer 1-65535, got ${init.port}`);
  }
  const target = formatEndpoint({ host: init.host, port: init.port });
  const dialOpts: { signal?: AbortSignal; timeoutMs?: number } = {};
  if (init.signal !== undefined) dialOpts.signal = init.signal;
  if (init.timeoutMs !== undefined) dialOpts.timeoutMs = init.timeoutMs;
  const fd = await guardDial(
    `dial ${target}`,
    dialOpts,
    async (signal) => {
      if (init.mptcp !== 'prefer') return connectFd(init, init.mptcp === true, target, signal);
      try {
        return await connectFd(init, true, target, signal);
      } catch (err) {
        if (err instanceof SocketOptionError && err.option === 'mptcp') return connectFd(init, false, target, signal);
        throw err;
      }
    },
    (lateFd) => nativeBinding('socket options').closeFd(lateFd),
  );
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  } catch (err) {
    nativeBinding('socket options').closeFd(fd);
    throw err;
  }
  socket.setNoDelay(init.noDelay ?? true);
  const keepAlive = init.keepAliveInitialDelayMs ?? 30_000;
  if (keepAlive > 0) socket.setKeepAlive(true, keepAlive);
  return socket;
}

/** What the kernel says about a socket's options. */
export interface SocketOptionsInfo {
  /** `mptcp` when the socket is IPPROTO_MPTCP. */
  protocol: 'tcp' | 'mptcp';
  /** Bound device, or undefined. */
  device: string | undefined;
  /** SO_MARK (0 = none). */
  mark: number;
}

/**
 * Reads protocol, bound device and mark back from the kernel. Uses the
 * socket's fd from Node's handle (`_handle.fd`, present on Unix); throws
 * SocketOptionError when the socket has no fd (closed).
 */
export function socketOptionsOf(socket: net.Socket): SocketOptionsInfo {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new SocketOptionError('socket', 'EBADF', 'socket has no file descriptor (closed?)');
  let info: { protocol: number; device: string; mark: number };
  try {
    info = nativeBinding('socket options').socketInfo(fd);
  } catch (err) {
    throw mapError(err, formatEndpoint({ host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }), false);
  }
  return { protocol: info.protocol === IPPROTO_MPTCP ? 'mptcp' : 'tcp', device: info.device || undefined, mark: info.mark };
}

/** Whether MPTCP sockets can be created here, and if not, why. */
export interface MptcpStatus {
  available: boolean;
  /** Why not (errno of the probe, sysctl state, addon missing). */
  reason?: string;
}

/**
 * Probes MPTCP support: tries to create an IPPROTO_MPTCP socket and reads
 * sysctl net.mptcp.enabled. Never throws.
 */
export function mptcpStatus(): MptcpStatus {
  let probe: string | null;
  try {
    probe = nativeBinding('MPTCP').mptcpProbe();
  } catch (err) {
    return { available: false, reason: (err as Error).message };
  }
  if (probe === null) return { available: true };
  let sysctl: string;
  try {
    sysctl = `net.mptcp.enabled=${readFileSync('/proc/sys/net/mptcp/enabled', 'utf8').trim()}`;
  } catch (err) {
    sysctl = `no net.mptcp sysctl (kernel built without MPTCP?): ${(err as Error).message}`;
  }
  return { available: false, reason: `socket(IPPROTO_MPTCP) failed with ${probe}; ${sysctl}` };
}

/**
 * A listening IPPROTO_MPTCP socket's fd, for `net.Server#listen({ fd })`
 * (Node cannot create one). `host` must be an IP literal. Connections from
 * MPTCP clients are accepted as MPTCP; plain TCP clients still connect (the
 * kernel falls back). Throws ListenError (errno from the kernel) or
 * SocketOptionError when the addon is missing.
 */
export function mptcpListenFd(host: string, port: number, backlog: number): number {
  const b = nativeBinding('MPTCP listener');
  try {
    return b.mptcpListen(host, port, backlog);
  } catch (err) {
    const n = nativeErrnoOf(err);
    const target = formatEndpoint({ host, port });
    if (n === undefined) throw new ListenError(target, 'EINVAL', { cause: err });
    throw new ListenError(target, n.code, { cause: err });
  }
}

/** True when MPTCP sockets can be created (see mptcpStatus for the reason when not). */
export function mptcpAvailable(): boolean {
  return mptcpStatus().available;
}
