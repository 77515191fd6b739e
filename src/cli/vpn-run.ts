/**
 * Starts VPN mode from a validated config: what run-server.ts and
 * run-client.ts call (one line each), so that they stay free of VPN details.
 */
import { ClientVpn, type VpnSessionSource } from '../client/vpn.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { ClientConfig, ServerConfig } from '../config/schema.js';
import { ServerVpn, type SessionSource, type VpnPolicy } from '../server/vpn.js';

/**
 * Starts the server's VPN when `cfg.vpn` is set, and has it take part in
 * every session `server` admits (ahead of the proxy's handlers).
 */
export async function startServerVpnFor(
  cfg: ServerConfig,
  deps: { server: SessionSource; policy: VpnPolicy; logger: Logger; metrics?: Metrics },
): Promise<ServerVpn | undefined> {
  const v = cfg.vpn;
  if (v === undefined) return undefined;
  const vpn = await ServerVpn.start({
    pool: v.pool,
    dataDir: cfg.dataDir,
    tunName: v.tunName,
    mtu: v.mtu,
    nat: v.nat,
    clientToClient: v.clientToClient,
    pushRoutes: v.pushRoutes,
    pushDns: v.pushDns,
    policy: deps.policy,
    logger: deps.logger,
    ...(deps.metrics !== undefined ? { metrics: deps.metrics } : {}),
  });
  vpn.serve(deps.server);
  return vpn;
}

/**
 * Starts the client's VPN when `cfg.vpn` is set. Call right after connect()
 * and before anything else (ProxyClient) sets the session's handlers.
 */
export async function startClientVpnFor(cfg: ClientConfig, client: VpnSessionSource, logger: Logger, metrics?: Metrics): Promise<ClientVpn | undefined> {
  const v = cfg.vpn;
  if (v === undefined) return undefined;
  return ClientVpn.start({
    client,
    serverHosts: [cfg.link.host, ...cfg.backupServers.map((b) => b.host)],
    tunName: v.tunName,
    routes: v.routes,
    redirectGateway: v.redirectGateway,
    applyDns: v.applyDns,
    mssClamp: v.mssClamp,
    ...(v.stateDir !== undefined ? { stateDir: v.stateDir } : {}),
    resolvConf: v.resolvConf,
    logger,
    ...(metrics !== undefined ? { metrics } : {}),
  });
}
