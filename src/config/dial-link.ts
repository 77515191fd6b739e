/**
 * From a polytun:// link to a SessionClient: picks the carrier the link
 * names (tcp, tls or wss with the pinned certificate fingerprint, ws/wss with
 * the user's URL path), derives the user's key pair from its credential.
 * A token link on ws/wss also sends `Authorization: Bearer <value derived
 * from the token>` in the upgrade, which selects the user on the server's
 * shared token path (and is ignored on a path of the user's own).
 */
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { TcpCarrier } from '../carriers/tcp.js';
import { TlsCarrier } from '../carriers/tls.js';
import { WsCarrier } from '../carriers/ws.js';
import type { Carrier } from '../carriers/types.js';
import { UdpPacketCarrier } from '../carriers/udp.js';
import type { CcChoice, UdpMode } from '../arq/cc-choice.js';
import { FailoverClient } from '../paths/failover.js';
import { SessionClient, type PathSpec, type SessionClientInit } from '../paths/session-client.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import type { CipherChoice } from '../secure/cipher.js';
import { decodeKey, keyPairFromToken, publicKeyOf, wsBearerFromToken, type KeyPair } from '../secure/keys.js';
import type { SessionOptions } from '../session/session.js';
import type { ClientLink } from './link.js';
import type { PathConfig } from './paths.js';

/** The user's static key pair from the link's credential. */
export function linkKeyPair(link: ClientLink): KeyPair {
  if (link.credentialKind === 'token') return keyPairFromToken(link.credential);
  const privateKey = decodeKey(link.credential, 'link credential');
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

export interface CarrierExtras {
  /** Local source address for the TCP connection. */
  localAddress?: string;
  /** Local interface (SO_BINDTODEVICE). */
  device?: string;
  /** Kernel MPTCP socket. */
  mptcp?: boolean;
  /** Override the carrier scheme (a bonding path may use another carrier than the link). */
  scheme?: 'tcp' | 'tls' | 'udp';
}

/** The carrier a link asks for. */
export function carrierForLink(link: ClientLink, extras: CarrierExtras = {}): Carrier {
  const tcp = {
    ...(extras.localAddress ? { localAddress: extras.localAddress } : {}),
    ...(extras.device ? { device: extras.device } : {}),
    ...(extras.mptcp ? { mptcp: true } : {}),
  };
  switch (extras.scheme ?? link.carrier) {
    case 'tcp':
      return new TcpCarrier(tcp);
    case 'tls':
      return new TlsCarrier({
        tcp,
        servername: link.sni ?? link.host,
        ...(link.fingerprint ? { pinSha256: link.fingerprint } : {}),
      });
    case 'ws':
    case 'wss':
      // The path (or, for a token, the bearer value) selects the user on a shared port; SNI and the pin work as for tls.
      return new WsCarrier({
        tls: link.carrier === 'wss',
        path: link.path ?? '/',
        tcp,
        ...(link.credentialKind === 'token' ? { headers: { Authorization: `Bearer ${wsBearerFromToken(link.credential)}` } } : {}),
        ...(link.carrier === 'wss' && link.sni !== undefined ? { servername: link.sni } : {}),
        ...(link.carrier === 'wss' && link.fingerprint ? { pinSha256: link.fingerprint } : {}),
      });
    case 'udp':
      if (extras.device) throw new ConfigError('link', 'binding a udp path to an interface is not supported yet: bind to its address');
      return new UdpPacketCarrier(extras.localAddress ? { localAddress: extras.localAddress } : {});
    default:
      throw new ConfigError('link', `carrier '${link.carrier}' is not supported by this build yet`);
  }
}

/** The extra bonding paths a config lists, as carrier + endpoint specs. */
export function pathsFromConfig(link: ClientLink, paths: readonly PathConfig[]): PathSpec[] {
  return paths.map((p) => ({
    carrier: carrierForLink(link, {
      scheme: p.scheme,
      ...(p.localAddress ? { localAddress: p.localAddress } : {}),
      ...(p.device ? { device: p.device } : {}),
      ...(p.mptcp ? { mptcp: true } : {}),
    }),
    endpoint: { host: p.host, port: p.port },
    role: p.role,
    weight: p.weight,
    label: p.spec,
  }));
}

export interface LinkClientOptions {
  logger?: Logger;
  /** Kernel MPTCP for the link's own path. */
  mptcp?: boolean;
  session?: SessionOptions;
  /** Further paths (bonding), each a carrier + endpoint. */
  extraPaths?: PathSpec[];
  handshakeTimeoutMs?: number;
  /** See ChannelInit.tlsBound. @default true */
  tlsBound?: boolean;
  /** See ChannelInit.cipher. @default 'auto' */
  cipher?: CipherChoice;
  /** After a refusal (user unknown, disabled, expired, over quota, kicked), try again this often, ms; 0 = stop. @default 60000 */
  refusedRetryMs?: number;
  /** See SessionClientInit.maxRetries. @default undefined = never give up */
  maxRetries?: number | undefined;
  /** Where the supervisor registers its metrics (paths/metrics.ts). @default none */
  metrics?: Metrics;
  /** Congestion controller of udp paths. @default bbr */
  cc?: CcChoice | undefined;
  /** ACK knobs of udp paths. @default 'fast' */
  udpMode?: UdpMode;
  /** Largest UDP payload sent on udp paths. @default 1452 */
  udpDatagramSize?: number;
}

/** A SessionClient for the server a link names (not yet connected). */
export function clientForLink(link: ClientLink, opts: LinkClientOptions = {}): SessionClient {
  return new SessionClient(clientInitForLink(link, opts));
}

/** The SessionClient settings for the server a link names. */
export function clientInitForLink(link: ClientLink, opts: LinkClientOptions = {}): SessionClientInit {
  const init: SessionClientInit = {
    carrier: carrierForLink(link, opts.mptcp ? { mptcp: true } : {}),
    endpoint: { host: link.host, port: link.port },
    serverPublicKey: decodeKey(link.serverKey, 'link pk'),
    clientKeyPair: linkKeyPair(link),
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.session ? { session: opts.session } : {}),
    ...(opts.tlsBound === false ? { tlsBound: false } : {}),
    ...(opts.cipher !== undefined && opts.cipher !== 'auto' ? { cipher: opts.cipher } : {}),
    ...(opts.extraPaths ? { extraPaths: opts.extraPaths } : {}),
    ...(opts.handshakeTimeoutMs ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}),
    ...(opts.refusedRetryMs !== undefined ? { refusedRetryMs: opts.refusedRetryMs } : {}),
    ...(opts.maxRetries !== undefined ? { maxRetries: opts.maxRetries } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.cc ? { cc: opts.cc } : {}),
    ...(opts.udpMode ? { udpMode: opts.udpMode } : {}),
    ...(opts.udpDatagramSize ? { maxDatagramSize: opts.udpDatagramSize } : {}),
  };
  return init;
}

/** When to move between servers (the config's `failover`). */
export interface FailoverTimes {
  /** Detached this long on the active server → move to the next. */
  afterMs?: number | undefined;
  /** Master reachable this long → move back. */
  failbackAfterMs?: number | undefined;
}

/**
 * What keeps the session up for a link: one SessionClient, or with backup
 * servers a FailoverClient that moves between them (the backups without the
 * link's extra bonding paths). Not yet connected.
 */
export function supervisorForLinks(link: ClientLink, backups: readonly ClientLink[], opts: LinkClientOptions, failover: FailoverTimes = {}): PathSupervisor {
  if (backups.length === 0) return clientForLink(link, opts);
  return new FailoverClient({
    servers: [clientInitForLink(link, opts), ...backups.map((b) => clientInitForLink(b, { ...opts, extraPaths: [] }))],
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(failover.afterMs !== undefined ? { failoverAfterMs: failover.afterMs } : {}),
    ...(failover.failbackAfterMs !== undefined ? { failbackAfterMs: failover.failbackAfterMs } : {}),
  });
}
