/**
 * Bounds on unauthenticated connections, shared by every listener (tcp, tls,
 * ws, wss, the admin API, the mtt controller). A public port gets scanners,
 * health checks and slowloris clients; each holds a file descriptor, and a
 * server out of descriptors accepts nobody (libuv then accepts and closes
 * new connections without telling Node, so nothing would be logged).
 *
 * A {@link PreAuthGate} counts a listener's connections from accept until the
 * peer authenticates (`release`) or the connection closes:
 * - past `max` at once, a new connection is closed at once: dropped, not
 *   queued (queued work is what an attacker wants);
 * - a connection still unauthenticated after `timeoutMs` is closed (a
 *   backstop: each layer has its own, shorter, deadline too);
 * - hitting a limit or a listener error (EMFILE) is logged, rate-limited.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { Logger } from '../core/logger.js';
import { nullLogger } from '../core/logger.js';
import { LIMIT_LOG_INTERVAL_MS, LogLimiter } from '../core/log-limiter.js';
import { PREAUTH_MAX_CONNS } from '../core/limits.js';
import type { Metrics } from '../core/metrics.js';

export { PREAUTH_MAX_CONNS };
/**
 * Backstop for one unauthenticated connection on a tunnel listener, ms: the
 * TLS handshake (TLS_HANDSHAKE_TIMEOUT_MS) plus the probe-resistant close
 * schedule of the polytun handshake (at most twice its timeout), with room.
 */
export const PREAUTH_TIMEOUT_MS = 60_000;
/** Time allowed to complete a TLS handshake on any listener, ms. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Options of {@link PreAuthGate}. */
export interface PreAuthInit {
  /** Listener name for logs, e.g. `tls://0.0.0.0:443`. */
  name: string;
  /** @default PREAUTH_MAX_CONNS */
  max?: number;
  /** Close a connection still unauthenticated after this long, ms; 0: no backstop. @default PREAUTH_TIMEOUT_MS */
  timeoutMs?: number;
  /** @default nullLogger */
  logger?: Logger;
  /** Where to report the gate's counters, labelled by listener name (see trackGate). @default none */
  metrics?: Metrics;
}

const kRelease = Symbol('polytun.preauth.release');
type Tracked = net.Socket & { [kRelease]?: () => void };

/** The raw TCP socket under a TLS socket (Node keeps it as `_parent`), or the socket itself. */
function rawOf(socket: net.Socket): Tracked {
  return ((socket as net.Socket & { _parent?: net.Socket | null })._parent ?? socket) as Tracked;
}

/** Counts and times one listener's unauthenticated connections. */
export class PreAuthGate {
  private readonly pending = new Set<net.Socket>();
  private readonly max: number;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  /** Cap and accept-error lines: one per minute and listener, with a count of the rest. */
  private readonly limitLog = new LogLimiter({ intervalMs: LIMIT_LOG_INTERVAL_MS, maxKeys: 4 });
  /** Connections closed because the cap was reached, and because the backstop fired. */
  readonly counters = { overCap: 0, timedOut: 0 };

  constructor(private readonly init: PreAuthInit) {
    this.max = init.max ?? PREAUTH_MAX_CONNS;
    this.timeoutMs = init.timeoutMs ?? PREAUTH_TIMEOUT_MS;
    this.logger = init.logger ?? nullLogger;
    if (init.metrics !== undefined) trackGate(init.metrics, this);
  }

  /** The listener's name (logs, metrics). */
  get name(): string {
    return this.init.name;
  }

  /** Unauthenticated connections held now. */
  get size(): number {
    return this.pending.size;
  }

  /** Call on each accepted (raw) socket; false when it was closed because the cap is reached. */
  admit(socket: net.Socket): boolean {
    if (this.pending.has(socket)) return true; // handed back to the HTTP server (a decoy keep-alive)
    if (this.pending.size >= this.max) {
      this.counters.overCap++;
      socket.destroy();
      this.limitLog.log(
        this.logger,
        'warn',
        'cap',
        { listener: this.init.name, max: this.max },
        'too many unauthenticated connections at once: closing new ones (a scan or a flood; legitimate clients retry)',
      );
      return false;
    }
    const s = socket as Tracked;
    this.pending.add(s);
    const timer =
      this.timeoutMs > 0
        ? setTimeout(() => {
            if (!this.pending.has(s)) return;
            this.counters.timedOut++;
            this.logger.debug({ listener: this.init.name, remote: s.remoteAddress }, 'unauthenticated connection timed out');
            s.destroy();
          }, this.timeoutMs)
        : undefined;
    timer?.unref();
    const forget = (): void => {
      clearTimeout(timer);
      this.pending.delete(s);
      delete s[kRelease];
    };
    s[kRelease] = forget;
    s.once('close', forget);
    return true;
  }

  /** The peer on `socket` (raw, or a TLS socket over it) authenticated: stop counting and timing it. */
  release(socket: net.Socket): void {
    rawOf(socket)[kRelease]?.();
  }

  /** For a listener's 'error' event: a rate-limited warning, with a hint for descriptor exhaustion. */
  listenerError(err: NodeJS.ErrnoException): void {
    const fdOut = err.code === 'EMFILE' || err.code === 'ENFILE';
    this.limitLog.log(
      this.logger,
      'warn',
      fdOut ? 'fds' : 'error',
      { listener: this.init.name, err: err.message, code: err.code },
      fdOut ? 'out of file descriptors: new connections are refused; raise LimitNOFILE / ulimit -n' : 'listener error',
    );
  }
}

/** The gates reporting to each Metrics instance (every listener of a process shares one set of metrics). */
const gatesOf = new WeakMap<Metrics, Set<PreAuthGate>>();

/**
 * Adds `gate` to the gates `metrics` reads, registering the metrics with the
 * first one: one series per listener name (a few per process), read from the
 * gates' counters when collected. A closed listener's gate stays: its
 * counters keep counting in the totals.
 */
function trackGate(metrics: Metrics, gate: PreAuthGate): void {
  let gates = gatesOf.get(metrics);
  if (gates === undefined) {
    const all = (gates = new Set());
    gatesOf.set(metrics, all);
    const byListener = (read: (g: PreAuthGate) => number) => (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const g of all) out[g.name] = (out[g.name] ?? 0) + read(g);
      return out;
    };
    metrics.registerCounterGroup('polytun_listener_preauth_over_cap_total', { help: 'Connections closed on accept: too many unauthenticated ones at once', label: 'listener', collect: byListener((g) => g.counters.overCap) });
    metrics.registerCounterGroup('polytun_listener_preauth_timed_out_total', { help: 'Connections closed for staying unauthenticated too long (the backstop)', label: 'listener', collect: byListener((g) => g.counters.timedOut) });
    metrics.registerGaugeGroup('polytun_listener_preauth_connections', { help: 'Unauthenticated connections held now', label: 'listener', collect: byListener((g) => g.size) });
  }
  gates.add(gate);
}

/**
 * A failed inbound TLS handshake (a scanner, a health check's connect+close,
 * a handshake timeout): the socket must be destroyed here. With a
 * 'tlsClientError' listener Node leaves that to us, and with allowHalfOpen a
 * peer's FIN alone closes nothing: the socket sat in CLOSE-WAIT forever.
 * Routine on a public port, so debug only.
 */
export function dropTlsClient(logger: Logger, err: Error, socket: net.Socket): void {
  logger.debug({ err: err.message, code: (err as NodeJS.ErrnoException).code, remote: socket.remoteAddress }, 'tls handshake failed');
  socket.destroy();
}

/** Time allowed for a management request's headers, and for the whole request, ms. */
export const MGMT_HEADERS_TIMEOUT_MS = 20_000;
export const MGMT_REQUEST_TIMEOUT_MS = 60_000;

/**
 * Bounds an HTTP(S) management listener (the admin API, the mtt controller):
 * every connection counts against `max` (their requests authenticate one by
 * one, the connection never does), slow headers and requests are cut, failed
 * TLS handshakes are closed, and listener errors (EMFILE) are logged,
 * rate-limited. Call before `listen`. An https server should also be created
 * with `handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS`.
 */
export function boundHttpServer(server: http.Server, name: string, logger: Logger, max = PREAUTH_MAX_CONNS): PreAuthGate {
  const gate = new PreAuthGate({ name, logger, max, timeoutMs: 0 });
  server.prependListener('connection', (raw: net.Socket) => void gate.admit(raw));
  server.headersTimeout = MGMT_HEADERS_TIMEOUT_MS;
  server.requestTimeout = MGMT_REQUEST_TIMEOUT_MS;
  server.on('tlsClientError', (err: Error, socket: net.Socket) => dropTlsClient(logger, err, socket));
  server.on('error', (err: NodeJS.ErrnoException) => gate.listenerError(err));
  return gate;
}
