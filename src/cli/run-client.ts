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
import { EventEmitter } from 'node:events';
import { makeDestination } from '../core/address.js';
import { toError } from '../core/errors.js';
import { formatEndpoint } from '../carriers/types.js';
import { HttpFront } from '../client/http-front.js';
import { LocalForward } from '../client/forward.js';
import { ProxyClient, ProxyStatusError } from '../client/proxy-client.js';
import { requireAuthOffLoopback } from '../client/tcp-front.js';
import { ReverseForward } from '../client/reverse.js';
import { Socks5Front } from '../client/socks5-front.js';
import { pathsFromConfig, supervisorForLinks } from '../config/dial-link.js';
import { ccOf } from '../config/udp-schema.js';
import { RefusedError } from '../paths/refusal.js';
import { UnreachableError } from '../paths/backoff.js';
import { runPathHooks } from '../paths/hooks.js';
import { connectPersistently } from '../paths/retry.js';
import type { Session } from '../session/session.js';
import type { ClientConfig } from '../config/schema.js';
import type { CliIo } from './io.js';
import { listenOrExplain } from './listen-errors.js';
import { createLogger } from './log.js';
import { waitForShutdown } from './shutdown.js';
import { startClientVpnFor } from './vpn-run.js';
import { startStatusServer } from './status-server.js';
import { metricsExport } from './metrics-server.js';
import { clientStatus } from '../observe/status.js';
import type { TunnelView } from '../ui/types.js';
import { startClientUi } from './ui-run.js';

interface Front {
  kind: string;
  listen: string;
  /** What the front counts, for the dashboard (absent: nothing). */
  counters?: () => Record<string, number>;
  close(): Promise<void> | void;
}

/** How runClient is run besides its config. */
export interface RunClientOptions {
  /** The config file it was read from (the dashboard's wizard rewrites it). */
  configFile?: string | undefined;
  /** Stops the client like SIGTERM does (`polytun ui` restarting the tunnel it started). */
  signal?: AbortSignal;
  /** A dashboard already running in this process (`polytun ui`): the client shows itself there instead of opening its own --ui. */
  attachUi?: (view: TunnelView) => () => void;
}

export async function runClient(cfg: ClientConfig, _io: CliIo, opts: RunClientOptions = {}): Promise<void> {
  const log = createLogger(cfg.log);
  // Listen for SIGINT/SIGTERM from the start: a signal during startup then
  // runs the normal cleanup (routes, NAT rules, listeners) once startup is
  // done, instead of killing the process with half its changes applied.
  const shutdown = waitForShutdown(log, opts.signal);
  const link = cfg.link;
  const server = formatEndpoint({ host: link.host, port: link.port });
  // One Metrics for the whole run: every component that counts registers here (nullMetrics without --metrics).
  const exported = metricsExport(cfg.metrics, log);
  const { metrics } = exported;
  const linkOptions = {
    logger: log,
    metrics,
    mptcp: cfg.mptcp,
    extraPaths: pathsFromConfig(link, cfg.paths),
    handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
    tlsBound: cfg.records.tlsBound,
    cipher: cfg.records.cipher,
    cc: cfg.udp.cc === undefined ? undefined : ccOf(cfg.udp.cc),
    udpMode: cfg.udp.mode,
    udpDatagramSize: cfg.udp.datagramSize,
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
  const client = supervisorForLinks(link, cfg.backupServers, linkOptions, cfg.failover);
  runPathHooks(client, { onUp: cfg.bonding.onUp, onDown: cfg.bonding.onDown }, log);
  const serverNames = [link, ...cfg.backupServers].map((l) => formatEndpoint({ host: l.host, port: l.port }));
  // With retries off, a refusal after start ends the program (status 1) once
  // the fronts are closed; so does a server still unreachable after --retry N.
  let refusedForGood: ((err: RefusedError | UnreachableError) => void) | undefined;
  const gaveUp = new Promise<RefusedError | UnreachableError>((resolve) => (refusedForGood = resolve));
  client.on('refused', (err: RefusedError) => {
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
  const proxy = new ProxyClient({ session: () => (connected ? client.session : undefined), events: sessions, logger: log, metrics });
  const fronts: Front[] = [];
  let vpn: Awaited<ReturnType<typeof startClientVpnFor>>;
  // The dashboard's view of this run (its event log and path history start before the first session).
  const ui = await startClientUi(cfg, {
    supervisor: client,
    servers: serverNames,
    udp: () => proxy.udpTraffic,
    fronts: () => [
      ...fronts.map((f) => ({ kind: f.kind, listen: f.listen, ...(f.counters ? { counters: f.counters() } : {}) })),
      ...(vpn && cfg.vpn ? [{ kind: 'vpn', listen: cfg.vpn.tunName ?? 'tun', counters: { ...vpn.stats } }] : []),
    ],
    configFile: opts.configFile,
    logger: log,
    ...(opts.attachUi ? { attach: opts.attachUi } : {}),
  });
  const stop = async (): Promise<void> => {
    await Promise.all(fronts.map(async (f) => {
      try {
        await f.close();
      } catch (err) {
        log.debug({ front: f.kind, err: toError(err).message }, 'front close failed');
      }
    }));
    await vpn?.close();
    await ui.close();
    proxy.dispose();
    client.close();
  };
  try {
    if (cfg.socks) {
      const f = new Socks5Front({ listen: cfg.socks, proxy, logger: log, ...(cfg.socksAuth ? { auth: cfg.socksAuth } : {}) });
      await listenOrExplain(`--socks ${formatEndpoint(cfg.socks)}`, () => f.start());
      fronts.push({ kind: 'socks5', listen: formatEndpoint(f.address), counters: () => f.counters, close: () => f.close() });
    }
    if (cfg.http) {
      const f = new HttpFront({ listen: cfg.http, proxy, logger: log });
      await listenOrExplain(`--http ${formatEndpoint(cfg.http)}`, () => f.start());
      fronts.push({ kind: 'http', listen: formatEndpoint(f.address), counters: () => f.counters, close: () => f.close() });
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
      fronts.push({ kind: fw.udp ? 'forward-udp' : 'forward', listen: `${formatEndpoint(f.address)} -> ${fw.host}:${fw.port}`, counters: () => f.counters, close: () => f.close() });
    }
    if (cfg.status) {
      const st = await listenOrExplain(`--status ${formatEndpoint(cfg.status)}`, () => startStatusServer({
        listen: cfg.status as { host: string; port: number },
        logger: log,
        getStatus: () => clientStatus({ supervisor: client, servers: serverNames, carrier: link.carrier, udp: proxy.udpTraffic, fronts }),
      }));
      fronts.push({ kind: 'status', listen: formatEndpoint(st.address), close: () => st.close() });
    }
    const ms = await exported.listen();
    if (ms) fronts.push({ kind: 'metrics', listen: `http://${formatEndpoint(ms.address)}/metrics`, close: () => exported.close() });
    const us = await ui.listen();
    if (us) fronts.push({ kind: 'ui', listen: us.url, close: () => us.close() });
  } catch (err) {
    await stop();
    throw err;
  }

  try {
    const stopWaiting = new AbortController();
    void shutdown.then(() => stopWaiting.abort());
    const retry = { refusedRetryMs: cfg.reconnect.refusedRetryMs, maxRetries: cfg.reconnect.retry, server };
    if (!(await connectPersistently(client, retry, log, stopWaiting.signal))) {
      await stop();
      return; // a signal while the server was refusing us or could not be reached
    }
    vpn = await startClientVpnFor(cfg, client, log, metrics); // before the proxy sees the session: the VPN taps it first
  } catch (err) {
    await stop();
    throw err;
  }
  connected = true;
  client.on('session', (s: Session) => sessions.emit('session', s));
  // Requests that arrived while we dialed are waiting for this one (ProxyClient.sessionSoon).
  if (client.session) sessions.emit('session', client.session);
  log.info({ server, carrier: link.carrier, records: client.session?.stats.paths?.[0]?.protection, cipher: client.status().cipher }, 'connected');

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

/** Why the server refused `-R spec` (binding on `bind`), and what to change on the server. */
export function reverseRefusal(spec: string, bind: string, err: unknown): string {
  if (err instanceof ProxyStatusError && err.status === 0x02) {
    return `-R ${spec}: the server refuses to listen on ${bind}: reverse forwards need --reverse on the server, and the address and port inside reverse.bindHosts / reverse.ports; going on without this forward`;
  }
  if (err instanceof ProxyStatusError) return `-R ${spec}: the server could not listen on ${bind} (status 0x${err.status.toString(16).padStart(2, '0')}: port in use there, or too many -R per session); going on without this forward`;
  return `-R ${spec}: ${toError(err).message}; going on without this forward`;
}
