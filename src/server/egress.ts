/**
 * The server's outbound dialer: resolve, filter every address through the
 * destination policy, then connect with Happy Eyeballs (RFC 8305).
 *
 *   dest ──checkName──▶ literal? ──yes──────────────────────────┐
 *                          │no                                   ▼
 *                          └─▶ resolve ─▶ checkAddress(each) ─▶ race: v6, +250ms v4, +250ms v6 …
 *                                                                 │ first 'connect' wins, rest destroyed
 *                                                                 ▼
 *                                                            net.Socket (noDelay)
 *
 * Only addresses that passed `checkAddress` are ever handed to connect(), so a
 * name that resolves to a mix of public and private addresses is dialed on the
 * public ones only, and a denied literal costs no syscall at all. We run our
 * own staggered attempts rather than `net.connect({ autoSelectFamily })`
 * because we need each failure's errno to pick the SOCKS reply, and one
 * deadline that spans resolution and connection.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { throwIfAborted } from '../core/abort.js';
import { AbortedError, PolytunError, TimeoutError } from '../core/errors.js';
import { ProxyStatus } from '../proxy/wire.js';
import type { Logger } from '../core/logger.js';
import { nullLogger } from '../core/logger.js';
import { formatIp, parseIp } from './cidr.js';
import type { DestinationPolicy, PolicyDecision } from './policy.js';

/** SOCKS5 reply codes (RFC 1928 §6) that an egress failure maps to. */
export const SocksReply = ProxyStatus;
/** One of the {@link SocksReply} values. */
export type SocksReply = (typeof SocksReply)[keyof typeof SocksReply];

/** The server could not (or would not) reach a destination. `socksReply` is what a SOCKS5 front sends back. */
export class EgressError extends PolytunError {
  /** RFC 1928 reply code for this failure. */
  readonly socksReply: SocksReply;
  /** Short reason, safe to log and to show to the user ("denied: loopback", "connection refused"). */
  readonly reason: string;
  /** The policy decision, when the policy refused. */
  readonly decision: PolicyDecision | undefined;
  constructor(socksReply: SocksReply, reason: string, options?: { cause?: unknown; decision?: PolicyDecision }) {
    super('ERR_EGRESS', `egress: ${reason}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.socksReply = socksReply;
    this.reason = reason;
    this.decision = options?.decision;
  }
}

const ERRNO_REPLY: Readonly<Record<string, SocksReply>> = {
  ECONNREFUSED: SocksReply.connectionRefused,
  ENETUNREACH: SocksReply.networkUnreachable,
  ENETDOWN: SocksReply.networkUnreachable,
  EAFNOSUPPORT: SocksReply.networkUnreachable,
  EADDRNOTAVAIL: SocksReply.networkUnreachable, // e.g. no IPv6 source address
  EHOSTUNREACH: SocksReply.hostUnreachable,
  EHOSTDOWN: SocksReply.hostUnreachable,
  ETIMEDOUT: SocksReply.hostUnreachable,
  ENOTFOUND: SocksReply.hostUnreachable,
  ENODATA: SocksReply.hostUnreachable,
  EAI_AGAIN: SocksReply.hostUnreachable,
  EAI_NONAME: SocksReply.hostUnreachable,
  EAI_NODATA: SocksReply.hostUnreachable,
  ESERVFAIL: SocksReply.hostUnreachable,
};

const REPLY_TEXT: Readonly<Record<number, string>> = {
  [SocksReply.connectionRefused]: 'connection refused',
  [SocksReply.networkUnreachable]: 'network unreachable',
  [SocksReply.hostUnreachable]: 'host unreachable',
  [SocksReply.generalFailure]: 'connect failed',
};

/** Maps a Node socket/DNS error (by its `code`) to a SOCKS5 reply; unknown codes are general failures. */
export function socksReplyFor(err: unknown): SocksReply {
  const code = (err as { code?: unknown } | null)?.code;
  return (typeof code === 'string' ? ERRNO_REPLY[code] : undefined) ?? SocksReply.generalFailure;
}

/** How a failed attempt ranks when several fail: the most specific answer is reported. */
const RANK: Readonly<Record<number, number>> = {
  [SocksReply.connectionRefused]: 3,
  [SocksReply.hostUnreachable]: 2,
  [SocksReply.networkUnreachable]: 1,
};

/** Where to dial. `host` is a name or an IP literal (IPv6 with or without brackets). */
export interface EgressDestination {
  host: string;
  port: number;
}

/** Per-dial options. */
export interface EgressDialOptions {
  signal?: AbortSignal;
  /** Deadline for resolution plus connection. @default the dialer's `timeoutMs` */
  timeoutMs?: number;
}

/** Resolves a name to its addresses. Gets the dial's signal (dns.lookup cannot be cancelled; others may). */
export type EgressResolver = (host: string, signal: AbortSignal) => Promise<readonly LookupAddress[]>;

/** Starts one TCP connection attempt to an IP literal. Must not resolve names. */
export type EgressConnect = (target: { host: string; port: number; family: 4 | 6 }) => Socket;

/** Construction options for {@link EgressDialer}. */
export interface EgressDialerInit {
  /** Decides which destinations may be dialed. */
  policy: DestinationPolicy;
  /** @default dns.promises.lookup(host, { all: true, verbatim: true }) */
  resolve?: EgressResolver;
  /** @default net.connect */
  connect?: EgressConnect;
  /** Deadline for resolution plus connection, in ms. @default 10000 */
  timeoutMs?: number;
  /** Delay before starting the next address's attempt (RFC 8305 "Connection Attempt Delay"). @default 250 */
  attemptDelayMs?: number;
  /** @default nullLogger */
  logger?: Logger;
}

interface Candidate {
  address: string;
  family: 4 | 6;
}

/** RFC 8305 §4: IPv6 first, then alternate families, keeping the resolver's order within a family. */
export function interleaveFamilies<T extends { family: 4 | 6 }>(addrs: readonly T[]): T[] {
  const v6 = addrs.filter((a) => a.family === 6);
  const v4 = addrs.filter((a) => a.family === 4);
  const out: T[] = [];
  for (let i = 0; i < Math.max(v6.length, v4.length); i++) {
    const a = v6[i];
    const b = v4[i];
    if (a) out.push(a);
    if (b) out.push(b);
  }
  return out;
}

function denied(d: PolicyDecision): EgressError {
  return new EgressError(SocksReply.notAllowed, `denied: ${d.reason}${d.rule ? ` (${d.rule})` : ''}`, { decision: d });
}

/** Rejects with the signal's reason when it fires; otherwise settles like `p`. */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * The abort reason of a dial whose deadline passed; the TimeoutError is built
 * only then (an error's stack capture costs more than the rest of a dial).
 */
const DEADLINE = Symbol('egress deadline');

/** Dials destinations for users, under a {@link DestinationPolicy}. Stateless between dials. */
export class EgressDialer {
  readonly #policy: DestinationPolicy;
  readonly #resolve: EgressResolver;
  readonly #connect: EgressConnect;
  readonly #timeoutMs: number;
  readonly #delayMs: number;
  readonly #log: Logger;

  constructor(init: EgressDialerInit) {
    this.#policy = init.policy;
    this.#resolve = init.resolve ?? ((host) => dnsLookup(host, { all: true, verbatim: true }));
    this.#connect = init.connect ?? ((t) => netConnect({ host: t.host, port: t.port, family: t.family }));
    this.#timeoutMs = init.timeoutMs ?? 10_000;
    this.#delayMs = init.attemptDelayMs ?? 250;
    this.#log = init.logger ?? nullLogger;
  }

  /**
   * Resolves `dest`, keeps the addresses the policy allows, and connects to
   * the first that answers. Rejects with EgressError (carrying `socksReply`)
   * on refusal or failure, or AbortedError when `signal` fires. The returned
   * socket is connected, has `noDelay` set and no listeners of ours.
   */
  async dial(dest: EgressDestination, opts: EgressDialOptions = {}): Promise<Socket> {
    const { signal } = opts;
    throwIfAborted(signal);
    const pre = this.#policy.checkName(dest.host, dest.port);
    if (!pre.allowed) throw denied(pre);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(DEADLINE), opts.timeoutMs ?? this.#timeoutMs);
    const onAbort = (): void => ac.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const literal = parseIp(dest.host);
      const candidates: Candidate[] = literal
        ? [{ address: literalHost(dest.host, formatIp(literal)), family: literal.family }]
        : await this.#resolveAllowed(dest.host, dest.port, ac.signal);
      return await this.#race(interleaveFamilies(candidates), dest.port, ac.signal);
    } catch (err) {
      if (ac.signal.aborted) {
        if (ac.signal.reason === DEADLINE) throw new EgressError(SocksReply.hostUnreachable, 'timeout', { cause: new TimeoutError(`egress dial to port ${dest.port}`) });
        throw new AbortedError(signal?.reason);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async #resolveAllowed(host: string, port: number, signal: AbortSignal): Promise<Candidate[]> {
    let found: readonly LookupAddress[];
    try {
      found = await raceSignal(this.#resolve(host, signal), signal);
    } catch (err) {
      if (signal.aborted) throw err;
      const reply = socksReplyFor(err);
      throw new EgressError(reply === SocksReply.generalFailure ? SocksReply.hostUnreachable : reply, 'cannot resolve name', { cause: err });
    }
    const ok: Candidate[] = [];
    let firstDenial: PolicyDecision | undefined;
    for (const f of found) {
      const d = this.#policy.checkAddress(f.address, port, host);
      const ip = parseIp(f.address);
      if (d.allowed && ip) ok.push({ address: f.address, family: ip.family });
      else {
        firstDenial ??= d;
        this.#log.debug({ host, address: f.address, reason: d.reason }, 'egress: resolved address refused by policy');
      }
    }
    if (ok.length > 0) return ok;
    if (firstDenial) throw denied(firstDenial);
    throw new EgressError(SocksReply.hostUnreachable, 'name has no address');
  }

  /** Staggered attempts; the first socket to connect wins and every other one is destroyed. */
  #race(cands: readonly Candidate[], port: number, signal: AbortSignal): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const pending = new Set<Socket>();
      const errors: unknown[] = [];
      let next = 0;
      let done = false;
      let stagger: NodeJS.Timeout | undefined;
      const finish = (): void => {
        done = true;
        clearTimeout(stagger);
        signal.removeEventListener('abort', onAbort);
        for (const s of pending) s.destroy();
        pending.clear();
      };
      const fail = (): void => {
        finish();
        reject(bestError(errors));
      };
      const onAbort = (): void => {
        finish();
        reject(signal.reason);
      };
      const startNext = (): void => {
        clearTimeout(stagger);
        if (done) return;
        const c = cands[next++];
        if (c === undefined) {
          if (pending.size === 0) fail();
          return;
        }
        let s: Socket;
        try {
          s = this.#connect({ host: c.address, port, family: c.family });
        } catch (err) {
          errors.push(err);
          startNext();
          return;
        }
        pending.add(s);
        const onConnect = (): void => {
          s.off('error', onError);
          pending.delete(s);
          finish();
          s.setNoDelay(true);
          resolve(s);
        };
        // Stays attached on losers we destroy, so a late error never goes unhandled.
        const onError = (err: Error): void => {
          s.off('connect', onConnect);
          pending.delete(s);
          s.destroy();
          errors.push(err);
          this.#log.debug({ address: c.address, port, err }, 'egress: attempt failed');
          if (!done) startNext(); // a failure starts the next attempt at once (RFC 8305 §5)
        };
        s.once('connect', onConnect);
        s.once('error', onError);
        if (next < cands.length) stagger = setTimeout(startNext, this.#delayMs);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      startNext();
    });
  }
}

/** For a literal, connect to the normalised form, but keep an IPv6 zone id (fe80::1%eth0) that normalising drops. */
function literalHost(raw: string, normalised: string): string {
  const s = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  return s.includes('%') ? s : normalised;
}

function bestError(errors: readonly unknown[]): EgressError {
  let best: unknown = errors[0];
  let bestReply: SocksReply = socksReplyFor(best);
  for (const e of errors) {
    const r = socksReplyFor(e);
    if ((RANK[r] ?? 0) > (RANK[bestReply] ?? 0)) {
      best = e;
      bestReply = r;
    }
  }
  return new EgressError(bestReply, REPLY_TEXT[bestReply] ?? 'connect failed', { cause: best });
}
