/**
 * Reverse forwards (`-R`): a client's BIND stream asks the server to listen;
 * every connection the listener accepts is handed to the client on a new
 * ACCEPTED stream, and relayed once the client says it reached its target.
 *
 * ```
 *  client                         server                          remote peer
 *    │── OPEN BIND host:port ──────▶│ check host/port, listen
 *    │◀─ 00 | bind id | bound addr ─│          ◀──────────────────── connect
 *    │◀─ OPEN ACCEPTED id | peer ───│ (socket paused)
 *    │── status 00 (or refusal) ───▶│ 00 → relay ⇄ socket, else close the socket
 *    │── FIN / RST on BIND stream ─▶│ listener closed at once
 * ```
 *
 * The listener lives exactly as long as the BIND stream: the stream survives
 * a session resume, and dies with the session. Connections already relayed
 * are separate streams and are not cut when their listener is released.
 */
import { createServer, isIP, type AddressInfo, type Server, type Socket } from 'node:net';
import { ConfigError, toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { makeDestination, type Destination } from '../core/address.js';
import { encodeBindReply, encodeOpen } from '../proxy/wire.js';
import type { Session } from '../session/session.js';
import { ResetCode, type PolyStream } from '../session/stream.js';
import { SocksReply } from './egress.js';
import { logBindDenial } from './denials.js';
import { parsePorts } from './policy.js';
import type { Tally } from './proxy-counters.js';
import { LISTEN_BACKLOG } from '../core/limits.js';

/** Which reverse forwards clients may ask for. */
export interface ReverseInit {
  /** @default true */
  enabled?: boolean;
  /**
   * Addresses a client may ask the server to listen on (exact match, IPv6 in
   * any spelling). A wildcard such as '0.0.0.0' is allowed only if listed.
   * @default ['127.0.0.1', '::1']
   */
  bindHosts?: readonly string[];
  /** Ports a client may bind, e.g. '1024-65535' or '8000-9000,9443'. Port 0 (any) gets a kernel port that must fall inside. @default '1024-65535' */
  ports?: string;
  /** Listeners one session may hold at once. @default 32 */
  maxBinds?: number;
}

/** {@link ReverseInit} checked and normalised. */
export interface ReverseConfig {
  enabled: boolean;
  bindHosts: ReadonlySet<string>;
  ports: readonly (readonly [number, number])[];
  maxBinds: number;
}

/** Validates a {@link ReverseInit}. @throws ConfigError */
export function parseReverseInit(init: ReverseInit = {}): ReverseConfig {
  const hosts = new Set<string>();
  for (const [i, h] of (init.bindHosts ?? ['127.0.0.1', '::1']).entries()) {
    if (isIP(h) === 0) throw new ConfigError(`reverse.bindHosts[${i}]`, `'${h}' is not an IP address`);
    hosts.add(canonicalHost(h));
  }
  const ports = parsePorts(init.ports ?? '1024-65535');
  if (typeof ports === 'string') throw new ConfigError('reverse.ports', ports);
  const maxBinds = init.maxBinds ?? 32;
  if (!Number.isInteger(maxBinds) || maxBinds < 0) throw new ConfigError('reverse.maxBinds', `expected a count, got ${String(maxBinds)}`);
  return { enabled: init.enabled ?? true, bindHosts: hosts, ports, maxBinds };
}

/** What ReverseBinds needs from the proxy that owns it. */
export interface ReverseBindsInit {
  /** Where ACCEPTED streams are opened. */
  session: Session;
  config: ReverseConfig;
  /** How long the client has to answer an ACCEPTED stream with its status. */
  statusTimeoutMs: number;
  tally: Tally;
  log: Logger;
  /** Pipes a stream and a socket both ways (the proxy's relay). */
  relay(s: PolyStream, sock: Socket): void;
  /** Ends a stream with a refusal status. */
  refuse(s: PolyStream, status: number): void;
  /** For the rate-limited refusal log. */
  user?: string;
}

interface Bind {
  readonly id: number;
  readonly server: Server;
  readonly stream: PolyStream;
  listening: boolean;
  /** Counted in `bindsActive` (listening, reply sent). */
  active: boolean;
  released: boolean;
}

/** The reverse listeners of one session. */
export class ReverseBinds {
  readonly #init: ReverseBindsInit;
  readonly #binds = new Map<number, Bind>();
  readonly #accepted = new Set<PolyStream>();
  #nextId = 1;
  #closed = false;

  constructor(init: ReverseBindsInit) {
    this.#init = init;
  }

  /** Listeners held now (including ones still being opened). */
  get size(): number {
    return this.#binds.size;
  }

  /** Serves one BIND stream asking for `dest`. Never throws. */
  handle(s: PolyStream, dest: Destination): void {
    const { config, tally, log } = this.#init;
    const refuse = (status: number, why: string): void => {
      tally('bindsRefused');
      logBindDenial(log, this.#init.user, dest, why);
      this.#init.refuse(s, status);
    };
    if (this.#closed || !config.enabled) return refuse(SocksReply.notAllowed, 'reverse forwards are disabled');
    if (dest.kind === 'domain' || !config.bindHosts.has(canonicalHost(dest.host))) return refuse(SocksReply.notAllowed, 'bind host not allowed');
    if (dest.port !== 0 && !inRanges(config.ports, dest.port)) return refuse(SocksReply.notAllowed, 'bind port not allowed');
    if (this.#binds.size >= config.maxBinds) return refuse(SocksReply.generalFailure, 'too many binds');

    // pauseOnConnect: nothing is read from a peer before the client accepted it.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const bind: Bind = { id: this.#nextId++, server, stream: s, listening: false, active: false, released: false };
    this.#binds.set(bind.id, bind);
    const release = (): void => this.#release(bind);
    s.once('close', release);
    s.once('end', () => {
      release();
      if (!s.writableEnded) s.end();
    });
    s.resume(); // a client has nothing to send on a BIND stream; its FIN is what matters
    server.on('error', (err: NodeJS.ErrnoException) => {
      if (bind.released) return;
      if (!bind.listening) {
        release();
        refuse(err.code === 'EACCES' ? SocksReply.notAllowed : SocksReply.generalFailure, err.code ?? err.message);
        return;
      }
      log.warn({ bind: bind.id, err: err.message }, 'reverse listener failed; releasing it');
      release();
      s.reset(ResetCode.internal);
    });
    server.on('connection', (sock: Socket) => this.#onConnection(bind, sock));
    server.listen({ host: dest.host, port: dest.port, exclusive: true, backlog: LISTEN_BACKLOG }, () => {
      // A listen() whose stream died meanwhile must not outlive it.
      if (bind.released) {
        server.close();
        return;
      }
      bind.listening = true;
      const addr = server.address() as AddressInfo;
      if (!inRanges(config.ports, addr.port)) {
        release();
        refuse(SocksReply.notAllowed, `kernel picked port ${addr.port}, outside the allowed ports`);
        return;
      }
      bind.active = true;
      tally('binds');
      tally('bindsActive');
      log.debug({ bind: bind.id, port: addr.port }, 'reverse listener open');
      s.write(encodeBindReply(bind.id, makeDestination(addr.address, addr.port)));
    });
  }

  /** Closes every listener and resets the streams this class opened or holds. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const b of [...this.#binds.values()]) {
      this.#release(b);
      b.stream.reset(ResetCode.cancel);
    }
    for (const s of [...this.#accepted]) s.reset(ResetCode.cancel);
  }

  #release(bind: Bind): void {
    if (bind.released) return;
    bind.released = true;
    this.#binds.delete(bind.id);
    if (bind.active) this.#init.tally('bindsActive', -1);
    // close() drops the listening socket now; it is a no-op until listen() completes (handled there).
    bind.server.close();
  }

  /** A remote peer connected: hand it to the client and wait for its status byte. */
  #onConnection(bind: Bind, sock: Socket): void {
    const { session, tally, log } = this.#init;
    sock.on('error', (err: Error) => log.debug({ bind: bind.id, err: err.message }, 'accepted socket error'));
    if (bind.released || sock.remoteAddress === undefined || sock.remotePort === undefined) {
      sock.destroy();
      return;
    }
    tally('bindAccepts');
    let s: PolyStream;
    try {
      const peer = makeDestination(sock.remoteAddress, sock.remotePort);
      s = session.openStream(encodeOpen({ kind: 'accepted', bindId: bind.id, peer }));
    } catch (err) {
      tally('bindAcceptsFailed');
      log.debug({ bind: bind.id, err: toError(err).message }, 'cannot open an ACCEPTED stream');
      sock.destroy();
      return;
    }
    this.#accepted.add(s);
    s.once('close', () => this.#accepted.delete(s));
    s.on('error', (err: Error) => log.debug({ sid: s.id, err: err.message }, 'accepted stream ended with error'));
    const fail = (why: string): void => {
      tally('bindAcceptsFailed');
      log.debug({ sid: s.id, why }, 'accepted connection not relayed');
      sock.destroy();
      s.reset(ResetCode.cancel);
    };
    readStatus(s, this.#init.statusTimeoutMs, (status) => {
      if (status === undefined) fail('no status from the client');
      else if (status !== 0) fail(`client status 0x${status.toString(16)}`);
      else if (sock.destroyed) fail('peer went away');
      else this.#init.relay(s, sock);
    });
  }
}

/**
 * Reads the first byte of `s` (the client's status) and leaves the rest in
 * the stream, paused, for the relay. Calls `done(undefined)` when the stream
 * ends, closes or stays silent for `timeoutMs`.
 */
function readStatus(s: PolyStream, timeoutMs: number, done: (status: number | undefined) => void): void {
  const finish = (status: number | undefined): void => {
    clearTimeout(timer);
    s.off('data', onData);
    s.off('end', onGone);
    s.off('close', onGone);
    done(status);
  };
  const onData = (chunk: Buffer): void => {
    s.pause();
    if (chunk.length > 1) s.unshift(chunk.subarray(1));
    finish(chunk[0]);
  };
  const onGone = (): void => finish(undefined);
  const timer = setTimeout(onGone, timeoutMs);
  timer.unref();
  s.on('data', onData);
  s.once('end', onGone);
  s.once('close', onGone);
}

function canonicalHost(host: string): string {
  return isIP(host) === 6 ? makeDestination(host, 0).host : host.toLowerCase();
}

function inRanges(ranges: readonly (readonly [number, number])[], port: number): boolean {
  for (const [lo, hi] of ranges) if (port >= lo && port <= hi) return true;
  return false;
}
