/**
 * The client's UDP associations (SOCKS5 UDP ASSOCIATE, -L …/udp): each is a
 * flow id on the session's datagram lane. This table hands out flow ids,
 * sends a datagram on the current session, routes the server's replies to
 * their association by flow id, and counts both ways for status.
 *
 * Per datagram: one encode on the way out, one decode on the way in, no
 * closure; the counters are plain fields (read by status and metrics).
 */
import type { Destination } from '../core/address.js';
import { toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { decodeUdp, encodeUdp, UDP_FLOW_FIRST, UDP_FLOW_LAST } from '../proxy/wire.js';
import type { Session } from '../session/session.js';

/** One UDP association: a flow id on the datagram lane. */
export interface UdpAssociation {
  /** The flow id (unique within this ProxyClient). */
  readonly flow: number;
  /** Sends `data` to `dest` through the server. False when the datagram was dropped (no path, queue full, too large, closed). */
  send(dest: Destination, data: Buffer): boolean;
  /**
   * Sets the receiver of replies. `data` is a view into the received record:
   * copy it if it must outlive the callback.
   */
  onMessage(handler: (src: Destination, data: Buffer) => void): void;
  /** Stops receiving and frees the flow id. Idempotent. */
  close(): void;
}

/** UDP relayed by one ProxyClient (SOCKS5 UDP ASSOCIATE and -L …/udp), since it was made. */
export interface UdpTraffic {
  /** Datagrams handed to the session towards the server, and their payload bytes. */
  udpDatagramsSent: number;
  udpBytesSent: number;
  /** Datagrams received from the server for a live association, and their payload bytes. */
  udpDatagramsReceived: number;
  udpBytesReceived: number;
}

/** The flow table of one ProxyClient. */
export class UdpFlows {
  private readonly flows = new Map<number, UdpAssociationImpl>();
  private nextFlow = 1;
  private readonly udp: UdpTraffic = { udpDatagramsSent: 0, udpBytesSent: 0, udpDatagramsReceived: 0, udpBytesReceived: 0 };

  /** `current` returns the session to send on now, or throws when there is none. */
  constructor(
    private readonly current: () => Session,
    private readonly log: Logger,
  ) {}

  /** Counters (a copy): the session's byte counters count stream data only. */
  get traffic(): UdpTraffic {
    return { ...this.udp };
  }

  /** Registers the UDP counters (read when collected: nothing per datagram). */
  registerMetrics(metrics: Metrics): void {
    const u = this.udp;
    metrics.registerCounterGroup('polytun_client_udp_datagrams_total', { help: 'UDP datagrams relayed (SOCKS5 UDP ASSOCIATE, -L …/udp)', label: 'direction', collect: () => ({ sent: u.udpDatagramsSent, received: u.udpDatagramsReceived }) });
    metrics.registerCounterGroup('polytun_client_udp_bytes_total', { help: 'UDP payload bytes relayed', label: 'direction', collect: () => ({ sent: u.udpBytesSent, received: u.udpBytesReceived }) });
  }

  /** A new UDP association with a fresh flow id. */
  associate(): UdpAssociation {
    let flow = this.nextFlow;
    // Only ids of the proxy's datagram lane (the others belong to other applications).
    while (this.flows.has(flow) || flow < UDP_FLOW_FIRST || flow > UDP_FLOW_LAST) flow = flow >= UDP_FLOW_LAST ? UDP_FLOW_FIRST : (flow + 1) >>> 0;
    this.nextFlow = (flow + 1) >>> 0;
    const a = new UdpAssociationImpl(this, flow);
    this.flows.set(flow, a);
    return a;
  }

  /** @internal */
  send(flow: number, dest: Destination, data: Buffer): boolean {
    let s: Session;
    try {
      s = this.current();
    } catch (err) {
      this.log.debug({ err: toError(err).message }, 'udp datagram dropped: no session');
      return false;
    }
    if (!s.sendDatagram(flow, encodeUdp(dest, data))) return false;
    this.udp.udpDatagramsSent++;
    this.udp.udpBytesSent += data.length;
    return true;
  }

  /** @internal */
  release(a: UdpAssociationImpl): void {
    if (this.flows.get(a.flow) === a) this.flows.delete(a.flow);
  }

  /** A datagram from the server (the session's datagram handler). */
  receive(flow: number, payload: Buffer): void {
    const a = this.flows.get(flow);
    if (!a) return; // an association closed while replies were in flight
    let msg: { addr: Destination; data: Buffer };
    try {
      msg = decodeUdp(payload);
    } catch (err) {
      this.log.debug({ flow, err: toError(err).message }, 'malformed udp datagram from server dropped');
      return;
    }
    this.udp.udpDatagramsReceived++;
    this.udp.udpBytesReceived += msg.data.length;
    a.deliver(msg.addr, msg.data);
  }
}

class UdpAssociationImpl implements UdpAssociation {
  private handler: ((src: Destination, data: Buffer) => void) | undefined;
  private closed = false;

  constructor(private readonly owner: UdpFlows, readonly flow: number) {}

  send(dest: Destination, data: Buffer): boolean {
    if (this.closed) return false;
    return this.owner.send(this.flow, dest, data);
  }

  onMessage(handler: (src: Destination, data: Buffer) => void): void {
    this.handler = handler;
  }

  deliver(src: Destination, data: Buffer): void {
    if (!this.closed) this.handler?.(src, data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = undefined;
    this.owner.release(this);
  }
}
