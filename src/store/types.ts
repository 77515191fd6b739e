/**
 * The user store seam: one interface, two backends (SQLite for one server,
 * PostgreSQL shared by a fleet). Everything is async because PostgreSQL is.
 *
 * A user is identified on the wire by an X25519 static public key. Either the
 * key pair belongs to the user directly (kind 'key'), or the user holds a
 * token from which the pair is derived with `keyPairFromToken` (kind 'token').
 *
 * The secret (private key or token) is stored IN CLEAR, in the column
 * `secret_plaintext`, because the server re-issues links and configs that
 * embed it. Whoever reads the database can impersonate every user: keep the
 * SQLite file 0600 and the PostgreSQL role private. List and lookup functions
 * return the secret only when asked with `withSecret`.
 *
 * Why not a hash: authentication never reads the secret (the handshake
 * checks the static public key, which for a token user is derived from the
 * token), so a hash would cost nothing there; but `polytun link` and
 * `GET /api/users/:id/links` must re-issue links of existing users, and a
 * link carries the private key or token itself. A user who should not be
 * re-issued is created from its public key alone (`publicKey` /
 * `polytun user add --public-key`): then the store holds no secret at all.
 * What protects the column is the file mode (users.db 0600, taken back when
 * looser; data dir 0700) and the database role.
 */
import { PolytunError } from '../core/errors.js';
import type { HistoryStore } from './history-types.js';

/** How a user proves who it is. */
export type UserKind = 'key' | 'token';

/** Per-user destination policy overrides (same entry syntax as the server's DestinationPolicy). */
export interface UserPolicy {
  /** Extra allow entries (`CIDR | IP | HOST | *.suffix | *` with optional `:PORTS`). */
  readonly allow?: readonly string[];
  /** Extra deny entries. */
  readonly deny?: readonly string[];
}

/** One user as the store returns it. Times are milliseconds since the epoch. */
export interface User {
  /** Time-ordered UUID (v7 layout): sorting by id is sorting by creation. */
  readonly id: string;
  /** Unique display and lookup name. */
  readonly name: string;
  readonly kind: UserKind;
  /** 32-byte X25519 static public key, unique. */
  readonly publicKey: Buffer;
  /** URL path that selects this user on a shared WSS port (`/u/7f3a…`), unique; null when unused. */
  readonly wssPath: string | null;
  /** Fixed destination `host:port` (mtt's dst); null to let the client choose. */
  readonly dst: string | null;
  /** Destination policy overrides. */
  readonly policy: UserPolicy;
  /** Traffic quota (up + down) in bytes; null for unlimited. */
  readonly quotaBytes: number | null;
  /** When the user stops being accepted; null for never. */
  readonly expiresAt: number | null;
  readonly enabled: boolean;
  /**
   * mtt compatibility mode: stock mos-tls-tunnel mtt-clients reach `dst`
   * through `wssPath` with no polytun handshake — the path is the only
   * secret. Needs a wssPath and a dst to take effect.
   */
  readonly mtt: boolean;
  /**
   * The highest `fixed:RATE` (bytes per second) this user's udp clients may
   * make the server send at; null: only the server's `udp.maxRate` caps it.
   */
  readonly udpMaxRate: number | null;
  readonly createdAt: number;
  /** Last change of anything but the traffic counters. */
  readonly updatedAt: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  /**
   * Present only when asked (`withSecret`, and on the result of createUser):
   * base64url private key (kind 'key'), the token (kind 'token'), or null
   * when only the public key is known (the client kept its private key).
   */
  readonly secret?: string | null;
}

/** The credential of a new or re-keyed user. Missing secrets are generated. */
export type CredentialInput =
  | {
      readonly kind: 'key';
      /** 32-byte private key; generated when neither key is given. */
      readonly privateKey?: Buffer;
      /** 32-byte public key alone: the client keeps its private key, the store keeps no secret. */
      readonly publicKey?: Buffer;
    }
  | {
      readonly kind: 'token';
      /** The token; a 256-bit random one is generated when absent. */
      readonly token?: string;
    };

/** Input of {@link UserStore.createUser}. */
export interface NewUser {
  readonly name: string;
  /** @default { kind: 'key' } (a fresh key pair) */
  readonly credential?: CredentialInput;
  /** @default null */
  readonly wssPath?: string | null;
  /** @default null */
  readonly dst?: string | null;
  /** @default {} */
  readonly policy?: UserPolicy;
  /** @default null (unlimited) */
  readonly quotaBytes?: number | null;
  /** @default null (never) */
  readonly expiresAt?: number | null;
  /** @default true */
  readonly enabled?: boolean;
  /** @default false */
  readonly mtt?: boolean;
  /** Bytes per second; @default null (the server's udp.maxRate alone) */
  readonly udpMaxRate?: number | null;
}

/** Input of {@link UserStore.updateUser}: only the fields present change. A `credential` replaces the key or token (re-keys the user). */
export type UserPatch = Partial<NewUser> & {
  /** Sets bytesUp and bytesDown back to 0. */
  readonly resetTraffic?: boolean;
};

/** Options of lookups. */
export interface ReadOptions {
  /** Include `secret`. @default false */
  readonly withSecret?: boolean;
}

/** Options of {@link UserStore.listUsers}. Users come in id (= creation) order. */
export interface ListOptions extends ReadOptions {
  /** @default 100, at most 10000 */
  readonly limit?: number;
  /** @default 0 */
  readonly offset?: number;
  /** Keyset paging: only users whose id sorts after this one (stable under concurrent deletes). */
  readonly afterId?: string;
}

/** One traffic increment. */
export interface TrafficEntry {
  readonly userId: string;
  readonly up: number;
  readonly down: number;
}

/**
 * A change notification. `resync` means notifications may have been missed
 * (the PostgreSQL listener reconnected): reload everything.
 */
export type StoreChange =
  | { readonly op: 'insert' | 'update' | 'delete'; readonly userId: string }
  | { readonly op: 'resync' };

/** The user store. All methods reject with {@link StoreError} (or ClosedError after close). */
export interface UserStore {
  /** Which backend this is. */
  readonly backend: 'sqlite' | 'postgres';
  /** Creates a user, generating its key or token when not given. The result carries `secret`. */
  createUser(input: NewUser): Promise<User>;
  /** By id, else by name; undefined when neither matches. */
  getUser(idOrName: string, opts?: ReadOptions): Promise<User | undefined>;
  findByPublicKey(publicKey: Buffer, opts?: ReadOptions): Promise<User | undefined>;
  findByPath(wssPath: string, opts?: ReadOptions): Promise<User | undefined>;
  listUsers(opts?: ListOptions): Promise<User[]>;
  /** Applies `patch`; rejects with ERR_STORE_NOT_FOUND when the id is unknown. */
  updateUser(id: string, patch: UserPatch): Promise<User>;
  /** True when a user was deleted. */
  deleteUser(id: string): Promise<boolean>;
  /**
   * Adds traffic in one transaction (entries for the same user are summed;
   * unknown users are ignored). Counters alone do not notify, except an
   * 'update' for each user whose total crosses its quota in this batch, so
   * caches learn that the user must now be refused.
   */
  addTraffic(entries: readonly TrafficEntry[]): Promise<void>;
  /** Deletes every user (mtt 'reset'); notifies a 'delete' per user. Returns how many. */
  resetAll(): Promise<number>;
  count(): Promise<number>;
  /**
   * Subscribes to changes made through this store or, for PostgreSQL, by any
   * process on the same database. Returns the unsubscribe function. A
   * listener that throws is logged and does not affect the write.
   */
  onChange(listener: (change: StoreChange) => void): () => void;
  /**
   * The traffic history in the same database (history-types.ts); absent on
   * stores that keep none. Closed with the store.
   */
  readonly history?: HistoryStore;
  /** Releases the database. Idempotent. */
  close(): Promise<void>;
}

/** Stable codes of store failures. */
export type StoreErrorCode = 'ERR_STORE_CONFLICT' | 'ERR_STORE_NOT_FOUND' | 'ERR_STORE_INVALID' | 'ERR_STORE_BACKEND';

/** Fields a store error can name. */
export type StoreField = 'id' | 'name' | 'publicKey' | 'wssPath' | 'credential' | 'dst' | 'policy' | 'quotaBytes' | 'expiresAt' | 'enabled' | 'mtt' | 'udpMaxRate' | 'traffic' | 'list' | 'url';

/**
 * A store operation failed. `field` names the offending field: for
 * ERR_STORE_CONFLICT the unique field another user already holds.
 */
export class StoreError extends PolytunError {
  declare readonly code: StoreErrorCode;
  readonly field: StoreField | undefined;
  constructor(code: StoreErrorCode, field: StoreField | undefined, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.field = field;
  }
}
