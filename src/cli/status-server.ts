/**
 * The client's local status endpoint: `GET /status` answers the JSON of
 * `getStatus()`; every other request is 404. It binds loopback only unless
 * told otherwise, and it refuses requests whose Host header is not a
 * loopback name, so a web page cannot read it through DNS rebinding (a
 * hostile site's name re-pointed at 127.0.0.1 would send `Host: evil.example`).
 * No CORS headers are ever sent.
 */
import type { Logger } from '../core/logger.js';
import { formatHostPort } from '../core/address.js';
import type { HostPort } from '../config/values.js';
import type { StatusReport } from '../observe/status.js';
import { startLocalEndpoint, type LocalEndpoint } from './local-endpoint.js';

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
export type StatusServer = LocalEndpoint;

/**
 * Starts the status endpoint.
 * @throws ConfigError for a non-loopback address without `allowNonLoopback`, or when it cannot bind.
 */
export async function startStatusServer(init: StatusServerInit): Promise<StatusServer> {
  return startLocalEndpoint({
    what: 'status',
    where: `status ${formatHostPort(init.listen)}`,
    listen: init.listen,
    path: '/status',
    body: async () => ({ body: `${JSON.stringify(await init.getStatus())}\n`, contentType: 'application/json' }),
    ...(init.allowNonLoopback !== undefined ? { allowRemote: init.allowNonLoopback } : {}),
    refusal: '',
    ...(init.logger !== undefined ? { logger: init.logger } : {}),
  });
}
