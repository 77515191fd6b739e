/**
 * UDP relay on the session's datagram lane. Each client flow id gets its own
 * UDP socket per address family, created on the flow's first datagram to
 * that family, so each association has its own public port, as with a
 * SOCKS5 UDP ASSOCIATE.
 *
 * ```
 *  datagram (flow, | dest | data |) ─▶ decode ─▶ route(dest) ─▶ socket[family].send(data → ip:port)
 *                                               │ cached per flow: ok(ip) | denied | pending(DNS)
 *  socket 'message' from ip:port ─▶ sent to before? ─▶ datagram (flow, | ip:port | data |)
 * ```
 *
 * Replies are accepted only from addresses the flow has sent to (like a
 * port-restricted cone NAT): the relay never becomes an open inbound port.
 * Routing decisions are cached per flow (bounded, oldest evicted) and live
 * as long as the flow: a flow idle for `idleTimeoutMs` is closed. Nothing
 * here throws out of `handle`; every drop is counted.
 */
import { logDenial } from './denials.js';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { makeDestination, type Destination } from '../core/address.js';
import { decodeUdp, encodeUdp } from '../proxy/wire.js';
import type { DestinationPolicy } from './policy.js';
import type { Tally } from './proxy-counters.js';
import { MAX_UDP_FLOWS, MAX_UDP_FLOW_DESTINATIONS } from '../core/limits.js';

/** Resolves a name to addresses (for domain destinations). */
export type UdpResolver = (host: string) => Promise<readonly LookupAddress[]>;

/** UDP relay options (the `udp` part of the proxy's options). */
export interface UdpInit {
  /** Concurrent flows per session; datagrams of further new flows are dropped. @default 256 */
  maxFlows?: number;
  /** A flow with no datagram either way for this long is closed. @default 60000 */
  idleTimeoutMs?: number;
  /** Destinations (and reply sources) remembered per flow. @default 256 */
  maxDestinations?: number;
  /** Local address of IPv4 flow sockets. @default '0.0.0.0' */
  bindAddress4?: string;
  /** Local address of IPv6 flow sockets. @default '::' */
  bindAddress6?: string;
  /** @default dns.promises.lookup(host, { all: true, verbatim: true }) */
  resolve?: UdpResolver;
}

/** What the UDP relay needs from its proxy. */
export interface UdpFlowsInit extends UdpInit {
  policy: DestinationPolicy;
  /** For the rate-limited refusal log. */
  user?: string;
  /** Sends a datagram to the client; false when it was dropped. */
  send(flow: number, payload: Buffer): boolean;
  tally: Tally;
  logger?: Logger;
}

type Family = 4 | 6;
type Route = { state: 'ok'; ip: string; family: Family } | { state: 'denied' } | { state: 'pending'; queue: Buffer[] };

/** Datagrams held per destination while its name resolves. */
const PENDING_MAX = 8;

interface Flow {
  readonly id: number;
  readonly sockets: [UdpSocket | undefined, UdpSocket | undefined];
  /** `host|port` of requested destinations → decision. */
  readonly routes: Map<string, Route>;
  /** `ip|port` this flow has sent to: the only sources whose replies pass. */
  readonly peers: Set<string>;
  readonly timer: NodeJS.Timeout;
  closed: boolean;
}

/** The UDP flows of one session. */
export class UdpFlows {
  readonly #init: UdpFlowsInit;
  readonly #log: Logger;
  readonly #flows = new Map<number, Flow>();
  readonly #maxFlows: number;
  readonly #idleMs: number;
  readonly #maxDest: number;
  readonly #resolve: UdpResolver;
  #closed = false;

  constructor(init: UdpFlowsInit) {
    this.#init = init;
    this.#log = init.logger ?? nullLogger;
    this.#maxFlows = init.maxFlows ?? MAX_UDP_FLOWS;
    this.#idleMs = init.idleTimeoutMs ?? 60_000;
    this.#maxDest = init.maxDestinations ?? MAX_UDP_FLOW_DESTINATIONS;
    this.#resolve = init.resolve ?? ((host) => lookup(host, { all: true, verbatim: true }));
  }

  /** Flows open now. */
  get size(): number {
    return this.#flows.size;
  }

  /** One datagram from the client. Never throws. */
  handle(flowId: number, payload: Buffer): void {
    const { tally } = this.#init;
    if (this.#closed) return;
    let dest: Destination;
    let data: Buffer;
    try {
      ({ addr: dest, data } = decodeUdp(payload));
    } catch (err) {
      tally('udpMalformed');
      this.#log.debug({ flow: flowId, err: toError(err).message }, 'malformed UDP datagram dropped');
      return;
    }
    let flow = this.#flows.get(flowId);
    if (!flow) {
      if (this.#flows.size >= this.#maxFlows) {
        tally('udpFlowsRefused');
        return;
      }
      flow = this.#open(flowId);
    }
    flow.timer.refresh();
    const key = `${dest.kind === 'domain' ? dest.host.toLowerCase() : dest.host}|${dest.port}`;
    const route = flow.routes.get(key) ?? this.#route(flow, key, dest);
    if (route.state === 'ok') this.#send(flow, route, dest.port, data);
    else if (route.state === 'denied') tally('udpDenied');
    else if (route.queue.length < PENDING_MAX) route.queue.push(Buffer.from(data)); // outlives the record it points into
    else tally('udpDropped');
  }

  /** Closes every flow. Idempotent; later datagrams are ignored. */
  close(): void {
    this.#closed = true;
    for (const f of [...this.#flows.values()]) this.#closeFlow(f, 'closed');
  }

  #open(id: number): Flow {
    const flow: Flow = {
      id,
      sockets: [undefined, undefined],
      routes: new Map(),
      peers: new Set(),
      timer: setTimeout(() => this.#closeFlow(flow, 'idle'), this.#idleMs),
      closed: false,
    };
    flow.timer.unref();
    this.#flows.set(id, flow);
    this.#init.tally('udpFlowsOpened');
    this.#init.tally('udpFlowsActive');
    return flow;
  }

  #closeFlow(flow: Flow, why: string): void {
    if (flow.closed) return;
    flow.closed = true;
    clearTimeout(flow.timer);
    this.#flows.delete(flow.id);
    for (const sock of flow.sockets) if (sock) closeQuietly(sock);
    this.#init.tally('udpFlowsActive', -1);
    this.#log.debug({ flow: flow.id, why }, 'UDP flow closed');
  }

  /** Decides where datagrams for `dest` go, and remembers it for the flow. */
  #route(flow: Flow, key: string, dest: Destination): Route {
    const { policy } = this.#init;
    let route: Route;
    if (dest.kind !== 'domain') {
      const ip = unmapped(dest.host);
      const d = policy.checkAddress(ip, dest.port);
      route = d.allowed ? { state: 'ok', ip, family: ip.includes(':') ? 6 : 4 } : { state: 'denied' };
      if (!d.allowed) logDenial(this.#log, this.#init.user, 'udp', dest, d);
    } else {
      const d = policy.checkName(dest.host, dest.port);
      if (d.allowed) {
        const pending: Route = { state: 'pending', queue: [] };
        route = pending;
        this.#resolve(dest.host).then(
          (found) => this.#resolved(flow, key, pending, dest, found),
          (err: unknown) => {
            if (flow.routes.get(key) !== pending) return;
            flow.routes.delete(key); // not cached: the next datagram tries again
            this.#init.tally('udpDropped', pending.queue.length);
            this.#log.debug({ flow: flow.id, err: toError(err).message }, 'UDP destination name did not resolve');
          },
        );
      } else {
        route = { state: 'denied' };
        logDenial(this.#log, this.#init.user, 'udp', dest, d);
      }
    }
    remember(flow.routes, key, route, this.#maxDest);
    return route;
  }

  #resolved(flow: Flow, key: string, pending: Extract<Route, { state: 'pending' }>, dest: Destination, found: readonly LookupAddress[]): void {
    if (flow.closed || flow.routes.get(key) !== pending) {
      this.#init.tally('udpDropped', pending.queue.length);
      return;
    }
    let route: Route = { state: 'denied' };
    for (const a of found) {
      let ip: string;
      try {
        ip = unmapped(makeDestination(a.address, dest.port).host);
      } catch {
        continue; // e.g. a scoped IPv6 address: nothing we can send to
      }
      if (this.#init.policy.checkAddress(ip, dest.port, dest.host).allowed) {
        route = { state: 'ok', ip, family: ip.includes(':') ? 6 : 4 };
        break;
      }
    }
    flow.routes.set(key, route);
    for (const data of pending.queue) {
      if (route.state === 'ok') this.#send(flow, route, dest.port, data);
      else this.#init.tally('udpDenied');
    }
  }

  #send(flow: Flow, route: Extract<Route, { state: 'ok' }>, port: number, data: Buffer): void {
    const { tally } = this.#init;
    const sock = this.#socket(flow, route.family);
    remember(flow.peers, `${route.ip}|${port}`, undefined, this.#maxDest);
    tally('udpDatagramsUp');
    tally('bytesUp', data.length);
    sock.send(data, port, route.ip, (err) => {
      if (!err) return;
      tally('udpDropped');
      this.#log.debug({ flow: flow.id, err: err.message }, 'UDP send failed');
    });
  }

  #socket(flow: Flow, family: Family): UdpSocket {
    const i = family === 4 ? 0 : 1;
    const have = flow.sockets[i];
    if (have) return have;
    const sock = createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 });
    flow.sockets[i] = sock;
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#reply(flow, msg, rinfo));
    sock.on('error', (err: Error) => {
      // The socket is unusable (bind failed, no IPv6 …): the next datagram makes a new one.
      this.#log.debug({ flow: flow.id, family, err: err.message }, 'UDP flow socket failed');
      if (flow.sockets[i] === sock) flow.sockets[i] = undefined;
      closeQuietly(sock);
    });
    // send() before bind completes is queued by dgram.
    sock.bind({ port: 0, address: family === 4 ? (this.#init.bindAddress4 ?? '0.0.0.0') : (this.#init.bindAddress6 ?? '::') });
    return sock;
  }

  #reply(flow: Flow, msg: Buffer, rinfo: RemoteInfo): void {
    const { tally } = this.#init;
    if (flow.closed) return;
    let src: Destination;
    try {
      src = makeDestination(rinfo.address, rinfo.port);
    } catch {
      tally('udpUnsolicited'); // a scoped source we never sent to
      return;
    }
    if (!flow.peers.has(`${src.host}|${src.port}`)) {
      tally('udpUnsolicited');
      return;
    }
    flow.timer.refresh();
    if (!this.#init.send(flow.id, encodeUdp(src, msg))) {
      tally('udpDropped');
      return;
    }
    tally('udpDatagramsDown');
    tally('bytesDown', msg.length);
  }
}

/** `::ffff:a.b.c.d` is IPv4: send it from the IPv4 socket (the IPv6 one is v6-only). */
function unmapped(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

function closeQuietly(sock: UdpSocket): void {
  try {
    sock.close();
  } catch (err) {
    // Closing twice (an error then the flow's end) is expected; anything else is not.
    if ((err as { code?: unknown }).code !== 'ERR_SOCKET_DGRAM_NOT_RUNNING') throw err;
  }
}

/** Adds to a bounded Map/Set, evicting the oldest entry when full. */
function remember<V>(m: Map<string, V> | Set<string>, key: string, value: V, max: number): void {
  if (m.has(key)) return;
  if (m.size >= max) {
    const oldest = m.keys().next();
    if (!oldest.done) m.delete(oldest.value);
  }
  if (m instanceof Map) m.set(key, value);
  else m.add(key);
}
