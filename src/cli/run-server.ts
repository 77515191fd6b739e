/**
 * `polytun server`: opens the data dir (keys, users), listens on every
 * --listen URL, admits sessions and serves the proxy on each, prints the
 * users' links, and shuts down cleanly on SIGINT/SIGTERM.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { certFingerprint, generateSelfSigned } from '../carriers/cert.js';
import { TcpCarrier } from '../carriers/tcp.js';
import { TlsCarrier } from '../carriers/tls.js';
import type { Listener, StreamCarrier } from '../carriers/types.js';
import { linksFor } from '../config/links.js';
import type { ServerConfig } from '../config/schema.js';
import { openDataDir } from '../server/datadir.js';
import { EgressDialer } from '../server/egress.js';
import { DestinationPolicy } from '../server/policy.js';
import { attachProxy, createProxyCounters } from '../server/proxy-server.js';
import { SessionServer } from '../server/session-server.js';
import type { Session } from '../session/session.js';
import type { CliIo } from './io.js';
import { createLogger } from './log.js';
import { renderQr } from './qr.js';
import { waitForShutdown } from './shutdown.js';

/** The certificate for tls:// listeners: the configured files, or a self-signed one kept in the data dir. */
async function loadOrCreateCert(cfg: ServerConfig, log: Logger): Promise<{ cert: string; key: string; fingerprint: string }> {
  if (cfg.tls) {
    const [cert, key] = await Promise.all([readFile(cfg.tls.cert, 'utf8'), readFile(cfg.tls.key, 'utf8')]);
    return { cert, key, fingerprint: certFingerprint(cert) };
  }
  const certPath = join(cfg.dataDir, 'tls-cert.pem');
  const keyPath = join(cfg.dataDir, 'tls-key.pem');
  if (existsSync(certPath) && existsSync(keyPath)) {
    const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    return { cert, key, fingerprint: certFingerprint(cert) };
  }
  const name = cfg.publicHost ?? 'localhost';
  const made = generateSelfSigned({ commonName: name, altNames: [name] });
  await writeFile(keyPath, made.key, { mode: 0o600 });
  await writeFile(certPath, made.cert, { mode: 0o644 });
  log.info({ certPath }, 'generated a self-signed TLS certificate (its fingerprint is pinned in the links)');
  return { cert: made.cert, key: made.key, fingerprint: made.fingerprintSha256 };
}

export async function runServer(cfg: ServerConfig, io: CliIo): Promise<void> {
  const log = createLogger(cfg.log);
  const dd = await openDataDir(cfg.dataDir, { logger: log });
  const policy = new DestinationPolicy({ allow: cfg.policy.allow, deny: cfg.policy.deny, logger: log });
  const egress = new EgressDialer({ policy, logger: log });
  const server = new SessionServer<string>({
    staticKeyPair: dd.serverKeyPair,
    users: { byKey: (k) => dd.users.findByPublicKey(k)?.name },
    logger: log,
    handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
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
  const counters = createProxyCounters();
  const ports = cfg.reverse.ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',');
  server.on('session', (e: { session: Session; user: string }) => {
    const h = attachProxy(e.session, {
      egress,
      policy,
      logger: log.child({ user: e.user }),
      counters,
      reverse: { enabled: cfg.reverse.enabled, bindHosts: cfg.reverse.bindHosts, ports },
    });
    e.session.once('closed', () => h.close());
  });

  const tlsNeeded = cfg.listen.some((l) => l.scheme === 'tls');
  const cert = tlsNeeded ? await loadOrCreateCert(cfg, log) : undefined;
  const listeners: Listener[] = [];
  for (const l of cfg.listen) {
    let carrier: StreamCarrier;
    if (l.scheme === 'tls') carrier = new TlsCarrier({ cert: cert?.cert as string, key: cert?.key as string, logger: log });
    else carrier = new TcpCarrier({ logger: log });
    const listener = await carrier.listen({ host: l.host, port: l.port }, (conn) => server.handle(conn, carrier.scheme));
    listeners.push(listener);
    log.info({ listen: `${l.scheme}://${listener.address.host}:${listener.address.port}` }, 'listening');
  }
  // Links use the real ports (a listen on port 0 gets one from the kernel).
  const bound = cfg.listen.map((l, i) => ({ ...l, port: (listeners[i] as Listener).address.port }));
  const links = linksFor(dd, bound, cfg.publicHost, cert ? { fingerprint: cert.fingerprint } : {});
  for (const link of links) {
    io.stdout.write(`${link}\n`);
    if (io.stdout.isTTY) io.stdout.write(`${renderQr(link)}\n`);
  }

  const signal = await waitForShutdown(log);
  log.info({ signal, sessions: server.sessions.size }, 'shutting down');
  server.close();
  await Promise.all(listeners.map((l) => l.close().catch((err: unknown) => log.debug({ err: toError(err).message }, 'listener close failed'))));
}
