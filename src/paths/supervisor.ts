/**
 * The one interface the apps (proxy client, VPN, CLI) see of whatever keeps
 * their session up: a single server ({@link SessionClient}), master/backup
 * servers ({@link FailoverClient}), later ordered profiles. They ask it for
 * the current session, listen to its typed events, and read its status; they
 * never ask which kind it is.
 *
 * Events, in the order a user sees them:
 *
 *   session ─▶ detached ─▶ resumed                        (paths back within the grace period)
 *                      └─▶ sessionClosed ─▶ reconnecting* ─▶ session + renewed   (a new session)
 *   refused (the server will not have us; retried slowly or not at all) · gaveUp (--retry N used up)
 *   server (another server of the list is now in use)
 */
import type { Session } from '../session/session.js';
import type { UnreachableError } from './backoff.js';
import type { RefusedError } from './refusal.js';
import type { RecordCipher } from '../secure/cipher.js';

/** Event name → listener arguments. */
export interface SupervisorEvents {
  /** A session to use now: the first, a replacement, or one on another server. */
  session: [session: Session];
  /** The session lost its last path (it waits graceMs to be resumed). */
  detached: [err: Error | undefined];
  /** A path came back in time: the session and its open streams go on. */
  resumed: [session: Session];
  /** A new session replaced one that was lost for good (after 'session'). */
  renewed: [session: Session];
  /** A session of ours ended (the supervisor then opens another unless closed or refused). */
  sessionClosed: [session: Session, err: Error];
  /** Opening a new session failed; the next try is in `delayMs`. */
  reconnecting: [delayMs: number, err: Error];
  /** The server refused us; tried again in `retryInMs`, or never (null). */
  refused: [err: RefusedError, retryInMs: number | null];
  /** `--retry N` used up: the supervisor stopped trying. */
  gaveUp: [err: UnreachableError];
  /** The server at this index of the list is now in use (0 = master). */
  server: [index: number];
}

/** Counters and state for status reports (see history.ts). */
export interface SupervisorStatus {
  /** Index of the server in use (0 = master, or the only one). */
  serverIndex: number;
  /** When the current session was handed over (or the supervisor created, before the first). */
  since: Date;
  /** Sessions resumed after a connection loss (open streams survived). */
  resumes: number;
  /** New sessions after the first (-1 before the first): the old one was lost for good, or another server took over. */
  newSessions: number;
  /** The last error, a short message. */
  lastError: string | undefined;
  /** The record cipher the newest path negotiated; absent before the first, and when its records ride TLS-bound. */
  cipher?: RecordCipher;
}

type Listener<K extends keyof SupervisorEvents> = (...args: SupervisorEvents[K]) => void;

/** Keeps a session's paths up. */
export interface PathSupervisor {
  /** The session new work should use; undefined before connect(). */
  readonly session: Session | undefined;
  /** True while the session is gone for good and a new one is being opened. */
  readonly reconnecting: boolean;
  /** Opens the first session; fails fast (a refusal too). See connectPersistently() for the patient start. */
  connect(signal?: AbortSignal): Promise<Session>;
  /** Counters and state for status reports. */
  status(): SupervisorStatus;
  /** Closes the session and stops reconnecting. Idempotent. */
  close(code?: number, reason?: string): void;
  on<K extends keyof SupervisorEvents>(event: K, listener: Listener<K>): this;
  once<K extends keyof SupervisorEvents>(event: K, listener: Listener<K>): this;
  off<K extends keyof SupervisorEvents>(event: K, listener: Listener<K>): this;
  prependListener<K extends keyof SupervisorEvents>(event: K, listener: Listener<K>): this;
}
