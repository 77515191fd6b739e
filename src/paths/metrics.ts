/**
 * A supervisor's metrics: read from its status and its current session's
 * stats when collected (nothing per frame); the reconnect delays observed as
 * they are chosen (a rare event).
 */
import type { Metrics } from '../core/metrics.js';
import type { PathSupervisor } from './supervisor.js';

export function registerSupervisorMetrics(sup: PathSupervisor, metrics: Metrics): void {
  metrics.registerCounter('polytun_client_resumes_total', { help: 'Sessions resumed after a connection loss (open streams survived)', collect: () => sup.status().resumes });
  metrics.registerCounter('polytun_client_new_sessions_total', { help: 'New sessions after the first (the old one lost for good, or another server took over)', collect: () => Math.max(0, sup.status().newSessions) });
  metrics.registerGauge('polytun_client_server_index', { help: 'Index of the server in use (0 = master)', collect: () => sup.status().serverIndex });
  metrics.registerGauge('polytun_client_session_age_seconds', { help: 'Age of the current session', collect: () => (Date.now() - sup.status().since.getTime()) / 1000 });
  metrics.registerGauge('polytun_client_session_open', { help: '1 while the session is open (0: connecting, detached or being replaced)', collect: () => (sup.session?.state === 'open' ? 1 : 0) });
  metrics.registerGauge('polytun_client_streams', { help: 'Open streams', collect: () => sup.session?.stats.streams ?? 0 });
  metrics.registerCounter('polytun_client_session_sent_bytes_total', { help: 'Stream bytes sent in the current session (resets with a new session)', collect: () => sup.session?.stats.bytesSent ?? 0 });
  metrics.registerCounter('polytun_client_session_received_bytes_total', { help: 'Stream bytes received in the current session (resets with a new session)', collect: () => sup.session?.stats.bytesReceived ?? 0 });
  const delays = metrics.registerHistogram('polytun_client_reconnect_delay_seconds', { help: 'Delays chosen before trying to open a new session again', buckets: [0.5, 1, 2, 4, 8, 16] });
  sup.on('reconnecting', (ms) => delays.observe(ms / 1000));
}
