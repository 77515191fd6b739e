/**
 * The seam between the management APIs (admin REST, mtt controller,
 * provisioning) and the running gateway. The APIs change users through the
 * user store (the gateway follows it live); everything that only the running
 * server knows — its sessions, its status, where clients reach it — comes
 * through {@link GatewayView}, which the server implements.
 */
import { PolytunError } from '../core/errors.js';
import type { LinkCarrier } from '../config/link.js';
import type { LinkEndpoint } from '../config/links.js';
import type { GatewaySession } from '../server/gateway.js';
import type { GatewayStatus as ObservedGatewayStatus } from '../observe/status.js';

/** One carrier connection of a live session. */
export interface SessionPathInfo {
  /** tcp, tls, ws, wss, udp… */
  readonly carrier: string;
  /** The client's address on this path (`ip:port`). */
  readonly remote: string;
  /** Scheduler role (active, backup…). */
  readonly role: string;
  /** 'joining' or 'up'. */
  readonly state: string;
  /** Smoothed round-trip time; null before the first measurement. */
  readonly rttMs: number | null;
  /** The path's estimated delivery rate, bytes per second (0 before an estimate). */
  readonly rateBytesPerSec: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/**
 * One live session, as the APIs show it: what the gateway reports, plus its
 * paths when the running server can tell (a test's fake need not).
 */
export type SessionInfo = GatewaySession & {
  /** The carrier of the session's first path. */
  readonly carrier?: string;
  readonly pathList?: readonly SessionPathInfo[];
};

/** One listener of the running gateway. */
export interface ListenerInfo {
  readonly carrier: LinkCarrier;
  /** Bound address and port (the real port when 0 was asked). */
  readonly address: string;
  readonly port: number;
}

/** What `GET /api/status` reports about the running gateway (the model is observe/status.ts). */
export type GatewayStatus = ObservedGatewayStatus<ListenerInfo>;

/**
 * One way clients reach the gateway: what a link and a client config need
 * (the links module's LinkEndpoint). For ws/wss the user's own `wssPath`
 * replaces `path` when the user has one.
 */
export type GatewayEndpoint = LinkEndpoint;

/**
 * The running gateway as the management APIs see it. Implemented by the
 * server (over SessionServer.sessions and its listeners); tests pass a fake.
 * Every method is synchronous: it reads or acts on in-memory state only.
 */
export interface GatewayView {
  /** The live sessions. */
  sessions(): readonly SessionInfo[];
  /**
   * Closes one session now (`session.close(code, reason)`).
   * @returns false when no session has this id.
   */
  kickSession(id: string, reason: string): boolean;
  /**
   * Closes every live session of the store user `userId`.
   * @returns how many sessions were closed.
   */
  kickUser(userId: string, reason: string): number;
  /** The gateway's status. */
  status(): GatewayStatus;
  /** The server's static public key, base64url (32 bytes; the `pk` of links). */
  serverPublicKey(): string;
  /** Where clients reach the gateway, in the order links should be offered. */
  endpoints(): readonly GatewayEndpoint[];
}

/** Stable codes of management API input failures. */
export type AdminErrorCode = 'ERR_ADMIN_INVALID';

/**
 * A request to a management API is malformed. `field` names the offending
 * input (`body.quotaBytes`, `querystring.limit`, `args_bunch[2].dst`).
 */
export class AdminInputError extends PolytunError {
  declare readonly code: AdminErrorCode;
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_ADMIN_INVALID', `${field}: ${message}`);
    this.field = field;
  }
}
