/**
 * A running client as the dashboard sees it (types.ts TunnelView): its
 * status snapshot, fronts, recent events, and per-path history, built from
 * the pieces run-client already has. Owns the event log and the history
 * recorder it starts; close() stops them (the history file is closed by
 * its opener).
 */
import type { UdpTraffic } from '../client/udp-flows.js';
import { clientStatus } from '../observe/status.js';
import type { PathSupervisor } from '../paths/supervisor.js';
import type { TrafficHistory } from '../store/history.js';
import { PathTrafficRecorder, pathSeriesId } from './path-traffic.js';
import { SessionEventLog } from './session-events.js';
import type { FrontReport, TunnelView } from './types.js';

/** What {@link clientTunnelView} is built from. */
export interface ClientTunnelSources {
  readonly supervisor: PathSupervisor;
  /** host:port of each server, in the supervisor's order. */
  readonly servers: readonly string[];
  /** The link's carrier. */
  readonly carrier: string;
  /** UDP relayed by the proxy client (read on each snapshot). */
  readonly udp: () => UdpTraffic;
  /** The fronts now, with counters where they keep some. */
  readonly fronts: () => FrontReport[];
  /** Per-path history; undefined = none kept. */
  readonly history: TrafficHistory | undefined;
  readonly configFile: string | undefined;
}

/** A TunnelView that also has to be closed. */
export interface ClientTunnelView extends TunnelView {
  close(): void;
}

/** See the file comment. */
export function clientTunnelView(src: ClientTunnelSources): ClientTunnelView {
  const log = new SessionEventLog({ supervisor: src.supervisor, servers: src.servers });
  const recorder = src.history === undefined ? undefined : new PathTrafficRecorder({ supervisor: src.supervisor, history: src.history });
  return {
    status: () => clientStatus({ supervisor: src.supervisor, servers: src.servers, carrier: src.carrier, udp: src.udp(), fronts: src.fronts() }),
    fronts: src.fronts,
    events: () => log.list(),
    pathIds: () => {
      const live = (src.supervisor.session?.stats.paths ?? []).map(pathSeriesId);
      return [...new Set([...(recorder?.pathIds() ?? []), ...live])].sort();
    },
    history: src.history,
    configFile: src.configFile,
    close: () => recorder?.close(),
  };
}
