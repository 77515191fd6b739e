/**
 * Where a session's paths come from. A *path source* hands the supervisor
 * one authenticated channel to the server (the handshake done), either for a
 * new session or resuming/joining an existing one; the supervisor decides
 * when to ask, what to do with a failure, and attaches the channel to the
 * session.
 *
 * Today there is one kind, a direct dial: {@link DirectDialSource} dials a
 * stream carrier (TCP, TLS, WS) to the server's endpoint and runs the Noise
 * handshake over it; packet-source.ts does the same over UDP and puts the
 * reliable transport on the packet channel.
 * The sources to come fit the same call: a punched UDP socket (the socket
 * comes from the rendezvous, the handshake runs over a packet record
 * channel), a relay through the server (the carrier connection goes to the
 * relay, which splices it), a WebRTC data channel. Each still ends in a
 * channel plus the server's hello, which is all the supervisor needs.
 */
import { formatEndpoint, type Endpoint, type StreamCarrier } from '../carriers/types.js';
import { clientHandshake, type ClientHandshakeInit } from '../secure/handshake.js';
import type { ServerHello } from '../secure/hello.js';
import type { RecordChannel } from '../secure/record-channel.js';
import type { PathOptions } from '../session/session.js';

/** Which session a path is for, in the client's hello. */
export interface ResumeRequest {
  id: Buffer;
  /** Highest session sequence number we delivered. */
  recvSeq: number;
  /** Add a path to a session that has others (else: resume a detached one). */
  join: boolean;
  backup: boolean;
}

/** What the supervisor asks a source for. */
export interface PathRequest {
  /**
   * Resume (or, with `join`, add a path to) this session; absent: open a new
   * session. Asked for right before the handshake, not when the request is
   * made: whether to join or resume depends on the paths the session has
   * once the carrier is up, which can change while it is dialed.
   */
  resume?: (() => ResumeRequest) | undefined;
  /** Our receive windows, announced in the hello. */
  streamWindow: number;
  sessionWindow: number;
  /** Aborts the attempt (dial and handshake). */
  signal: AbortSignal;
}

/** An authenticated, reliable channel to the server and the server's hello. */
export interface OpenedPath {
  channel: RecordChannel;
  hello: ServerHello;
}

/** One place a path can come from. */
export interface PathSource {
  /** What kind of source: 'direct' (dial), later 'punched', 'relay', 'webrtc'. For logs and status. */
  readonly kind: string;
  /** Where the path goes, for log lines: host:port for a direct dial. */
  readonly name: string;
  /** Role, weight and label of the path it gives. */
  readonly options: PathOptions;
  /**
   * Opens one path. Rejects with the handshake's typed errors (RejectedError
   * for a refusal or an unknown session, TimeoutError, AbortedError) or the
   * carrier's (connection refused, certificate mismatch …).
   */
  open(req: PathRequest): Promise<OpenedPath>;
}

/** The handshake settings a direct dial needs besides the per-request ones. */
export type DialHandshake = Omit<ClientHandshakeInit, 'resume' | 'streamWindow' | 'sessionWindow' | 'signal' | 'timeoutMs'> & {
  /** Dial + handshake each get this long. @default 10000 */
  handshakeTimeoutMs?: number | undefined;
};

/** Dials `carrier` to `endpoint` and runs the client handshake over it. */
export class DirectDialSource implements PathSource {
  readonly kind = 'direct';
  readonly name: string;

  constructor(
    readonly carrier: StreamCarrier,
    readonly endpoint: Endpoint,
    readonly options: PathOptions,
    private readonly handshake: DialHandshake,
  ) {
    this.name = formatEndpoint(endpoint);
  }

  async open(req: PathRequest): Promise<OpenedPath> {
    const hs = this.handshake;
    const conn = await this.carrier.dial(this.endpoint, { signal: req.signal, timeoutMs: hs.handshakeTimeoutMs ?? 10_000 });
    return clientHandshake(
      { stream: conn.stream, remote: conn.remote, local: conn.local, carrier: this.carrier.scheme },
      {
        ...hs,
        resume: req.resume?.(),
        streamWindow: req.streamWindow,
        sessionWindow: req.sessionWindow,
        timeoutMs: hs.handshakeTimeoutMs,
        signal: req.signal,
      },
    );
  }
}
