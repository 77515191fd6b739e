/**
 * `polytun client LINK`: connects a session to the server the link names
 * (reconnecting and resuming by itself), and starts the fronts the config
 * asks for: SOCKS5, HTTP proxy, -L forwards (TCP/UDP), -R reverse forwards,
 * and the local status endpoint.
 *
 * When the server refuses the user (unknown key, disabled, expired, over
 * quota) or kicks it, the client says why in one log line and tries again
 * every `reconnect.refusedRetryMs` (default 60 s), at start as later: a
 * router then comes back by itself once the user is re-enabled, without
 * hammering the server. With 0 it exits with status 1 instead.
 *
 * When the server cannot be reached — at start, or after an outage longer
 * than the resume grace period — the client tries again with backoff (1 s
 * doubling to 10 s, jittered), logging `reconnecting in Ns` once per
 * attempt, until it answers; `reconnect.retry` (`--retry N`) gives up after
 * N failed retries in a row (exit status 1; 0 = the first failure).
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { makeDestination } from '../core/address.js';
import { ConfigError, toError } from '../core/errors.js';
import { CertificateError } from '../carriers/errors.js';
import type { Logger } from '../core/logger.js';
import { formatEndpoint } from '../carriers/types.js';
import { HttpFront } from '../client/http-front.js';
import { LocalForward } from '../client/forward.js';
import { ProxyClient, ProxyStatusError, requireAuthOffLoopback } from '../client/proxy-client.js';
import { ReverseForward } from '../client/reverse.js';
import { Socks5Front } from '../client/socks5-front.js';
import { clientForLink, clientInitForLink, pathsFromConfig } from '../config/dial-link.js';
import { FailoverClient } from '../client/failover.js';
import { RefusedError, refusalMessage, refusalOf } from '../client/session-client.js';
import { Backoff, UnreachableError, formatDelay, retriesLeft } from '../client/backoff.js';
import { CloseCode, SessionClosedError, type PathStats, type Session } from '../session/session.js';
import type { ClientConfig } from '../config/schema.js';
import type { CliIo } from './io.js';
import { listenOrExplain } from './listen-errors.js';
import { createLogger } from './log.js';
import { waitForShutdown } from './shutdown.js';
import { startClientVpnFor } from './vpn-run.js';
import { startStatusServer, type StatusReport } from './status-server.js';

interface Front {
  kind: string;
  listen: string;
  close(): Promise<void> | void;
}

export async function runClient(cfg: ClientConfig, _io: CliIo): Promise<void> {
  const log = createLogger(cfg.log);
  // Listen for SIGINT/SIGTERM from the start: a signal during startup then
  // runs the normal cleanup (routes, NAT rules, listeners) once startup is
  // done, instead of killing the process with half its changes applied.
  const shutdown = waitForShutdown(log);
  const link = cfg.link;
  const server = formatEndpoint({ host: link.host, port: link.port });
  const linkOptions = {
    logger: log,
    mptcp: cfg.mptcp,
    extraPaths: pathsFromConfig(link, cfg.paths),
    handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
    tlsBound: cfg.records.tlsBound,
    refusedRetryMs: cfg.reconnect.refusedRetryMs,
    maxRetries: cfg.reconnect.retry,
    session: {
      streamWindow: cfg.limits.streamWindow,
      sessionWindow: cfg.limits.sessionWindow,
      maxStreams: cfg.limits.maxStreams,
      graceMs: cfg.limits.graceMs,
      pingIntervalMs: cfg.liveness.intervalMs,
      pingTimeoutMs: cfg.liveness.timeoutMs,
      maxMissedPongs: cfg.liveness.misses,
      pathUpAfterMs: cfg.bonding.upAfterMs,
    },
  };
  // With backup servers, a FailoverClient moves between them; otherwise one SessionClient.
  const client =
    cfg.backupServers.length === 0
      ? clientForLink(link, linkOptions)
      : new FailoverClient({
          servers: [clientInitForLink(link, linkOptions), ...cfg.backupServers.map((b) => clientInitForLink(b, { ...linkOptions, extraPaths: [] }))],
          logger: log,
          failoverAfterMs: cfg.failover.afterMs,
          failbackAfterMs: cfg.failover.failbackAfterMs,
        });
  const hook = (cmd: string | undefined, path: string, state: 'up' | 'down'): void => {
    if (!cmd) return;
    const child = spawn('sh', ['-c', cmd], { stdio: 'ignore', env: { ...process.env, POLYTUN_PATH: path, POLYTUN_PATH_STATE: state } });
    child.on('error', (err) => log.warn({ err: err.message, cmd }, 'path hook failed to start'));
    child.on('exit', (code) => {
      if (code !== 0) log.warn({ code, cmd }, 'path hook exited with an error');
    });
  };
  client.on('session', (s: Session) => {
    // Paths attached before the session was handed over (the first one) count as up now.
    for (const st of s.stats.paths) if (st.state === 'up') hook(cfg.bonding.onUp, st.label, 'up');
    s.on('pathUp', (st: PathStats) => hook(cfg.bonding.onUp, st.label, 'up'));
    s.on('path', (st: PathStats) => {
      if (st.state === 'up') hook(cfg.bonding.onUp, st.label, 'up');
    });
    s.on('pathClosed', (st: PathStats) => hook(cfg.bonding.onDown, st.label, 'down'));
  });
  const serverNames = [link, ...cfg.backupServers].map((l) => formatEndpoint({ host: l.host, port: l.port }));
  let lastError: string | undefined;
  let since = new Date();
  // Reconnects: sessions resumed, and sessions opened after the first (a
  // replacement after an outage, or a move to another server).
  let resumes = 0;
  let newSessions = -1;
  client.on('session', () => {
    since = new Date();
    newSessions++;
  });
  client.on('detached', (err?: Error) => (lastError = err?.message ?? 'connection lost'));
  client.on('resumed', () => resumes++);
  client.on('reconnecting', (_delayMs: number, err: Error) => (lastError = err.message));
  // The server's reason (kicked, traffic quota, expired…) is what the user needs to see.
  client.on('session', (s: Session) =>
    s.once('closed', (err: Error) => {
      if (!(err instanceof SessionClosedError) || err.by !== 'remote') return;
      lastError = err.message;
      // Idle and shutdown closes are renewed, and refusals (kicked, quota, expiry) logged, by the session client.
      if (err.closeCode === CloseCode.idle || err.closeCode === CloseCode.shutdown || refusalOf(err) !== undefined) return;
      log.warn({ reason: err.message }, 'the server closed the session');
    }),
  );
  // With retries off, a refusal after start ends the program (status 1) once
  // the fronts are closed; so does a server still unreachable after --retry N.
  let refusedForGood: ((err: RefusedError | UnreachableError) => void) | undefined;
  const gaveUp = new Promise<RefusedError | UnreachableError>((resolve) => (refusedForGood = resolve));
  client.on('refused', (err: RefusedError) => {
    lastError = err.message;
    if (cfg.reconnect.refusedRetryMs === 0) refusedForGood?.(err);
  });
  client.on('gaveUp', (err: UnreachableError) => refusedForGood?.(err));
  // Local listeners first, before a packet goes to the server: a busy port,
  // or a proxy off loopback without a password, is the user's to fix and is
  // reported alone, in one line naming the flag (see listen-errors.ts).
  if (cfg.socks) requireAuthOffLoopback('socks5', cfg.socks.host, cfg.socksAuth, `--socks ${formatEndpoint(cfg.socks)}`, 'add --socks-auth USER:PASS (or socksAuth in --config)');
  if (cfg.http) requireAuthOffLoopback('http', cfg.http.host, undefined, `--http ${formatEndpoint(cfg.http)}`, 'the HTTP proxy has no password option');
  // The proxy sees the session only once connected (and the VPN, if any,
  // has taken its lanes; the order no longer matters: session/lanes.ts).
  let connected = false;
  const sessions = new EventEmitter();
  const proxy = new ProxyClient({ session: () => (connected ? client.session : undefined), events: sessions, logger: log });
  const fronts: Front[] = [];
  let vpn: Awaited<ReturnType<typeof startClientVpnFor>>;
  const stop = async (): Promise<void> => {
    await Promise.all(fronts.map(async (f) => {
      try {
        await f.close();
      } catch (err) {
        log.debug({ front: f.kind, err: toError(err).message }, 'front close failed');
      }
    }));
    await vpn?.close();
    proxy.dispose();
    client.close();
  };
  try {
    if (cfg.socks) {
      const f = new Socks5Front({ listen: cfg.socks, proxy, logger: log, ...(cfg.socksAuth ? { auth: cfg.socksAuth } : {}) });
      await listenOrExplain(`--socks ${formatEndpoint(cfg.socks)}`, () => f.start());
      fronts.push({ kind: 'socks5', listen: formatEndpoint(f.address), close: () => f.close() });
    }
    if (cfg.http) {
      const f = new HttpFront({ listen: cfg.http, proxy, logger: log });
      await listenOrExplain(`--http ${formatEndpoint(cfg.http)}`, () => f.start());
      fronts.push({ kind: 'http', listen: formatEndpoint(f.address), close: () => f.close() });
    }
    for (const fw of cfg.forwards) {
      const f = new LocalForward({
        listen: { host: fw.bindHost, port: fw.bindPort },
        target: makeDestination(fw.host, fw.port),
        protocol: fw.udp ? 'udp' : 'tcp',
        proxy,
        logger: log,
      });
      await listenOrExplain(`-L ${fw.spec}: ${formatEndpoint({ host: fw.bindHost, port: fw.bindPort })}`, () => f.start());
      fronts.push({ kind: fw.udp ? 'forward-udp' : 'forward', listen: `${formatEndpoint(f.address)} -> ${fw.host}:${fw.port}`, close: () => f.close() });
    }
    if (cfg.status) {
      const st = await listenOrExplain(`--status ${formatEndpoint(cfg.status)}`, () => startStatusServer({
        listen: cfg.status as { host: string; port: number },
        logger: log,
        getStatus: (): StatusReport & { paths?: unknown } => {
          const s = client.session;
          const stats = s?.stats;
          const state = s?.state ?? 'connecting';
          return {
            role: 'client',
            // A closed session is being replaced (the client gave up or stopped otherwise).
            state: state === 'closed' ? 'reconnecting' : state,
            server: client instanceof FailoverClient ? (serverNames[client.serverIndex ?? 0] ?? server) : server,
            carrier: link.carrier,
            since: since.toISOString(),
            sessionAgeMs: Date.now() - since.getTime(),
            ...(stats?.rttMs !== undefined ? { rttMs: Math.round(stats.rttMs * 1000) / 1000 } : {}),
            bytesSent: stats?.bytesSent ?? 0,
            bytesReceived: stats?.bytesReceived ?? 0,
            ...proxy.udpTraffic,
            streams: stats?.streams ?? 0,
            reconnects: resumes + newSessions,
            resumes,
            newSessions,
            fronts: fronts.map((f) => ({ kind: f.kind, listen: f.listen })),
            ...(lastError ? { lastError } : {}),
            paths: stats?.paths ?? [],
          };
        },
      }));
      fronts.push({ kind: 'status', listen: formatEndpoint(st.address), close: () => st.close() });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  try {
    const stopWaiting = new AbortController();
    void shutdown.then(() => stopWaiting.abort());
    const retry = { refusedRetryMs: cfg.reconnect.refusedRetryMs, maxRetries: cfg.reconnect.retry, server };
    if (!(await connectUnlessStopped(client, retry, log, stopWaiting.signal))) {
      await stop();
      return; // a signal while the server was refusing us or could not be reached
    }
    vpn = await startClientVpnFor(cfg, client, log); // before the proxy sees the session: the VPN taps it first
  } catch (err) {
    await stop();
    throw err;
  }
  connected = true;
  client.on('session', (s: Session) => sessions.emit('session', s));
  // Requests that arrived while we dialed are waiting for this one (ProxyClient.sessionSoon).
  if (client.session) sessions.emit('session', client.session);
  log.info({ server, carrier: link.carrier, records: client.session?.stats.paths?.[0]?.protection }, 'connected');

  // A reverse forward the server refuses is reported and skipped: the rest of the client still works.
  for (const rv of cfg.reverse) {
    const f = new ReverseForward({ bind: { host: rv.bindHost, port: rv.bindPort }, target: makeDestination(rv.host, rv.port), proxy, logger: log });
    try {
      const bound = await f.start();
      fronts.push({ kind: 'reverse', listen: `server ${formatEndpoint(bound)} -> ${rv.host}:${rv.port}`, close: () => f.close() });
    } catch (err) {
      f.close();
      log.error({ spec: rv.spec, err: toError(err).message }, reverseRefusal(rv.spec, formatEndpoint({ host: rv.bindHost, port: rv.bindPort }), err));
    }
  }
  for (const f of fronts) log.info({ listen: f.listen }, `${f.kind} ready`);
  const ended = await Promise.race([shutdown, gaveUp]);
  if (ended instanceof RefusedError || ended instanceof UnreachableError) {
    await stop();
    throw ended;
  }
  log.info({ signal: ended }, 'shutting down');
  await stop();
}

interface StartRetry {
  /** Between attempts while the server refuses us; 0: a refusal is thrown as a RefusedError. */
  refusedRetryMs: number;
  /** Failed attempts to reach the server tried again at most this often (undefined: forever), then an UnreachableError is thrown. */
  maxRetries: number | undefined;
  /** host:port, for messages. */
  server: string;
}

/**
 * The first connect. A refusal is logged once per reason and tried again
 * every `refusedRetryMs` (0: thrown as a RefusedError); a server that
 * cannot be reached (down, not started yet, a network not up yet) is tried
 * again with backoff, one `reconnecting in Ns` line per attempt, up to
 * `maxRetries` times (then thrown as an UnreachableError). A certificate
 * that does not match the link's pin, or a config error, is thrown at once.
 * False when `signal` fired while waiting.
 */
async function connectUnlessStopped(client: { connect(signal?: AbortSignal): Promise<unknown> }, opts: StartRetry, log: Logger, signal: AbortSignal): Promise<boolean> {
  let logged: string | undefined;
  const backoff = new Backoff();
  let failures = 0;
  for (;;) {
    let retryMs: number;
    try {
      await client.connect(signal);
      if (logged !== undefined) log.info({ was: logged }, 'server accepts us again');
      if (failures > 0) log.info({ server: opts.server, attempts: failures + 1 }, 'server reachable');
      return true;
    } catch (err) {
      if (signal.aborted) return false;
      const why = refusalOf(err);
      // A certificate that does not match the link's pin, or a local config problem: retrying cannot help.
      if (err instanceof CertificateError || err instanceof ConfigError) throw err;
      if (why === undefined) {
        failures++;
        if (!retriesLeft(opts.maxRetries, failures)) throw new UnreachableError(opts.server, failures, opts.maxRetries ?? 0, err);
        retryMs = backoff.next();
        log.info({ server: opts.server, attempt: failures, err: toError(err).message }, `cannot connect to the server; reconnecting in ${formatDelay(retryMs)}`);
      } else {
        if (opts.refusedRetryMs === 0) throw new RefusedError(why, err);
        if (why !== logged) log.error({}, refusalMessage(why, opts.refusedRetryMs));
        logged = why;
        retryMs = opts.refusedRetryMs;
      }
      // A ref'd timer: nothing else keeps the process alive before the fronts are up.
      const waited = await new Promise<boolean>((resolve) => {
        const onAbort = (): void => {
          clearTimeout(t);
          resolve(false);
        };
        const t = setTimeout(() => {
          signal.removeEventListener('abort', onAbort);
          resolve(true);
        }, retryMs);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      if (!waited) return false;
    }
  }
}

/** Why the server refused `-R spec` (binding on `bind`), and what to change on the server. */
export function reverseRefusal(spec: string, bind: string, err: unknown): string {
  if (err instanceof ProxyStatusError && err.status === 0x02) {
    return `-R ${spec}: the server refuses to listen on ${bind}: reverse forwards need --reverse on the server, and the address and port inside reverse.bindHosts / reverse.ports; going on without this forward`;
  }
  if (err instanceof ProxyStatusError) return `-R ${spec}: the server could not listen on ${bind} (status 0x${err.status.toString(16).padStart(2, '0')}: port in use there, or too many -R per session); going on without this forward`;
  return `-R ${spec}: ${toError(err).message}; going on without this forward`;
}
