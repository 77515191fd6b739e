/**
 * The client's local status endpoint: `GET /status` answers the JSON of
 * `getStatus()`; every other request is 404. It binds loopback only unless
 * told otherwise, and it refuses requests whose Host header is not a
 * loopback name, so a web page cannot read it through DNS rebinding (a
 * hostile site's name re-pointed at 127.0.0.1 would send `Host: evil.example`).
 * No CORS headers are ever sent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { formatHostPort } from '../core/address.js';
import { isLoopbackHost, type HostPort } from '../config/values.js';
import type { StatusReport } from '../observe/status.js';

export type { StatusReport } from '../observe/status.js';

/** Options of {@link startStatusServer}. */
export interface StatusServerInit {
  /** Where to listen; port 0 picks a free one (see `address`). */
  listen: HostPort;
  /** Produces the current status; called once per request. */
  getStatus: () => StatusReport | object | Promise<StatusReport | object>;
  /** Allow a non-loopback listen address. @default false */
  allowNonLoopback?: boolean;
  /** @default nullLogger */
  logger?: Logger;
}

/** A running status endpoint. */
export interface StatusServer {
  /** The bound address (the real port when `listen.port` was 0). */
  readonly address: HostPort;
  /** Stops listening and closes open connections. Idempotent. */
  close(): Promise<void>;
}

/** The host part of a Host header (`[::1]:8080` → `::1`). */
export function hostOfHeader(h: string | undefined): string | undefined {
  if (h === undefined) return undefined;
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

function send(res: ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

/**
 * Starts the status endpoint.
 * @throws ConfigError for a non-loopback address without `allowNonLoopback`, or when it cannot bind.
 */
export async function startStatusServer(init: StatusServerInit): Promise<StatusServer> {
  const log = init.logger ?? nullLogger;
  const { host, port } = init.listen;
  const where = `status ${formatHostPort(init.listen)}`;
  if (!init.allowNonLoopback && !isLoopbackHost(host)) throw new ConfigError(where, 'the status endpoint listens on loopback only');

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const h = hostOfHeader(req.headers.host);
    if (!init.allowNonLoopback && (h === undefined || !isLoopbackHost(h))) return send(res, 403, 'forbidden host\n');
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/status') return send(res, 404, 'not found\n');
    const status = await init.getStatus();
    send(res, 200, `${JSON.stringify(status)}\n`, 'application/json');
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err: toError(err) }, 'status endpoint: getStatus failed');
      if (!res.headersSent) send(res, 500, 'status unavailable\n');
      else res.destroy();
    });
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    // The caller names the flag (run-client.ts, listen-errors.ts); EADDRINUSE & co. keep their code for it.
    const onError = (err: Error): void => reject(Object.assign(new ConfigError(where, `cannot listen: ${err.message}`), { errno: (err as NodeJS.ErrnoException).code }));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.warn({ err }, 'status endpoint error'));
  const addr = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    address: { host: addr.address, port: addr.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
