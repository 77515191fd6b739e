/**
 * The session server's metrics: handshake outcomes and pre-auth drops by
 * reason, and its sessions' stats summed (live sessions' read when
 * collected, closed ones' kept as they ended, so the sums never go back).
 * Nothing here runs per frame: collection walks the session table.
 */
import type { Metrics } from '../core/metrics.js';
import type { Session } from '../session/session.js';

/** What a closed session leaves in the server-wide sums. */
export interface EndedTotals {
  bytesSent: number;
  bytesReceived: number;
  framesResent: number;
  datagramsDropped: number;
}

export function newEndedTotals(): EndedTotals {
  return { bytesSent: 0, bytesReceived: 0, framesResent: 0, datagramsDropped: 0 };
}

/** Adds a session's final stats to `t` (at its 'closed'). */
export function addEnded(t: EndedTotals, s: Session): void {
  const st = s.stats;
  t.bytesSent += st.bytesSent;
  t.bytesReceived += st.bytesReceived;
  t.framesResent += st.framesResent;
  t.datagramsDropped += st.datagramsDropped;
}

/** What the metrics are read from (the SessionServer's fields). */
export interface ServerMetricSources {
  counters: Readonly<Record<string, number>>;
  /** Silent handshake drops by reason (probe: timeout, closed-early, unauthenticated; clock-skew; replay). */
  drops: Readonly<Record<string, number>>;
  ended: Readonly<EndedTotals>;
  sessions: () => Iterable<{ session: Session }>;
  size: () => number;
  pending: () => number;
}

interface LiveTotals extends EndedTotals {
  streams: number;
  unackedBytes: number;
  paths: number;
  detached: number;
}

function liveTotals(src: ServerMetricSources): LiveTotals {
  const t: LiveTotals = { ...src.ended, streams: 0, unackedBytes: 0, paths: 0, detached: 0 };
  for (const { session } of src.sessions()) {
    if (session.state === 'closed') continue; // already in `ended`
    addEnded(t, session);
    const st = session.stats;
    t.streams += st.streams;
    t.unackedBytes += st.unackedBytes;
    t.paths += session.pathCount;
    if (st.state === 'detached') t.detached++;
  }
  return t;
}

export function registerServerMetrics(m: Metrics, src: ServerMetricSources): void {
  m.registerCounterGroup('polytun_server_handshakes_total', { help: 'Carrier connections by outcome (accepted, resumed, rejected, dropped, overload)', label: 'result', collect: () => src.counters });
  m.registerCounterGroup('polytun_server_handshake_drops_total', { help: 'Handshakes dropped without an answer, by reason (timeout, closed-early, unauthenticated: probes; clock-skew; replay)', label: 'reason', collect: () => src.drops });
  m.registerGauge('polytun_server_sessions', { help: 'Live sessions', collect: src.size });
  m.registerGauge('polytun_server_pending_handshakes', { help: 'Handshakes in progress', collect: src.pending });
  m.registerGauge('polytun_server_detached_sessions', { help: 'Live sessions without a carrier, waiting to be resumed', collect: () => liveTotals(src).detached });
  m.registerGauge('polytun_server_streams', { help: 'Open streams over all sessions', collect: () => liveTotals(src).streams });
  m.registerGauge('polytun_server_paths', { help: 'Live paths (carrier connections) over all sessions', collect: () => liveTotals(src).paths });
  m.registerGauge('polytun_server_unacked_bytes', { help: 'Bytes sent and not yet acknowledged, over all sessions', collect: () => liveTotals(src).unackedBytes });
  m.registerCounterGroup('polytun_server_session_bytes_total', {
    help: 'Session bytes over all sessions, closed ones included (sent: to clients, received: from clients)',
    label: 'direction',
    collect: () => {
      const t = liveTotals(src);
      return { sent: t.bytesSent, received: t.bytesReceived };
    },
  });
  m.registerCounter('polytun_server_session_frames_resent_total', { help: 'Sequenced frames sent again (a path lost, a resume), over all sessions', collect: () => liveTotals(src).framesResent });
  m.registerCounter('polytun_server_session_datagrams_dropped_total', { help: 'Datagrams the sessions dropped on send (no path, too large, queue full), over all sessions', collect: () => liveTotals(src).datagramsDropped });
}
