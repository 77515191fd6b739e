/**
 * The VPN address pool: one IPv4 block (and optionally one IPv6 block) from
 * which each client session gets an address, sticky per user.
 *
 * Host offset n of the block is the address network + n in both families,
 * so a lease is one number: 10.8.0.7 goes with fd00:8::7. Offset 1 is the
 * server's own TUN address; clients get 2 … capacity + 1 (the IPv4
 * broadcast address is never handed out).
 *
 * Sticky: a user gets back the address it had (the most recently used of
 * its leases that no live session holds), so a client that reconnects, or a
 * server that restarts, keeps addresses stable for firewall rules and logs.
 * A user with two sessions at once holds two leases. When no offset is free,
 * the least recently used lease that no session holds is taken over.
 *
 * Leases are kept in a JSON file (written atomically after each change):
 *
 * ```
 * { "version": 1, "pool": "10.8.0.0/24,fd00:8::/64",
 *   "leases": [{ "user": "alice", "host": 2, "v4": "10.8.0.2", "v6": "fd00:8::2", "lastUsed": "…" }] }
 * ```
 * (`v4`/`v6` are informational; `host` is what counts, so leases survive a
 * change of block as long as their offset still fits.)
 */
import { ConfigError, LimitError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { cidrHost, cidrSize, formatCidr, formatIpBytes, parseIpCidr, type IpCidr } from './ipaddr.js';
import { readJsonFile, writeJsonAtomic } from './state-file.js';

/** Most clients one pool serves (bounds memory and scans whatever the block size). */
export const MAX_POOL_HOSTS = 1 << 20;

/** Options of {@link AddressPool.open}. */
export interface AddressPoolInit {
  /** IPv4 block, prefix ≤ 30, host bits zero (e.g. `10.8.0.0/24`). */
  v4: string;
  /** IPv6 block, prefix ≤ 126. @default none (IPv4 only) */
  v6?: string;
  /** Lease file. @default none: leases live in memory only */
  file?: string;
  /** Wall clock in ms. @default Date.now */
  now?: () => number;
  /** @default nullLogger */
  logger?: Logger;
}

/** One address (pair) held by one session. */
export interface Lease {
  readonly user: string;
  /** Host offset in the block (≥ 2). */
  readonly host: number;
  readonly v4: Buffer;
  readonly v6: Buffer | undefined;
  /** Lets the address go back to the pool (it stays the user's until someone else needs it). Idempotent. */
  release(): void;
}

interface Entry {
  user: string;
  host: number;
  lastUsed: number;
  inUse: boolean;
}

interface LeaseFile {
  version: 1;
  pool: string;
  leases: { user: string; host: number; v4?: string; v6?: string; lastUsed: string }[];
}

/** See the file comment. */
export class AddressPool {
  readonly v4: IpCidr;
  readonly v6: IpCidr | undefined;
  /** The server's own addresses (host offset 1). */
  readonly gateway4: Buffer;
  readonly gateway6: Buffer | undefined;
  /** How many client addresses the pool has. */
  readonly capacity: number;
  private readonly byHost = new Map<number, Entry>();
  private readonly file: string | undefined;
  private readonly now: () => number;
  private readonly log: Logger;
  private saving: Promise<void> = Promise.resolve();

  private constructor(init: AddressPoolInit) {
    this.v4 = parseIpCidr(init.v4, 'vpn.pool');
    if (this.v4.family !== 4) throw new ConfigError('vpn.pool', `the first block must be IPv4, got ${init.v4}`);
    if (this.v4.prefix > 30) throw new ConfigError('vpn.pool', `${init.v4} is too small: use a prefix of /30 or shorter`);
    let cap = cidrSize(this.v4) - 3n; // network, server, broadcast
    if (init.v6 !== undefined) {
      this.v6 = parseIpCidr(init.v6, 'vpn.pool');
      if (this.v6.family !== 6) throw new ConfigError('vpn.pool', `the second block must be IPv6, got ${init.v6}`);
      if (this.v6.prefix > 126) throw new ConfigError('vpn.pool', `${init.v6} is too small: use a prefix of /126 or shorter`);
      const cap6 = cidrSize(this.v6) - 2n;
      if (cap6 < cap) cap = cap6;
    }
    this.capacity = Number(cap > BigInt(MAX_POOL_HOSTS) ? BigInt(MAX_POOL_HOSTS) : cap);
    this.gateway4 = cidrHost(this.v4, 1n);
    this.gateway6 = this.v6 ? cidrHost(this.v6, 1n) : undefined;
    this.file = init.file;
    this.now = init.now ?? Date.now;
    this.log = init.logger ?? nullLogger;
  }

  /** Parses the blocks and loads the lease file. @throws ConfigError on a bad block or an unreadable file */
  static async open(init: AddressPoolInit): Promise<AddressPool> {
    const pool = new AddressPool(init);
    if (pool.file !== undefined) pool.load(await readJsonFile(pool.file));
    return pool;
  }

  /** `10.8.0.0/24` or `10.8.0.0/24,fd00:8::/64`. */
  get description(): string {
    return this.v6 ? `${formatCidr(this.v4)},${formatCidr(this.v6)}` : formatCidr(this.v4);
  }

  /** Leases held by live sessions. */
  get inUse(): number {
    let n = 0;
    for (const e of this.byHost.values()) if (e.inUse) n++;
    return n;
  }

  /** The host offsets remembered for `user`, most recently used first. */
  leasesOf(user: string): number[] {
    return [...this.byHost.values()].filter((e) => e.user === user).sort((a, b) => b.lastUsed - a.lastUsed).map((e) => e.host);
  }

  /**
   * Gives `user` an address: its own most recent free lease, else a free
   * offset, else the least recently used free lease of anyone.
   * @throws LimitError when every address is held by a live session
   */
  acquire(user: string): Lease {
    let pick: Entry | undefined;
    for (const e of this.byHost.values()) if (e.user === user && !e.inUse && (!pick || e.lastUsed > pick.lastUsed)) pick = e;
    if (!pick) {
      const host = this.freeHost();
      if (host !== undefined) {
        pick = { user, host, lastUsed: 0, inUse: false };
        this.byHost.set(host, pick);
      }
    }
    if (!pick) {
      for (const e of this.byHost.values()) if (!e.inUse && (!pick || e.lastUsed < pick.lastUsed)) pick = e;
      if (pick) this.log.info({ user, from: pick.user, host: pick.host }, 'vpn pool full: reassigning the least recently used address');
    }
    if (!pick) throw new LimitError('vpn.pool', `VPN address pool ${this.description} is exhausted (${this.capacity} addresses in use)`);
    const entry = pick;
    entry.user = user;
    entry.inUse = true;
    entry.lastUsed = this.now();
    this.scheduleSave();
    let released = false;
    return {
      user,
      host: entry.host,
      v4: cidrHost(this.v4, BigInt(entry.host)),
      v6: this.v6 ? cidrHost(this.v6, BigInt(entry.host)) : undefined,
      release: () => {
        if (released) return;
        released = true;
        if (this.byHost.get(entry.host) === entry) {
          entry.inUse = false;
          entry.lastUsed = this.now();
          this.scheduleSave();
        }
      },
    };
  }

  /** Resolves when every lease change so far is on disk. */
  async flush(): Promise<void> {
    await this.saving;
  }

  private freeHost(): number | undefined {
    for (let h = 2; h <= this.capacity + 1; h++) if (!this.byHost.has(h)) return h;
    return undefined;
  }

  private load(raw: unknown): void {
    if (raw === undefined) return;
    const f = raw as Partial<LeaseFile>;
    if (f.version !== 1 || !Array.isArray(f.leases)) throw new ConfigError(this.file ?? 'leases', 'unknown lease file format (delete it to start afresh)');
    if (f.pool !== this.description) this.log.info({ was: f.pool, now: this.description }, 'vpn pool changed: leases keep their host offsets where they still fit');
    for (const l of f.leases) {
      const ok = typeof l.user === 'string' && Number.isInteger(l.host) && l.host >= 2 && l.host <= this.capacity + 1 && !this.byHost.has(l.host);
      if (!ok) continue;
      const t = Date.parse(l.lastUsed);
      this.byHost.set(l.host, { user: l.user, host: l.host, lastUsed: Number.isFinite(t) ? t : 0, inUse: false });
    }
  }

  private snapshot(): LeaseFile {
    const leases = [...this.byHost.values()]
      .sort((a, b) => a.host - b.host)
      .map((e) => {
        const v6 = this.v6 ? { v6: formatIpBytes(cidrHost(this.v6, BigInt(e.host))) } : {};
        return { user: e.user, host: e.host, v4: formatIpBytes(cidrHost(this.v4, BigInt(e.host))), ...v6, lastUsed: new Date(e.lastUsed).toISOString() };
      });
    return { version: 1, pool: this.description, leases };
  }

  private scheduleSave(): void {
    const file = this.file;
    if (file === undefined) return;
    // Chained so writes land in order; each one writes the state as of its turn.
    this.saving = this.saving.then(() =>
      writeJsonAtomic(file, this.snapshot()).catch((err: unknown) => {
        // A lease file that cannot be written costs stickiness, not service.
        this.log.warn({ file, err: toError(err).message }, 'cannot save VPN leases');
      }),
    );
  }
}
