/**
 * Multi-user WebSocket server: one HTTP(S) port, users told apart by the
 * upgrade request (URL path, or a token in a header or the query) through an
 * injected `route` — before a single polytun byte is exchanged. Whatever is
 * not accepted (unknown path, wrong token, a plain GET, a scanner, a
 * malformed upgrade) is answered by the decoy, exactly as the site it
 * imitates would answer; nothing tells a prober a tunnel lives here.
 *
 *   request ──► 'request' ───────────────────────────────► decoy
 *           └─► 'upgrade' ─► valid WS upgrade? ─no──────► decoy (then close)
 *                                  │yes
 *                               route(req) ─reject/throw─► decoy (then close)
 *                                  │accept
 *                               101 + WsStream ─► onConn({ meta: path, …route meta })
 *
 * ws:// suits a TLS-terminating reverse proxy in front; wss:// terminates TLS here.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { nullLogger, type Logger } from '../core/logger.js';
import { nginxNotFound, nginxRejectsTarget, rawNginxError, sendNginxError, type Decoy } from './decoy.js';
import { TLS_HANDSHAKE_TIMEOUT_MS, dropTlsClient } from './preauth.js';
import { ServerListener, gateFor, listenServer, type TcpCarrierInit } from './tcp.js';
import { TLS_CIPHERS } from './tls.js';
import { formatEndpoint } from './types.js';
import { acceptKey } from './ws-frames.js';
import type { Endpoint, Listener, StreamConn } from './types.js';
import { DEFAULT_WS_MAX_PAYLOAD, WsStream, type WsStreamInit } from './ws-stream.js';

/** What `route` decided about one upgrade request. */
export type RouteDecision =
  | {
      accept: true;
      meta?: Readonly<Record<string, string>>;
      /** Sec-WebSocket-Protocol of the 101 (the one the client offered that was chosen). */
      protocol?: string;
      /**
       * Takes the upgraded socket (101 written) instead of a polytun
       * WsStream: mtt compatibility mode (server/mtt-passthrough.ts).
       */
      takeover?: (socket: net.Socket, head: Buffer) => void;
    }
  | { accept: false };

/**
 * Picks the user of an upgrade request (path, header, query…). May be
 * async (a store lookup). A throw counts as a refusal.
 */
export type Route = (req: http.IncomingMessage) => RouteDecision | Promise<RouteDecision>;

/** Options of {@link WsServer}. */
export interface WsServerInit {
  /** Decides which upgrades become connections, and their meta. */
  route: Route;
  /** Serve wss:// with this certificate; without it, plain ws:// (behind a TLS front). */
  tls?: { cert: string | Buffer; key: string | Buffer; /** @default 'TLSv1.2' (what a public web server offers) */ minVersion?: tls.SecureVersion };
  /** The answer to everything not routed. @default nginxNotFound() */
  decoy?: Decoy;
  /** `Server` header of the 101 response and of raw 400s. @default 'nginx' */
  serverName?: string;
  /** Largest data frame accepted from a client. @default 1 MiB */
  maxPayloadBytes?: number;
  /** Stream behaviour of accepted connections (keepalive ping, buffers). */
  stream?: WsStreamInit;
  /** TCP keepalive, listen backlog and the cap on unauthenticated connections. */
  tcp?: Pick<TcpCarrierInit, 'keepAliveInitialDelayMs' | 'backlog' | 'maxPreAuthConns' | 'metrics'>;
  /** Time allowed for a request's headers, ms (nginx client_header_timeout). @default 60000 */
  headersTimeoutMs?: number;
  /** Idle time of a keep-alive connection, ms (nginx keepalive_timeout). @default KEEPALIVE_TIMEOUT_MS */
  keepAliveTimeoutMs?: number;
  /** wss: time allowed for the TLS handshake, ms. @default TLS_HANDSHAKE_TIMEOUT_MS */
  tlsHandshakeTimeoutMs?: number;
  /** Where listener-level events go (decoy hits at debug). @default nullLogger */
  logger?: Logger;
}

/** nginx's keepalive_timeout default, ms. */
export const KEEPALIVE_TIMEOUT_MS = 75_000;
/** nginx's keepalive_requests default: requests served on one connection before it is closed. */
export const KEEPALIVE_REQUESTS = 1000;

const REFUSE: RouteDecision = { accept: false };
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;

/** The path part of a request target (origin-form or absolute-form), without the query. */
export function requestPath(req: http.IncomingMessage): string {
  const url = req.url ?? '/';
  if (url.startsWith('/')) return url.split('?', 1)[0] as string;
  try {
    return new URL(url).pathname;
  } catch {
    return url; // not a URL at all: matches no route
  }
}

/** A route that accepts exactly one path (query ignored), with fixed meta. */
export function exactPathRoute(path: string, meta: Readonly<Record<string, string>> = {}): Route {
  const want = path.split('?', 1)[0] as string;
  return (req) => (requestPath(req) === want ? { accept: true, meta } : REFUSE);
}

/** A route from a table path → meta (e.g. `{ '/u/3f9c': { user: 'alice' } }`); read at each upgrade. */
export function pathTableRoute(table: ReadonlyMap<string, Readonly<Record<string, string>>>): Route {
  return (req) => {
    const meta = table.get(requestPath(req));
    return meta ? { accept: true, meta } : REFUSE;
  };
}

/** Only a well-formed RFC 6455 upgrade may reach `ws`; anything else it would answer with its own 400s. */
function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  const h = req.headers;
  return (
    req.method === 'GET' &&
    h.upgrade?.toLowerCase() === 'websocket' &&
    typeof h['sec-websocket-key'] === 'string' &&
    WS_KEY.test(h['sec-websocket-key']) &&
    h['sec-websocket-version'] === '13'
  );
}

/** Multi-user WebSocket server. Each `listen` binds its own port. */
export class WsServer {
  private readonly init: WsServerInit;
  private readonly decoy: Decoy;
  private readonly logger: Logger;
  private readonly serverName: string;

  constructor(init: WsServerInit) {
    this.init = init;
    this.serverName = init.serverName ?? 'nginx';
    this.decoy = init.decoy ?? nginxNotFound({ serverName: this.serverName });
    this.logger = init.logger ?? nullLogger;
  }

  /** Binds `at`; routed upgrades become StreamConns handed to `onConn`. */
  async listen(at: Endpoint, onConn: (conn: StreamConn) => void): Promise<Listener> {
    const opts: http.ServerOptions = {
      keepAlive: true,
      keepAliveInitialDelay: this.init.tcp?.keepAliveInitialDelayMs ?? 30_000,
      noDelay: true,
    };
    const t = this.init.tls;
    const server = t
      ? https.createServer({
          ...opts,
          cert: t.cert,
          key: t.key,
          minVersion: t.minVersion ?? 'TLSv1.2',
          ciphers: TLS_CIPHERS,
          ALPNProtocols: ['http/1.1'],
          handshakeTimeout: this.init.tlsHandshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
        })
      : http.createServer(opts);
    server.keepAliveTimeout = this.init.keepAliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS;
    server.maxRequestsPerSocket = KEEPALIVE_REQUESTS;
    server.headersTimeout = this.init.headersTimeoutMs ?? 60_000;
    server.requestTimeout = Math.max(server.requestTimeout, server.headersTimeout);
    // Every connection counts as unauthenticated until a tunnel handshake
    // succeeds on it, decoy keep-alive ones included. No backstop timer: the
    // HTTP timeouts above bound a decoy connection as nginx's do, and after
    // an upgrade the polytun handshake has its own deadline.
    const gate = gateFor(t ? 'wss' : 'ws', at, { ...this.init.tcp, preAuthTimeoutMs: 0 }, this.logger);
    server.prependListener('connection', (raw: net.Socket) => void gate.admit(raw));

    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.logger.debug({ path: requestPath(req), method: req.method }, 'decoy request');
      this.answer(req, res);
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.onUpgrade(req, socket as net.Socket, head, onConn);
    });
    // nginx answers CONNECT and unparsable requests with 400 and a close.
    server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      socket.end(rawNginxError(400, this.serverName));
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      this.logger.debug({ err }, 'bad http request');
      if (err.code === 'ECONNRESET' || err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || !socket.writable) return void socket.destroy();
      socket.end(rawNginxError(400, this.serverName));
    });
    if (t) server.on('tlsClientError', (err: Error, socket: net.Socket) => dropTlsClient(this.logger, err, socket));
    await listenServer(server, at, this.init.tcp?.backlog);
    server.on('error', (err) => gate.listenerError(err));
    this.gate = gate;
    this.server = server;
    // Node's closeIdleConnections() (run by close()) knows nothing of the
    // decoy sockets handed back below: without this a stopping server waited
    // out their 75 s keep-alive.
    return new ServerListener(server, gate, () => {
      for (const s of this.handedBack) s.destroy();
    });
  }

  /** Upgrade sockets given back to the HTTP server after a decoy answer (see decoyOnSocket). */
  private readonly handedBack = new Set<net.Socket>();
  private gate: ReturnType<typeof gateFor> | undefined;
  private server: http.Server | https.Server | undefined;

  /** The decoy, behind nginx's own request-target checks (nginx answers 400 before any location runs). */
  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (nginxRejectsTarget(req)) return sendNginxError(res, 400, this.serverName);
    this.decoy(req, res);
  }

  private async onUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    head: Buffer,
    onConn: (conn: StreamConn) => void,
  ): Promise<void> {
    const onError = (err: Error): void => {
      this.logger.debug({ err }, 'upgrade socket error');
      socket.destroy();
    };
    socket.on('error', onError);
    let decision = REFUSE;
    if (isWebSocketUpgrade(req)) {
      try {
        decision = await this.init.route(req);
      } catch (err) {
        this.logger.warn({ err, path: requestPath(req) }, 'route failed; answering with the decoy');
      }
    }
    if (socket.destroyed) return;
    if (!decision.accept) {
      this.logger.debug({ path: requestPath(req), method: req.method }, 'decoy upgrade');
      return this.decoyOnSocket(req, socket, head);
    }
    const meta = { path: requestPath(req), ...decision.meta };
    // Addresses are read now: they vanish once the socket is destroyed.
    const remote = formatEndpoint({ host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 });
    const local = formatEndpoint({ host: socket.localAddress ?? '?', port: socket.localPort ?? 0 });
    socket.off('error', onError); // the stream installs its own
    if (!socket.writable) return void socket.destroy();
    // As nginx in front of a WebSocket app answers: its Server and Date first.
    socket.write(
      [
        'HTTP/1.1 101 Switching Protocols',
        `Server: ${this.serverName}`,
        `Date: ${new Date().toUTCString()}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Accept: ${acceptKey(req.headers['sec-websocket-key'] as string)}`,
        ...(decision.protocol === undefined ? [] : [`Sec-WebSocket-Protocol: ${decision.protocol}`]),
        '\r\n',
      ].join('\r\n'),
    );
    if (decision.takeover !== undefined) return decision.takeover(socket, head);
    const stream = new WsStream(socket, { role: 'server', head, maxPayloadBytes: this.init.maxPayloadBytes ?? DEFAULT_WS_MAX_PAYLOAD }, this.init.stream);
    const gate = this.gate;
    onConn({ stream, remote, local, meta, authenticated: () => gate?.release(socket) });
  }

  /**
   * Runs the decoy on a socket Node already detached as an upgrade: a
   * ServerResponse is bound to it by hand. nginx keeps such a connection
   * alive (an Upgrade header means nothing to a static location), so after
   * the answer the socket goes back to the HTTP server for its next request,
   * under the same keep-alive timeout and the same pre-auth count. A request
   * with a body (which Node did not read) still closes, as does one asking
   * for `Connection: close` or an HTTP/1.0 one.
   */
  private decoyOnSocket(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const res = new http.ServerResponse(req);
    const body = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const keepAlive = !body && req.httpVersion === '1.1' && !/\bclose\b/i.test(String(req.headers.connection ?? ''));
    res.shouldKeepAlive = keepAlive;
    res.assignSocket(socket);
    res.once('finish', () => {
      res.detachSocket(socket);
      if (!keepAlive || socket.destroyed || !this.server) return void socket.end();
      if (head.length > 0) socket.unshift(head);
      // http's connection listener runs on 'connection' (ws://) or
      // 'secureConnection' (wss://, given the TLS socket); the gate listens
      // on the raw 'connection' only where the raw socket is not this one.
      if (!this.handedBack.has(socket)) {
        this.handedBack.add(socket);
        socket.once('close', () => this.handedBack.delete(socket));
      }
      this.server.emit(this.init.tls ? 'secureConnection' : 'connection', socket);
      // Idle from now on, as after any keep-alive answer (Node arms this
      // only for responses it wrote itself).
      socket.setTimeout(this.server.keepAliveTimeout);
    });
    res.once('close', () => {
      if (!res.writableFinished) socket.destroy();
    });
    this.answer(req, res);
  }
}
