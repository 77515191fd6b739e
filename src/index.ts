/**
 * polytun as a library: dial a server from a link and open streams, or run
 * sessions over carriers of your own. Everything here is stable API; deep
 * imports are not (package.json `exports` exposes only this module).
 *
 * ```ts
 * import { connect } from 'polytun';
 * const tunnel = await connect('polytun://…');
 * const sock = await tunnel.dial('example.com', 443); // a Duplex via the server
 * const raw = tunnel.session.openStream(Buffer.from('my protocol')); // your own server side
 * tunnel.close();
 * ```
 */
import type { Duplex } from 'node:stream';
import { makeDestination } from './core/address.js';
import type { Logger } from './core/logger.js';
import type { SessionClient } from './paths/session-client.js';
import { ProxyClient, ProxyStatusError } from './client/proxy-client.js';
import { clientForLink } from './config/dial-link.js';
import { decodeLink } from './config/link.js';
import type { Session, SessionOptions } from './session/session.js';

export { PolytunError, ProtocolError, LimitError, AuthError, RejectedError, RejectCode, TimeoutError, ClosedError, AbortedError, StreamResetError, ConfigError } from './core/errors.js';
export type { Logger } from './core/logger.js';
export type { Endpoint, StreamCarrier, StreamConn, PacketCarrier, PacketConn, Listener } from './carriers/types.js';
export { TcpCarrier } from './carriers/tcp.js';
export { TlsCarrier } from './carriers/tls.js';
// A carrier of your own declares what its streams can do (buffer reuse, slab
// reads, the TLS binding); undeclared streams work, without those.
export { declareCapabilities, type StreamCapabilities } from './core/stream-caps.js';
export { socketCapabilities } from './carriers/tcp.js';
export { tlsCapabilities } from './carriers/tls.js';
export { generateKeyPair, encodeKey, decodeKey, keyPairFromToken, generateToken, type KeyPair } from './secure/keys.js';
export { aesAcceleration, CIPHER_CHOICES, type CipherChoice, type RecordCipher } from './secure/cipher.js';
export { Session, SessionClosedError, type SessionOptions, type SessionStats, type PathStats } from './session/session.js';
export { PolyStream, ResetCode } from './session/stream.js';
export { SessionClient, type SessionClientInit, type SourcedClientInit, type PathSpec } from './paths/session-client.js';
export { FailoverClient, type FailoverInit } from './paths/failover.js';
export { DirectDialSource, type PathSource, type PathRequest, type OpenedPath } from './paths/source.js';
export type { PathSupervisor, SupervisorEvents, SupervisorStatus } from './paths/supervisor.js';
export { MemoryMetrics, nullMetrics, type Metrics } from './core/metrics.js';
export { PrometheusMetrics, PROMETHEUS_CONTENT_TYPE, type PrometheusMetricsInit } from './observe/prometheus.js';
export { SessionServer, type SessionServerInit, type UserLookup, type SessionEntry } from './server/session-server.js';
export { decodeLink, encodeLink, type ClientLink } from './config/link.js';
export { ProxyStatusError } from './client/proxy-client.js';

export interface ConnectOptions {
  logger?: Logger;
  session?: SessionOptions;
  signal?: AbortSignal;
}

/** A connected tunnel: a session that reconnects and resumes by itself. */
export interface Tunnel {
  /** The current session (replaced if the server lost the old one). */
  readonly session: Session;
  readonly client: SessionClient;
  /**
   * A TCP connection made by the server to host:port (subject to the server's
   * destination policy). Resolves once the server has connected; rejects with
   * ProxyStatusError carrying the SOCKS-style reason otherwise.
   */
  dial(host: string, port: number, opts?: { signal?: AbortSignal }): Promise<Duplex>;
  /** Closes the session. Idempotent. */
  close(): void;
}

/** Connects to the server a `polytun://` link names. */
export async function connect(link: string, opts: ConnectOptions = {}): Promise<Tunnel> {
  const client = clientForLink(decodeLink(link), {
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.session ? { session: opts.session } : {}),
  });
  await client.connect(opts.signal);
  const proxy = new ProxyClient({ session: () => client.session, events: client, ...(opts.logger ? { logger: opts.logger } : {}) });
  return {
    get session() {
      return client.session as Session;
    },
    client,
    async dial(host, port, o = {}) {
      const { stream, status } = await proxy.connect(makeDestination(host, port), { waitStatus: true, ...(o.signal ? { signal: o.signal } : {}) });
      if (status !== 0) {
        stream.destroy();
        throw new ProxyStatusError(`connect to ${host}:${port}`, status);
      }
      return stream;
    },
    close() {
      proxy.dispose();
      client.close();
    },
  };
}
