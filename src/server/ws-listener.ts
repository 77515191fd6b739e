/**
 * The gateway's ws:// and wss:// listeners: one WebSocket server per listen
 * address, whose route (src/server/gateway.ts) picks the user by path or
 * token; anyone else gets the decoy, so the port looks like an ordinary
 * web site.
 */
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { nginxNotFound, reverseProxy, staticSite, type Decoy } from '../carriers/decoy.js';
import type { Listener, StreamConn } from '../carriers/types.js';
import { WsServer } from '../carriers/ws-server.js';
import type { ServerCert } from './cert-store.js';
import type { Gateway } from './gateway.js';

/** The decoy `--decoy` asks for: an http(s) URL is reverse-proxied, anything else is a folder served as a static site. */
export function decoyFor(spec: string | undefined, log: Logger): Decoy {
  if (spec === undefined) return nginxNotFound({ logger: log });
  if (/^https?:\/\//i.test(spec)) return reverseProxy(spec, { logger: log });
  return staticSite(spec, { logger: log });
}

/** One ws/wss listen address: wss takes the server certificate. */
export interface WsListen {
  readonly scheme: string;
  readonly host: string;
  readonly port: number;
}

/** Listens for ws/wss on `l`: the gateway's route picks the user by path or token, strangers get the decoy. */
export function listenWs(l: WsListen, gw: Gateway, cert: ServerCert | undefined, decoy: Decoy, log: Logger, onConn: (conn: StreamConn) => void, metrics?: Metrics): Promise<Listener> {
  const server = new WsServer({
    route: gw.route,
    decoy,
    logger: log,
    ...(metrics !== undefined ? { tcp: { metrics } } : {}),
    ...(l.scheme === 'wss' && cert !== undefined ? { tls: { cert: cert.cert, key: cert.key } } : {}),
  });
  return server.listen({ host: l.host, port: l.port }, onConn);
}
