/**
 * The dashboard of a running client (`--ui HOST:PORT`, or the `polytun ui`
 * that started this client in-process): the tunnel's view is made before
 * the first session (so its event log sees it connect), the per-path
 * history file opened, and the API started with the other local listeners
 * (a busy port is one line naming --ui, like --socks).
 */
import { formatHostPort } from '../core/address.js';
import { toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { UdpTraffic } from '../client/udp-flows.js';
import type { ClientConfig } from '../config/schema.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import { defaultHistoryFile, openPathHistory, type PathHistoryFile } from '../ui/history-file.js';
import { readUiPassword, startUi, type UiServer } from '../ui/start.js';
import { clientTunnelView, type ClientTunnelView } from '../ui/tunnel-view.js';
import type { FrontReport, TunnelView } from '../ui/types.js';
import { defaultClientConfigFile } from '../ui/wizard.js';
import { listenOrExplain } from './listen-errors.js';

/** What the client hands its dashboard. */
export interface ClientUiSources {
  supervisor: PathSupervisor;
  servers: readonly string[];
  udp: () => UdpTraffic;
  fronts: () => FrontReport[];
  configFile: string | undefined;
  logger: Logger;
  /** A dashboard already running in this process: show the tunnel there instead. */
  attach?: (view: TunnelView) => () => void;
}

/** The client's dashboard: started with the other listeners, closed with the client. */
export interface ClientUi {
  /** Starts the API when `ui.listen` is set (and no dashboard was attached to). */
  listen(): Promise<UiServer | undefined>;
  close(): Promise<void>;
}

/** Opens the history (a failure is a warning: the dashboard works without graphs). */
function openHistory(cfg: ClientConfig, log: Logger): PathHistoryFile | undefined {
  if (cfg.ui.history === false) return undefined;
  const file = cfg.ui.history ?? defaultHistoryFile();
  try {
    return openPathHistory(file, { logger: log });
  } catch (err) {
    log.warn({ file, err: toError(err).message }, 'traffic history off: cannot open its file; set ui.history to a writable file (or false to keep none)');
    return undefined;
  }
}

/** See the file comment. Nothing is made when neither --ui nor an attaching dashboard asks for it. */
export async function startClientUi(cfg: ClientConfig, src: ClientUiSources): Promise<ClientUi> {
  const wanted = src.attach !== undefined || cfg.ui.listen !== undefined;
  if (!wanted) return { listen: async () => undefined, close: async () => undefined };
  const log = src.logger;
  // Read before anything listens: a missing password file is the user's to fix, reported alone.
  const password = src.attach === undefined ? await readUiPassword(cfg.ui) : undefined;
  const history = openHistory(cfg, log);
  const view: ClientTunnelView = clientTunnelView({
    supervisor: src.supervisor,
    servers: src.servers,
    carrier: cfg.link.carrier,
    udp: src.udp,
    fronts: src.fronts,
    history: history?.history,
    configFile: src.configFile,
  });
  const detach = src.attach?.(view);
  let server: UiServer | undefined;
  return {
    async listen() {
      const listen = cfg.ui.listen;
      if (listen === undefined || src.attach !== undefined) return undefined;
      const where = `--ui ${formatHostPort(listen)}`;
      server = await listenOrExplain(where, () =>
        startUi({
          listen,
          where,
          password,
          tunnel: () => view,
          ...(cfg.ui.wizard ? { wizard: { configFile: src.configFile ?? defaultClientConfigFile(), running: () => true } } : {}),
          logger: log,
        }),
      );
      return server;
    },
    async close() {
      detach?.();
      await server?.close();
      view.close();
      await history?.close();
    },
  };
}
