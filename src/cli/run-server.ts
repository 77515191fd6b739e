/**
 * `polytun server`: opens the data dir (keys) and the user store (the
 * gateway, src/server/gateway.ts), listens on every --listen URL, admits
 * sessions and serves the proxy on each, starts the admin API and mtt
 * controller when asked (run-gateway.ts), prints the users' links, and
 * shuts down cleanly on SIGINT/SIGTERM.
 */
import { toError } from '../core/errors.js';
import { TcpCarrier } from '../carriers/tcp.js';
import { TlsCarrier } from '../carriers/tls.js';
import { formatEndpoint, type Listener, type StreamCarrier, type StreamConn } from '../carriers/types.js';
import type { ServerConfig } from '../config/schema.js';
import { cipherPolicyFields } from '../secure/cipher.js';
import { loadOrCreateCert } from '../server/cert-store.js';
import { openDataDir } from '../server/datadir.js';
import { Gateway } from '../server/gateway.js';
import { SessionServer, type SessionEntry } from '../server/session-server.js';
import { decoyFor, listenWs } from '../server/ws-listener.js';
import { listenUdp } from '../server/packet-listener.js';
import { ccOf, maxRateOf } from '../config/udp-schema.js';
import type { Session } from '../session/session.js';
import type { User } from '../store/index.js';
import type { CliIo } from './io.js';
import { createLogger } from './log.js';
import { metricsExport, type MetricsExport } from './metrics-server.js';
import { printLinks, startManagement, type Management } from './run-gateway.js';
import { waitForShutdown } from './shutdown.js';
import { startServerVpnFor } from './vpn-run.js';

export async function runServer(cfg: ServerConfig, io: CliIo): Promise<void> {
  const log = createLogger(cfg.log);
  // Listen for SIGINT/SIGTERM from the start: a signal during startup then
  // runs the normal cleanup (routes, NAT rules, listeners) once startup is
  // done, instead of killing the process with half its changes applied.
  const shutdown = waitForShutdown(log);
  const dd = await openDataDir(cfg.dataDir, { logger: log });
  // One Metrics for the whole run: every component that counts registers here (nullMetrics without --metrics).
  const exported: MetricsExport = metricsExport(cfg.metrics, log);
  const ports = cfg.reverse.ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',');
  const gw = await Gateway.open({
    storeUrl: cfg.gateway.store,
    dataDir: dd,
    policy: cfg.policy,
    reverse: { enabled: cfg.reverse.enabled, bindHosts: cfg.reverse.bindHosts, ports },
    trafficFlushMs: cfg.gateway.trafficFlushMs,
    wsTokenPath: cfg.gateway.wsTokenPath === false ? null : cfg.gateway.wsTokenPath,
    mttIdleMs: cfg.gateway.mttTimeoutMs,
    history: cfg.gateway.history,
    ...(cfg.gateway.historyNode !== undefined ? { historyNode: cfg.gateway.historyNode } : {}),
    logger: log,
    metrics: exported.metrics,
  });
  const policy = gw.policy;
  const server = new SessionServer<User>({
    metrics: exported.metrics,
    staticKeyPair: dd.serverKeyPair,
    users: gw.lookup,
    logger: log,
    handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
    tlsBound: cfg.records.tlsBound,
    cipher: cfg.records.cipher,
    maxPendingHandshakes: cfg.limits.maxPendingHandshakes,
    maxSessions: cfg.limits.maxSessions,
    session: {
      streamWindow: cfg.limits.streamWindow,
      sessionWindow: cfg.limits.sessionWindow,
      maxStreams: cfg.limits.maxStreams,
      graceMs: cfg.limits.graceMs,
      idleTimeoutMs: cfg.limits.idleTimeoutMs,
      pingIntervalMs: cfg.liveness.intervalMs,
      pingTimeoutMs: cfg.liveness.timeoutMs,
      maxMissedPongs: cfg.liveness.misses,
    },
  });
  const listeners: Listener[] = [];
  let vpn: Awaited<ReturnType<typeof startServerVpnFor>>;
  let mgmt: Management | undefined;
  // Whatever was started is stopped again, also when a later step fails (a port in use).
  try {
    // The VPN keys its address leases by user name.
    const vpnSessions = {
      prependListener: (ev: 'session', l: (e: { session: Session; user: string }) => void) =>
        server.prependListener(ev, (e: SessionEntry<User>) => l({ session: e.session, user: e.user.name })),
    };
    const ms = await exported.listen();
    if (ms) log.info({ metrics: `http://${formatEndpoint(ms.address)}/metrics` }, 'metrics endpoint listening');
    vpn = await startServerVpnFor(cfg, { server: vpnSessions, policy, logger: log, metrics: exported.metrics });
    gw.serve(server, { logger: log });

    const tlsNeeded = cfg.listen.some((l) => l.scheme === 'tls' || l.scheme === 'wss') || cfg.gateway.admin?.tls === true;
    const cert = tlsNeeded ? await loadOrCreateCert({ dataDir: cfg.dataDir, files: cfg.tls, publicHost: cfg.publicHost, listen: cfg.listen }, log) : undefined;
    const decoy = decoyFor(cfg.gateway.decoy, log);
    log.info(cipherPolicyFields(cfg.records.cipher), 'record cipher');
    for (const l of cfg.listen) {
      const onConn = (conn: StreamConn): void => server.handle(conn, l.scheme);
      let listener: Listener;
      if (l.scheme === 'ws' || l.scheme === 'wss') listener = await listenWs(l, gw, cert, decoy, log, onConn, exported.metrics);
      else if (l.scheme === 'udp') listener = await listenUdp({ host: l.host, port: l.port }, server, { logger: log, metrics: exported.metrics, cc: ccOf(cfg.udp.cc), maxFixedRate: maxRateOf(cfg.udp.maxRate), datagramSize: cfg.udp.datagramSize });
      else {
        const carrier: StreamCarrier = l.scheme === 'tls' ? new TlsCarrier({ cert: cert?.cert as string, key: cert?.key as string, logger: log, tcp: { metrics: exported.metrics } }) : new TcpCarrier({ logger: log, metrics: exported.metrics, ...(l.mptcp ? { mptcp: true } : {}) });
        listener = await carrier.listen({ host: l.host, port: l.port }, onConn);
      }
      listeners.push(listener);
      log.info({ listen: `${l.scheme}://${listener.address.host}:${listener.address.port}${l.mptcp ? '?mptcp' : ''}` }, 'listening');
    }
    // Links use the real ports (a listen on port 0 gets one from the kernel).
    const bound = cfg.listen.map((l, i) => ({ ...l, port: (listeners[i] as Listener).address.port }));
    mgmt = await startManagement({ cfg, gw, server, dd, bound, cert, io, log });
    await printLinks(gw, mgmt.view, io, log, dd.dir);

    const signal = await shutdown;
    log.info({ signal, sessions: server.sessions.size }, 'shutting down');
    mgmt.draining();
  } finally {
    server.close();
    await vpn?.close();
    await Promise.all(listeners.map((l) => l.close().catch((err: unknown) => log.debug({ err: toError(err).message }, 'listener close failed'))));
    await mgmt?.close();
    await exported.close();
    // Last: the final traffic flush needs the store.
    await gw.close();
  }
}
