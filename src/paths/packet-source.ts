/**
 * A path over a packet carrier (UDP): dial the server's address, run the
 * Noise handshake over datagrams (secure/packet-handshake.ts, which
 * retransmits its messages and honours cookies), and put our reliable
 * transport (arq/arq-channel.ts) on the packet channel, so the session gets
 * the reliable record channel it gets from a TCP path.
 */
import { ArqRecordChannel } from '../arq/arq-channel.js';
import { DEFAULT_UDP_MODE, UDP_MODE_KNOBS, encodeTransportParams, formatCc, makeController, type CcChoice, type UdpMode } from '../arq/cc-choice.js';
import { formatEndpoint, type Endpoint, type PacketCarrier } from '../carriers/types.js';
import { realClock, type Clock } from '../core/clock.js';
import type { CipherChoice } from '../secure/cipher.js';
import type { KeyPair } from '../secure/keys.js';
import type { PacketRecordChannel } from '../secure/packet-channel.js';
import { packetClientHandshake } from '../secure/packet-handshake.js';
import { TRANSPORT_OVERHEAD } from '../secure/packet-wire.js';
import type { PathOptions } from '../session/session.js';
import type { OpenedPath, PathRequest, PathSource } from './source.js';

/** Largest UDP payload by default: a 1500-byte path with IPv6 and UDP headers (WireGuard's choice too). */
export const DEFAULT_UDP_DATAGRAM = 1452;

/** IPv4 + UDP headers: what a datagram costs on the wire besides its payload (for the controller's accounting). */
export const UDP_IP_OVERHEAD = 28;

/** The settings a packet dial needs besides the per-request ones. */
export interface PacketDialInit {
  serverPublicKey: Buffer;
  clientKeyPair: KeyPair;
  cipher?: CipherChoice | undefined;
  aesAccelerated?: boolean | undefined;
  /** Dial + handshake get this long. @default 10000 */
  handshakeTimeoutMs?: number | undefined;
  /** Congestion controller of our sending side, and the one we ask the server to send with. @default bbr (the server's choice) */
  cc?: CcChoice | undefined;
  /** ACK knobs of both ends (kcptun's mode names). @default 'fast' */
  udpMode?: UdpMode | undefined;
  /** Largest datagram, bytes. @default 1452 (a 1500-byte path) */
  maxDatagramSize?: number | undefined;
  /** @default realClock */
  clock?: Clock | undefined;
}

/** How one end of a udp path sends: its controller and the mode's ACK knobs. */
export interface UdpTransportInit {
  cc: CcChoice;
  /**
   * The controller the other end sends with, as far as this end knows: our
   * ACKs are decimated for a model-based sender only (CUBIC's window grows
   * slower on a tenth of the ACKs: two flows at 2 % loss got 12 % of the
   * link instead of 18 % in the simulation).
   */
  peerCc: CcChoice | undefined;
  mode: UdpMode;
  clock: Clock;
}

/**
 * Our reliable transport on a packet channel, as both ends of a udp path
 * build it (the client here, the server in session-server.ts): the
 * controller sized to the datagram on the wire, the mode's ACK knobs.
 */
export function udpTransport(inner: PacketRecordChannel, t: UdpTransportInit): ArqRecordChannel {
  const overhead = TRANSPORT_OVERHEAD + UDP_IP_OVERHEAD;
  const knobs = UDP_MODE_KNOBS[t.mode];
  return new ArqRecordChannel(inner, {
    clock: t.clock,
    cc: makeController(t.cc, inner.maxRecord + overhead),
    ccName: formatCc(t.cc),
    packetOverhead: overhead,
    headerBytes: UDP_IP_OVERHEAD,
    ...knobs,
    ...(t.peerCc?.kind === 'cubic' ? { ackEveryBulk: knobs.ackEvery } : {}),
  });
}

/** Dials `carrier` to `endpoint`, runs the packet handshake and puts ARQ on the channel. */
export class PacketDialSource implements PathSource {
  readonly kind = 'direct';
  readonly name: string;

  constructor(
    readonly carrier: PacketCarrier,
    readonly endpoint: Endpoint,
    readonly options: PathOptions,
    private readonly init: PacketDialInit,
  ) {
    this.name = formatEndpoint(endpoint);
  }

  async open(req: PathRequest): Promise<OpenedPath> {
    const init = this.init;
    const clock = init.clock ?? realClock;
    const timeoutMs = init.handshakeTimeoutMs ?? 10_000;
    const port = await this.carrier.dial(this.endpoint, { signal: req.signal, timeoutMs });
    const r = await packetClientHandshake(port, {
      clock,
      serverPublicKey: init.serverPublicKey,
      clientKeyPair: init.clientKeyPair,
      streamWindow: req.streamWindow,
      sessionWindow: req.sessionWindow,
      resume: req.resume?.(),
      carrier: this.carrier.scheme,
      transportParams: encodeTransportParams({ cc: init.cc, mode: init.udpMode ?? DEFAULT_UDP_MODE }),
      timeoutMs,
      signal: req.signal,
      maxDatagramSize: init.maxDatagramSize ?? DEFAULT_UDP_DATAGRAM,
      ...(init.cipher !== undefined ? { cipher: init.cipher } : {}),
      ...(init.aesAccelerated !== undefined ? { aesAccelerated: init.aesAccelerated } : {}),
    });
    // The server sends as we asked, or (asked nothing) with its own --cc, bbr unless its admin chose otherwise.
    const channel = udpTransport(r.channel, { cc: init.cc ?? { kind: 'bbr' }, peerCc: init.cc, mode: init.udpMode ?? DEFAULT_UDP_MODE, clock });
    return { channel, hello: r.hello };
  }
}
