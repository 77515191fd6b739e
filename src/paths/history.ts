/**
 * What a supervisor has been through, for status reports: when the current
 * session started, how often it was resumed or replaced, the last error.
 * Fed by the supervisor's own events, so every kind of supervisor counts the
 * same way. It also logs the one line a user needs when the server itself
 * closes the session for a reason the supervisor does not already report.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../core/logger.js';
import { CloseCode, SessionClosedError, type Session } from '../session/session.js';
import { refusalOf } from './refusal.js';
import type { SupervisorStatus } from './supervisor.js';

export class SessionHistory {
  private since = new Date();
  private resumes = 0;
  /** -1 before the first session: the first is not a reconnect. */
  private newSessions = -1;
  private lastError: string | undefined;

  constructor(supervisor: EventEmitter, log: Logger) {
    supervisor.on('session', (s: Session) => {
      this.since = new Date();
      this.newSessions++;
      // The server's reason (kicked, traffic quota, expired…) is what the user needs to see.
      s.once('closed', (err: Error) => {
        if (!(err instanceof SessionClosedError) || err.by !== 'remote') return;
        this.lastError = err.message;
        // Idle and shutdown closes are renewed, and refusals (kicked, quota, expiry) logged, by the session client.
        if (err.closeCode === CloseCode.idle || err.closeCode === CloseCode.shutdown || refusalOf(err) !== undefined) return;
        log.warn({ reason: err.message }, 'the server closed the session');
      });
    });
    supervisor.on('detached', (err?: Error) => (this.lastError = err?.message ?? 'connection lost'));
    supervisor.on('resumed', () => this.resumes++);
    supervisor.on('reconnecting', (_delayMs: number, err: Error) => (this.lastError = err.message));
    supervisor.on('refused', (err: Error) => (this.lastError = err.message));
  }

  status(serverIndex: number): SupervisorStatus {
    return { serverIndex, since: this.since, resumes: this.resumes, newSessions: this.newSessions, lastError: this.lastError };
  }
}
