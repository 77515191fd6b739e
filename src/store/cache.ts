/**
 * In-memory view of the user table for the handshake path: lookups by public
 * key and by WSS path are Map hits, never a database round trip.
 *
 * Loaded at start, kept current through the store's onChange: each change
 * re-reads that one user. Reads can resolve out of order, so every id carries
 * a generation number and only the answer to the newest request is applied.
 * A 'resync' (the PostgreSQL listener reconnected: notifications were lost)
 * reloads everything, keyset-paged so concurrent deletes cannot make it skip
 * a user; ids that change during a reload are re-read after it.
 *
 * Traffic counters in the cache are as of the user's last change: they are
 * refreshed when a batch makes a user cross its quota (the store notifies
 * exactly then), which is what refusal needs.
 *
 * Token users can also be found by the bearer value their clients send on a
 * WebSocket upgrade (`wsBearerFromToken`). Users are read with their secret
 * for that; the cache keeps only SHA-256 of each bearer value, never the
 * token, and the users it hands out carry no secret. A presented value is
 * hashed before the lookup, so the map's string compare runs on a digest
 * the caller cannot steer: no timing hint about a real bearer value.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import { nullLogger } from '../core/logger.js';
import { wsBearerFromToken } from '../secure/keys.js';
import type { StoreChange, User, UserStore } from './types.js';

/** Why a known user may not connect now. */
export type Refusal = 'disabled' | 'expired' | 'quota';

/** The reason `user` must be refused at `now`, or undefined when it may connect. */
export function userRefusal(user: User, now = Date.now()): Refusal | undefined {
  if (!user.enabled) return 'disabled';
  if (user.expiresAt !== null && now >= user.expiresAt) return 'expired';
  if (user.quotaBytes !== null && user.bytesUp + user.bytesDown >= user.quotaBytes) return 'quota';
  return undefined;
}

/** Options of {@link UserCache.open}. */
export interface UserCacheInit {
  readonly store: UserStore;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** Users per page when (re)loading. @default 1000 */
  readonly pageSize?: number;
  /** Delay before retrying a failed reload or re-read. @default 1000 */
  readonly retryMs?: number;
}

const keyOf = (publicKey: Buffer): string => publicKey.toString('hex');
const bearerDigest = (bearer: string): string => createHash('sha256').update(bearer, 'utf8').digest('hex');

/** The user without its secret, and the digest of its bearer value (token users whose token the store holds). */
function split(user: User): { user: User; bearer: string | undefined } {
  if (user.secret === undefined) return { user, bearer: undefined };
  const { secret, ...rest } = user;
  return { user: rest, bearer: user.kind === 'token' && typeof secret === 'string' && secret !== '' ? bearerDigest(wsBearerFromToken(secret)) : undefined };
}

/** The cache. Create with {@link UserCache.open}; it never closes the store. */
export class UserCache {
  private readonly byIdMap = new Map<string, User>();
  private readonly byKeyMap = new Map<string, User>();
  private readonly byPathMap = new Map<string, User>();
  private readonly byBearerMap = new Map<string, User>();
  /** id → digest under which the user sits in byBearerMap. */
  private readonly bearerOf = new Map<string, string>();
  private readonly gens = new Map<string, number>();
  private readonly listeners = new Set<(id: string, user: User | undefined) => void>();
  private readonly log: Logger;
  private readonly unsubscribe: () => void;
  private reloading: Promise<void> | undefined;
  private again = false;
  private dirty: Set<string> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(private readonly init: UserCacheInit) {
    this.log = init.logger ?? nullLogger;
    // Subscribe before the first load so nothing that happens during it is missed.
    this.unsubscribe = init.store.onChange((c) => this.changed(c));
  }

  /** Subscribes to the store and loads every user. Rejects if the first load fails. */
  static async open(init: UserCacheInit): Promise<UserCache> {
    const cache = new UserCache(init);
    try {
      await cache.reload();
    } catch (err) {
      cache.close();
      throw err;
    }
    return cache;
  }

  /** The user with this static public key. */
  byKey(publicKey: Buffer): User | undefined {
    return this.byKeyMap.get(keyOf(publicKey));
  }

  /** The user selected by this WSS URL path. */
  byPath(wssPath: string): User | undefined {
    return this.byPathMap.get(wssPath);
  }

  /** The token user whose client sent `bearer` (see `wsBearerFromToken`); undefined for any other value. */
  byBearer(bearer: string): User | undefined {
    if (typeof bearer !== 'string' || bearer === '' || this.byBearerMap.size === 0) return undefined;
    return this.byBearerMap.get(bearerDigest(bearer));
  }

  byId(id: string): User | undefined {
    return this.byIdMap.get(id);
  }

  get size(): number {
    return this.byIdMap.size;
  }

  /** Every cached user. */
  users(): IterableIterator<User> {
    return this.byIdMap.values();
  }

  /**
   * Called after the cache applied a change: `user` is the new state,
   * undefined when the user is gone. Returns the unsubscribe function.
   */
  onUserChange(listener: (id: string, user: User | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Stops following the store. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.listeners.clear();
  }

  private changed(c: StoreChange): void {
    if (this.closed) return;
    if (c.op === 'resync') {
      this.reload().catch((err: unknown) => this.retryLater(err, 'reload after resync'));
      return;
    }
    this.dirty?.add(c.userId);
    if (c.op === 'delete') {
      this.bump(c.userId); // a read still in flight must not bring the user back
      this.put(c.userId, undefined);
      return;
    }
    this.refresh(c.userId);
  }

  private bump(id: string): number {
    const gen = (this.gens.get(id) ?? 0) + 1;
    this.gens.set(id, gen);
    return gen;
  }

  private refresh(id: string): void {
    const gen = this.bump(id);
    this.init.store.getUser(id, { withSecret: true }).then(
      (user) => {
        if (this.closed || this.gens.get(id) !== gen) return;
        this.gens.delete(id);
        // getUser also matches names: a user *named* like this id is not it.
        this.put(id, user?.id === id ? user : undefined);
      },
      (err: unknown) => {
        if (this.gens.get(id) === gen) this.gens.delete(id);
        this.retryLater(err, `re-read of user ${id}`);
      },
    );
  }

  private retryLater(err: unknown, what: string): void {
    if (this.closed) return;
    this.log.warn({ err }, `user cache: ${what} failed; reloading everything shortly`);
    if (this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.reload().catch((e: unknown) => this.retryLater(e, 'reload'));
    }, this.init.retryMs ?? 1000);
  }

  /** Loads every user; a reload requested while one runs makes it run once more. */
  private reload(): Promise<void> {
    if (this.reloading !== undefined) {
      this.again = true;
      return this.reloading;
    }
    const run = async (): Promise<void> => {
      try {
        do {
          this.again = false;
          this.dirty = new Set();
          const fresh = await this.loadAll();
          const dirty = this.dirty;
          this.dirty = undefined;
          if (this.closed) return;
          this.replaceAll(fresh);
          // What changed while the pages were read may be older in `fresh` than in the table.
          for (const id of dirty) this.refresh(id);
        } while (this.again && !this.closed);
      } finally {
        this.dirty = undefined;
        this.reloading = undefined;
      }
    };
    this.reloading = run();
    return this.reloading;
  }

  private async loadAll(): Promise<Map<string, User>> {
    const pageSize = this.init.pageSize ?? 1000;
    const fresh = new Map<string, User>();
    let afterId = '';
    for (;;) {
      const page = await this.init.store.listUsers({ limit: pageSize, afterId, withSecret: true });
      for (const u of page) fresh.set(u.id, u);
      const last = page[page.length - 1];
      if (page.length < pageSize || last === undefined) return fresh;
      afterId = last.id;
    }
  }

  private replaceAll(fresh: Map<string, User>): void {
    for (const id of [...this.byIdMap.keys()]) if (!fresh.has(id)) this.put(id, undefined);
    for (const [id, u] of fresh) {
      const old = this.byIdMap.get(id);
      const same = old !== undefined && old.updatedAt === u.updatedAt && old.bytesUp === u.bytesUp && old.bytesDown === u.bytesDown;
      if (!same) this.put(id, u);
    }
  }

  private put(id: string, read: User | undefined): void {
    const old = this.byIdMap.get(id);
    if (old !== undefined) {
      // Remove only entries that still point at this user: another user may
      // already have taken over the key or path.
      const k = keyOf(old.publicKey);
      if (this.byKeyMap.get(k)?.id === id) this.byKeyMap.delete(k);
      if (old.wssPath !== null && this.byPathMap.get(old.wssPath)?.id === id) this.byPathMap.delete(old.wssPath);
      const b = this.bearerOf.get(id);
      if (b !== undefined && this.byBearerMap.get(b)?.id === id) this.byBearerMap.delete(b);
      this.bearerOf.delete(id);
    }
    const { user, bearer } = read === undefined ? { user: undefined, bearer: undefined } : split(read);
    if (user === undefined) {
      if (old === undefined) return;
      this.byIdMap.delete(id);
    } else {
      this.byIdMap.set(id, user);
      this.byKeyMap.set(keyOf(user.publicKey), user);
      if (user.wssPath !== null) this.byPathMap.set(user.wssPath, user);
      if (bearer !== undefined) {
        this.byBearerMap.set(bearer, user);
        this.bearerOf.set(id, bearer);
      }
    }
    for (const l of [...this.listeners]) {
      try {
        l(id, user);
      } catch (err) {
        this.log.error({ err, userId: id }, 'user cache change listener threw');
      }
    }
  }
}
