/**
 * A small read-only HTTP endpoint on this machine (the client's `/status`,
 * `--metrics`'s `/metrics`): one path, GET (and HEAD when asked), 404 for
 * the rest. It binds loopback only unless told otherwise, and on loopback it
 * refuses requests whose Host header is not a loopback name, so a web page
 * cannot read it through DNS rebinding (a hostile site's name re-pointed at
 * 127.0.0.1 would send `Host: evil.example`). No CORS headers are ever sent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { isLoopbackHost, type HostPort } from '../config/values.js';

/** Options of {@link startLocalEndpoint}. */
export interface LocalEndpointInit {
  /** What it serves, for errors and logs: 'status', 'metrics'. */
  what: string;
  /** The flag or key a listen error names, e.g. `--metrics 127.0.0.1:9464`. */
  where: string;
  /** Where to listen; port 0 picks a free one (see `address`). */
  listen: HostPort;
  /** The one path served, e.g. '/status'. */
  path: string;
  /** Also answer HEAD. @default false */
  head?: boolean;
  /** The answer to a GET, produced once per request. */
  body: () => Promise<{ body: string; contentType: string }>;
  /** Allow a non-loopback address (and any Host header). @default false */
  allowRemote?: boolean;
  /** Why a non-loopback address is refused, after "listens on loopback only". */
  refusal: string;
  /** @default nullLogger */
  logger?: Logger;
}

/** A running endpoint. */
export interface LocalEndpoint {
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

function send(res: ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8', head = false): void {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(head ? undefined : body);
}

/**
 * Starts the endpoint.
 * @throws ConfigError for a non-loopback address without `allowRemote`, or when it cannot bind (with the socket's errno, for listen-errors.ts).
 */
export async function startLocalEndpoint(init: LocalEndpointInit): Promise<LocalEndpoint> {
  const log = init.logger ?? nullLogger;
  const { host, port } = init.listen;
  if (!init.allowRemote && !isLoopbackHost(host)) throw new ConfigError(init.where, `the ${init.what} endpoint listens on loopback only${init.refusal}`);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const h = hostOfHeader(req.headers.host);
    if (!init.allowRemote && (h === undefined || !isLoopbackHost(h))) return send(res, 403, 'forbidden host\n');
    const path = (req.url ?? '').split('?')[0];
    const head = init.head === true && req.method === 'HEAD';
    if ((req.method !== 'GET' && !head) || path !== init.path) return send(res, 404, 'not found\n');
    const { body, contentType } = await init.body();
    send(res, 200, body, contentType, head);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err: toError(err) }, `${init.what} endpoint: producing the answer failed`);
      if (!res.headersSent) send(res, 500, `${init.what} unavailable\n`);
      else res.destroy();
    });
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    // The caller names the flag (listen-errors.ts); EADDRINUSE & co. keep their code for it.
    const onError = (err: Error): void => reject(Object.assign(new ConfigError(init.where, `cannot listen: ${err.message}`), { errno: (err as NodeJS.ErrnoException).code }));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.warn({ err }, `${init.what} endpoint error`));
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
