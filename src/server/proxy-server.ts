/**
 * The server end of the proxy protocol (src/proxy/wire.ts) on one session:
 *
 * ```
 *  stream OPEN ──decodeOpen──┬─ CONNECT ─▶ EgressDialer.dial ──ok──▶ status 0x00, relay ⇄ target socket
 *                            │                            └─fail──▶ status = socksReply, end
 *                            ├─ BIND ────▶ ReverseBinds (listen; each accepted peer → ACCEPTED stream)
 *                            ├─ SPEED ───▶ serveSpeedTest (one at a time per session; speed-test.ts)
 *                            ├─ ADDRESS ─▶ each path's source address as seen here, then end
 *                            └─ malformed / ACCEPTED ─▶ reset(ProxyResetCode.badOpen)
 *  (other open kinds are not the proxy's: the session resets them, ResetCode.noHandler)
 *  datagram (flow, payload) ───────────▶ UdpFlows (dgram socket per flow and family)
 * ```
 *
 * A CONNECT stream is not read until the target is connected: bytes the client
 * sent with the OPEN (0-RTT) wait in the stream's receive buffer, bounded by
 * its flow-control window, and are the first bytes piped to the target.
 */
import { abortSocket, relay as relayBytes } from '../core/relay.js';
import type { Socket } from 'node:net';
import { parseHostPort, type Destination } from '../core/address.js';
import { ClosedError, isBenignClose, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { decodeOpen, encodeAddresses, PROXY_OPEN_KINDS, STATUS_OK, UDP_FLOW_FIRST, UDP_FLOW_LAST, type OpenRequest } from '../proxy/wire.js';
import type { Session } from '../session/session.js';
import { ResetCode, type PolyStream } from '../session/stream.js';
import { logDenial } from './denials.js';
import { EgressError, SocksReply, type EgressDialer } from './egress.js';
import type { DestinationPolicy } from './policy.js';
import { parseReverseInit, ReverseBinds, type ReverseInit } from './reverse-binds.js';
import { UdpFlows, type UdpInit } from './udp-flows.js';
import { createProxyCounters, type ProxyCounters, type Tally } from './proxy-counters.js';
import { SPEED_TEST_RESET, serveSpeedTest } from './speed-test.js';

export type { ReverseInit } from './reverse-binds.js';
export type { UdpInit } from './udp-flows.js';

/** Stream reset codes the proxy uses (application range, ≥ 0x100). */
export const ProxyResetCode = {
  /** The OPEN payload was malformed or not something a client may open. */
  badOpen: 0x100,
  /** The target reset the connection (ECONNRESET). */
  targetReset: 0x101,
  /** The target connection failed in another way after it was established. */
  targetError: 0x102,
  /** No bytes either way for `idleTimeoutMs`, and none waiting for a reader. */
  idleTimeout: 0x103,
  /** The proxy was closed (`ProxyHandle.close()`). */
  proxyClosed: 0x104,
  /** A speed test went past its deadline, or its upload past the size it announced. */
  speedTest: SPEED_TEST_RESET,
} as const;

export { createProxyCounters, type ProxyCounters, type Tally };

/** Options of {@link attachProxy}. */
export interface ProxyServerInit {
  /** Dials CONNECT targets (policy-checked, Happy Eyeballs). */
  egress: EgressDialer;
  /** Checks UDP destinations (CONNECT goes through `egress`, which has its own). */
  policy: DestinationPolicy;
  /** @default nullLogger */
  logger?: Logger;
  /** Deadline for a CONNECT dial, and for the client's status on an accepted reverse connection. @default 10000 */
  connectTimeoutMs?: number;
  /** A relayed TCP connection with no bytes either way for this long is reset. @default 300000 */
  idleTimeoutMs?: number;
  /** Reverse forwards (BIND). */
  reverse?: ReverseInit;
  /** UDP relay on the datagram lane. */
  udp?: UdpInit;
  /** The user's name, to key the rate-limited refusal log lines (the logger should carry it too). */
  user?: string;
  /** How long a success status for a client that spoke first waits for the target's first answer (see statusWithFirstAnswer). @default STATUS_HOLD_MS */
  statusHoldMs?: number;
  /** Extra counters object that receives every increment too (e.g. per user). */
  counters?: ProxyCounters;
  /**
   * Every CONNECT goes here, whatever target the client asked for (mtt's
   * per-user `dst`). `egress` must allow it: the caller vouches for it.
   * @default undefined (the client's target)
   */
  fixedDestination?: { host: string; port: number };
}

/** A proxy attached to one session. */
export interface ProxyHandle {
  /** A snapshot of this session's counters. */
  readonly stats: Readonly<ProxyCounters>;
  /** Stops serving: resets proxied streams, closes reverse listeners and UDP sockets. Idempotent. */
  close(): void;
}

/** Status bytes are written often and never mutated, so one buffer per code is shared. */
const statusBytes = new Map<number, Buffer>();
function statusByte(code: number): Buffer {
  let b = statusBytes.get(code);
  if (!b) statusBytes.set(code, (b = Buffer.from([code])));
  return b;
}

/**
 * Serves the proxy protocol on `session`: takes its lanes (the proxy's open
 * kinds, the UDP flows; session/lanes.ts) and releases everything when the
 * session closes.
 * @throws ConfigError when `init.reverse` is malformed
 */
export function attachProxy(session: Session, init: ProxyServerInit): ProxyHandle {
  const log = (init.logger ?? nullLogger).child({ session: session.id.toString('hex').slice(0, 8), component: 'proxy' });
  const connectTimeoutMs = init.connectTimeoutMs ?? 10_000;
  const idleTimeoutMs = init.idleTimeoutMs ?? 300_000;
  const reverseConfig = parseReverseInit(init.reverse);
  const counters = createProxyCounters();
  const shared = init.counters;
  const tally: Tally = shared
    ? (key, n = 1) => {
        counters[key] += n;
        shared[key] += n;
      }
    : (key, n = 1) => {
        counters[key] += n;
      };
  const streams = new Set<PolyStream>();
  let closed = false;
  /** The running speed test; a stream that is reset or ended both ways no longer counts ('close' comes a tick later). */
  let speedStream: PolyStream | undefined;

  const refuse = (s: PolyStream, code: number): void => endWithStatus(s, code, connectTimeoutMs);
  const relayOne = (s: PolyStream, sock: Socket): void => relay(s, sock, { idleTimeoutMs, tally, log });
  const binds = new ReverseBinds({ session, config: reverseConfig, statusTimeoutMs: connectTimeoutMs, tally, log, relay: relayOne, refuse, ...(init.user === undefined ? {} : { user: init.user }) });
  const udp = new UdpFlows({ ...init.udp, policy: init.policy, send: (flow, p) => session.sendDatagram(flow, p), tally, logger: log, ...(init.user === undefined ? {} : { user: init.user }) });

  const connect = (s: PolyStream, req: Extract<OpenRequest, { kind: 'connect' }>): void => {
    tally('connects');
    // The client giving up (reset, session gone) cancels the dial.
    const ac = new AbortController();
    const onClose = (): void => ac.abort(new ClosedError('proxy stream'));
    s.once('close', onClose);
    const to = init.fixedDestination ?? { host: req.dest.host, port: req.dest.port };
    init.egress.dial(to, { signal: ac.signal, timeoutMs: connectTimeoutMs }).then(
      (sock) => {
        s.off('close', onClose);
        if (s.destroyed) {
          sock.destroy();
          return;
        }
        // Relay first: 0-RTT bytes that came with the OPEN reach the target
        // before the status record goes out (its write would otherwise
        // delay them by a wake-up of the client). The status is still the
        // first byte on the stream: the target cannot answer within this tick.
        const spokeFirst = s.readableLength > 0;
        relayOne(s, sock);
        if (spokeFirst) statusWithFirstAnswer(s, sock, init.statusHoldMs ?? STATUS_HOLD_MS);
        else s.write(statusByte(STATUS_OK));
      },
      (err: unknown) => {
        s.off('close', onClose);
        if (s.destroyed) return;
        tally('connectFailures');
        const code = err instanceof EgressError ? err.socksReply : SocksReply.generalFailure;
        if (err instanceof EgressError && err.decision !== undefined) logDenial(log, init.user, 'connect', to, err.decision);
        else log.debug({ port: req.dest.port, kind: req.dest.kind, code, err: toError(err).message }, 'connect failed');
        refuse(s, code);
      },
    );
  };

  session.lanes.streams(PROXY_OPEN_KINDS, (s) => {
    s.on('error', (err: Error) => {
      if (isBenignClose(err) || err.name === 'StreamResetError' || err.name === 'SessionClosedError') log.debug({ sid: s.id, err: err.message }, 'proxy stream ended with error');
      else log.warn({ sid: s.id, err: err.message }, 'proxy stream error');
    });
    if (closed) {
      s.reset(ResetCode.refused);
      return;
    }
    let req: OpenRequest;
    try {
      req = decodeOpen(s.openPayload);
    } catch (err) {
      tally('badOpens');
      log.debug({ sid: s.id, err: toError(err).message }, 'malformed OPEN payload; resetting the stream');
      s.reset(ProxyResetCode.badOpen);
      return;
    }
    streams.add(s);
    s.once('close', () => streams.delete(s));
    if (req.kind === 'connect') connect(s, req);
    else if (req.kind === 'bind') binds.handle(s, req.dest);
    else if (req.kind === 'address') {
      s.resume();
      s.end(encodeAddresses(observedAddresses(session)));
    } else if (req.kind === 'speed') {
      const cur = speedStream;
      if (cur !== undefined && !cur.destroyed && !(cur.readableEnded && cur.writableEnded)) {
        log.debug({ sid: s.id }, 'a second speed test while one runs; refused');
        s.reset(ResetCode.refused);
        return;
      }
      speedStream = s;
      log.debug({ sid: s.id, direction: req.direction, bytes: req.bytes }, 'speed test');
      serveSpeedTest(s, req, tally, log, () => {
        if (speedStream === s) speedStream = undefined;
      });
    } else {
      tally('badOpens');
      log.debug({ sid: s.id }, 'client opened an ACCEPTED stream; only the server may');
      s.reset(ProxyResetCode.badOpen);
    }
  });
  session.lanes.datagrams(UDP_FLOW_FIRST, UDP_FLOW_LAST, (flow, payload) => udp.handle(flow, payload));

  const close = (): void => {
    if (closed) return;
    closed = true;
    session.off('closed', close);
    for (const s of [...streams]) s.reset(ProxyResetCode.proxyClosed);
    binds.close();
    udp.close();
  };
  if (session.state === 'closed') close();
  else session.once('closed', close);

  return {
    get stats() {
      return { ...counters };
    },
    close,
  };
}

/**
 * Ends `s` with a one-byte refusal status. The client's 0-RTT bytes are
 * discarded so that its FIN completes the stream; a client that never sends
 * one is reset after `lingerMs`.
 */
function endWithStatus(s: PolyStream, code: number, lingerMs: number): void {
  if (s.destroyed) return;
  s.end(statusByte(code));
  s.resume();
  const t = setTimeout(() => s.destroy(), lingerMs);
  t.unref();
  s.once('close', () => clearTimeout(t));
}

interface RelayOptions {
  idleTimeoutMs: number;
  tally: Tally;
  log: Logger;
}

/**
 * Pipes a stream and a connected socket both ways until both are done.
 *
 * - FIN travels: client FIN → socket.end(); target FIN → stream.end(). The
 *   socket is made half-open so the target's FIN does not end our writes.
 * - Resets travel: a socket error resets the stream (ECONNRESET as
 *   `targetReset`); a stream that dies unfinished (reset, session gone)
 *   resets the socket with RST, so the target never mistakes it for a FIN.
 * - Backpressure: `pipe` pauses each side while the other's buffer is full;
 *   a paused stream stops granting credit, which stops the client.
 */
function relay(s: PolyStream, sock: Socket, o: RelayOptions): void {
  sock.allowHalfOpen = true;
  o.tally('connectionsActive');
  s.on('data', (c: Buffer) => o.tally('bytesUp', c.length));
  sock.on('data', (c: Buffer) => o.tally('bytesDown', c.length));
  sock.on('error', (err: NodeJS.ErrnoException) => {
    o.log.debug({ sid: s.id, err: err.message }, 'target socket error');
    s.reset(err.code === 'ECONNRESET' ? ProxyResetCode.targetReset : ProxyResetCode.targetError);
  });
  sock.on('close', () => {
    // A clean close (FIN both ways, flushed) leaves the stream to finish its own FIN.
    if (!(sock.readableEnded && sock.writableFinished)) s.reset(ProxyResetCode.targetError);
  });
  s.once('close', () => {
    o.tally('connectionsActive', -1);
    if (!(s.finSent && s.finReceived && s.readableEnded)) abortSocket(sock);
  });
  // Idle means nothing moves and nothing waits to move. A relay whose bytes
  // wait for a reader is blocked, not idle: like a direct TCP connection, it
  // lasts as long as the reader and the target let it (the session's limits
  // bound what it holds). Progress alone cannot tell: a reader taking 1 KiB/s
  // drains the kernel buffers in front of it (megabytes on loopback), and the
  // client's socket turns writable again only once a third of them is free,
  // so the client may return no credit for minutes (the 30-minute soak saw
  // slow readers reset as idle after ~750 s). The stream's progress is its
  // peer's credit (what the client has read) and what we have read from it.
  let moved = s.sendLimit + s.consumedBytes;
  sock.on('timeout', () => {
    const now = s.sendLimit + s.consumedBytes;
    // Bytes queued on the stream wait for the client's credit (its reader),
    // bytes queued on the socket for the target's reader.
    const waiting = s.writableLength > 0 || sock.writableLength > 0;
    if (now !== moved || waiting) {
      moved = now;
      sock.setTimeout(o.idleTimeoutMs); // re-armed: one check per idle period, nothing per byte
      return;
    }
    o.tally('idleTimeouts');
    o.log.debug({ sid: s.id }, 'relay idle; resetting it');
    s.reset(ProxyResetCode.idleTimeout);
    abortSocket(sock); // also when the stream had already finished and only our FIN to the target was stuck
  });
  sock.setTimeout(o.idleTimeoutMs);
  relayBytes(s, sock);
  relayBytes(sock, s);
}

/** How long a held success status waits for the target's first answer. */
export const STATUS_HOLD_MS = 2;

/**
 * Writes the success status corked, to leave in one record with the
 * target's first answer (or alone after `holdMs`, or with the FIN).
 * Only for a client that sent bytes before the status (a -L forward, an
 * HTTP request): it is not waiting for the status, and in request/response
 * traffic this saves a record each way's worth of work, one write here and
 * one wake-up of the client, per connection. A SOCKS or CONNECT client,
 * which waits for the status before its first byte, never gets here.
 */
function statusWithFirstAnswer(s: PolyStream, sock: Socket, holdMs: number): void {
  s.cork();
  s.write(statusByte(STATUS_OK));
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    clearTimeout(timer);
    sock.off('data', onData);
    sock.off('end', release);
    sock.off('close', release);
    if (!s.destroyed && s.writableCorked > 0) s.uncork();
  };
  // After the relay's own listener, which writes the answer (corked until a
  // microtask): this uncork, a microtask later still, sends both together.
  const onData = (): void => queueMicrotask(release);
  const timer = setTimeout(release, holdMs);
  sock.once('data', onData);
  sock.once('end', release);
  sock.once('close', release);
}

/** Where each path of `session` comes from, as this end sees it (paths whose remote is not an address are left out). */
function observedAddresses(session: Session): Destination[] {
  const out: Destination[] = [];
  for (const p of session.stats.paths) {
    try {
      out.push(parseHostPort(p.remote));
    } catch {
      // A carrier without an address (an in-memory pair in tests): nothing to tell.
    }
  }
  return out;
}
