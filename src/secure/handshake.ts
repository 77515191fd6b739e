/**
 * The polytun handshake over a stream carrier: Noise IK
 * (Noise_IK_25519_ChaChaPoly_SHA256). The client pins the server's static
 * key; the client's own static key identifies the user. Two messages:
 *
 * ```
 * client → server   e, es, s, ss  + ClientHello(64)   = 160 bytes, then pad
 * server → client   e, ee, se     + ServerHello(64)   = 112 bytes, then pad
 * ```
 *
 * Probe resistance: a server that cannot authenticate message 1 (a scanner,
 * a wrong key, garbage, a short message, a FIN) answers nothing: it keeps
 * reading and discarding until one close instant drawn per connection when
 * it arrived, then closes. The instant does not depend on what was sent: a
 * data-dependent close (a timeout for short input, an earlier close once
 * message 1's 160 bytes are in) would tell a prober the message length
 * (Frolov et al., NDSS 2020). A replayed message 1 (timestamp outside the
 * window, or an ephemeral key already seen) is treated the same way.
 * Typed rejects (unauthorized, busy, draining…) go only to clients that
 * proved they know the server's key.
 *
 * TLS binding: over a TLS carrier (tls://, wss://) the client puts its TLS
 * exporter value in its hello (the carrier declares it on the stream:
 * core/stream-caps.ts). When the server's own value for the
 * connection is the same, the TLS session runs end to end between the two
 * processes (no TLS-terminating front or CDN in between), and the server
 * says so in its hello: the channel's records then skip their own
 * encryption (see aead.ts), and TLS 1.3 protects them (confidentiality,
 * integrity, order and replay, forward secrecy). Behind a front, or with
 * `tlsBound: false` on either side, records keep their AEAD.
 *
 * Record cipher: the client's hello says which it can use and prefers, the
 * server's which the records use (cipher.ts): AES-256-GCM when both ends
 * have AES acceleration, ChaCha20-Poly1305 otherwise or with an older peer.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ChunkList } from '../core/chunks.js';
import { AbortedError, AuthError, PolytunError, ProtocolError, RejectCode, RejectedError, TimeoutError, toError } from '../core/errors.js';
import { capabilitiesOf } from '../core/stream-caps.js';
import { SecureChannel, type ChannelInit } from './channel.js';
import {
  CAP_AES_GCM, CAP_DATAGRAM, CAP_RESUME, CAP_TLS_BOUND, HELLO_SIZE, OUR_CAPS, PROTOCOL_VERSION, decodeClientHello, decodeServerHello,
  encodeClientHello, encodeServerHello, type ClientHello, type ServerHello,
} from './hello.js';
import type { KeyPair } from './keys.js';
import { HandshakeState } from './noise.js';
import { RecordOpener, RecordSealer } from './record.js';
import { cipherOfServerCaps, clientCipherCaps, localCipherPolicy, pickCipher, type RecordCipher } from './cipher.js';

export const NOISE_PROTOCOL = 'Noise_IK_25519_ChaChaPoly_SHA256';
const PROLOGUE = Buffer.from('polytun');
export const MSG1_SIZE = 32 + 48 + HELLO_SIZE + 16;
export const MSG2_SIZE = 32 + HELLO_SIZE + 16;

/**
 * What a stream carrier connection looks like to the handshake. The stream's
 * declared capabilities (core/stream-caps.ts) give the TLS binding here and
 * the channel's buffer reuse; a stream that declares none works without.
 */
export interface HandshakeConn {
  stream: Duplex;
  remote: string;
  local: string;
  carrier: string;
}

/** Reads exactly `n` bytes from a stream with a ChunkList, honouring a deadline. */
class Reader {
  readonly input = new ChunkList();
  private waiter: (() => void) | undefined;
  private ended: Error | undefined;
  private readonly onData = (c: Buffer): void => {
    this.input.push(c);
    this.waiter?.();
  };
  private readonly onEnd = (err?: Error): void => {
    this.ended ??= err ?? new ProtocolError('connection closed during handshake');
    this.waiter?.();
  };
  private readonly onClose = (): void => this.onEnd();
  constructor(private readonly stream: Duplex) {
    stream.on('data', this.onData);
    stream.on('end', this.onClose);
    stream.on('close', this.onClose);
    stream.on('error', this.onEnd);
  }
  async read(n: number, signal: AbortSignal): Promise<Buffer> {
    while (this.input.length < n) {
      if (this.ended) throw this.ended;
      if (signal.aborted) throw toError(signal.reason);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.waiter = undefined;
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.waiter = done;
        signal.addEventListener('abort', done, { once: true });
      });
    }
    return this.input.read(n);
  }
  /** Stops listening; returns bytes that arrived past the handshake. */
  detach(): Buffer {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onClose);
    this.stream.off('close', this.onClose);
    this.stream.off('error', this.onEnd);
    return this.input.readAll();
  }
}

function deadline(timeoutMs: number, what: string, outer?: AbortSignal): { signal: AbortSignal; clear: () => void } {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(new TimeoutError(what)), timeoutMs);
  t.unref();
  const onOuter = (): void => ac.abort(new AbortedError(outer?.reason));
  outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: ac.signal,
    clear: () => {
      clearTimeout(t);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

function makeChannel(conn: HandshakeConn, hs: HandshakeState, leftover: Buffer, init: ChannelInit, tlsBound: boolean, cipher: RecordCipher): SecureChannel {
  const { send, recv } = hs.transport();
  return new SecureChannel(
    conn.stream,
    new RecordSealer(send.exportKey(), tlsBound, cipher),
    new RecordOpener(recv.exportKey(), tlsBound, cipher),
    {
      remote: conn.remote,
      local: conn.local,
      carrier: conn.carrier,
      handshakeHash: hs.handshakeHash,
      protection: tlsBound ? 'tls-bound' : 'aead',
      ...(tlsBound ? {} : { cipher }),
    },
    leftover,
    init,
  );
}

// ───────────────────────────── client ─────────────────────────────

export interface ClientHandshakeInit extends ChannelInit {
  serverPublicKey: Buffer;
  clientKeyPair: KeyPair;
  /** Resume this session (id + highest seq we delivered); `join` adds a path instead of replacing. */
  resume?: { id: Buffer; recvSeq: number; join?: boolean; backup?: boolean } | undefined;
  streamWindow: number;
  sessionWindow: number;
  /** @default 10000 */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Random padding after message 1, at most this many bytes. @default 256 */
  maxPadding?: number;
}

export interface ClientHandshakeResult {
  channel: SecureChannel;
  hello: ServerHello;
}

/** Runs the client side. Rejects with RejectedError, AuthError, TimeoutError or AbortedError. */
export async function clientHandshake(conn: HandshakeConn, init: ClientHandshakeInit): Promise<ClientHandshakeResult> {
  const hs = new HandshakeState({
    protocolName: NOISE_PROTOCOL,
    initiator: true,
    prologue: PROLOGUE,
    staticKeyPair: init.clientKeyPair,
    remoteStaticKey: init.serverPublicKey,
  });
  const padLen = randomInt(0, (init.maxPadding ?? 256) + 1);
  const binding = init.tlsBound === false ? undefined : capabilitiesOf(conn.stream).tlsBinding?.();
  const ciphers = localCipherPolicy(init.cipher, init.aesAccelerated);
  const hello: ClientHello = {
    minVersion: PROTOCOL_VERSION,
    maxVersion: PROTOCOL_VERSION,
    caps: OUR_CAPS | clientCipherCaps(ciphers),
    tlsBinding: binding,
    timestampMs: Date.now(),
    resumeId: init.resume?.id,
    recvSeq: init.resume?.recvSeq ?? 0,
    streamWindow: init.streamWindow,
    sessionWindow: init.sessionWindow,
    padLen,
    join: init.resume?.join === true,
    backup: init.resume?.backup === true,
  };
  const reader = new Reader(conn.stream);
  const dl = deadline(init.timeoutMs ?? 10_000, 'handshake', init.signal);
  try {
    conn.stream.write(Buffer.concat([hs.writeMessage(encodeClientHello(hello)), randomBytes(padLen)]));
    let msg2: Buffer;
    try {
      msg2 = await reader.read(MSG2_SIZE, dl.signal);
    } catch (err) {
      if (err instanceof PolytunError && err.code === 'ERR_PROTOCOL') {
        // What we know is only that the server closed without a word: an
        // overloaded server (out of file descriptors) does that at once, a
        // polytun server that cannot authenticate us after its silent delay.
        throw new AuthError(
          'the server closed the connection during the handshake without answering (server overloaded or out of file descriptors, a wrong server key in the link, a clock off by more than the allowed skew, or not a polytun server)',
          { cause: err },
        );
      }
      throw err;
    }
    const sh = decodeServerHello(hs.readMessage(msg2));
    if (sh.padLen > 0) await reader.read(sh.padLen, dl.signal);
    if (sh.status === RejectCode.cipherMismatch) {
      const ours = ciphers.choice === 'auto' ? 'offer both' : `require ${ciphers.choice}`;
      throw new RejectedError(sh.status, `we ${ours}, the server requires ${cipherOfServerCaps(sh.caps)}`);
    }
    if (sh.status !== 0) throw new RejectedError(sh.status);
    if (sh.version !== PROTOCOL_VERSION) throw new ProtocolError(`server chose unsupported version ${sh.version}`);
    const bound = (sh.caps & CAP_TLS_BOUND) !== 0;
    if (bound && binding === undefined) throw new ProtocolError('server chose TLS-bound records, which we did not offer');
    const cipher = cipherOfServerCaps(sh.caps);
    if (cipher === 'aes-256-gcm' && ciphers.choice === 'chacha20-poly1305') throw new ProtocolError('server chose aes-256-gcm records, which we did not offer');
    if (ciphers.choice !== 'auto' && cipher !== ciphers.choice) {
      // Only a server that predates the negotiation answers this way: it knows chacha20-poly1305 only.
      throw new RejectedError(RejectCode.cipherMismatch, `we require ${ciphers.choice}, the server (an older polytun) speaks only ${cipher}`);
    }
    const leftover = reader.detach();
    return { channel: makeChannel(conn, hs, leftover, init, bound, cipher), hello: sh };
  } catch (err) {
    reader.detach();
    conn.stream.destroy();
    throw err;
  } finally {
    dl.clear();
  }
}

// ───────────────────────────── server ─────────────────────────────

/** The server's verdict on an authenticated client hello. */
export type Admission =
  | { accept: true; sessionId: Buffer; recvSeq: number; resumed: boolean; streamWindow: number; sessionWindow: number }
  | { accept: false; reject: number; detail?: string };

export interface ServerHandshakeInit extends ChannelInit {
  staticKeyPair: KeyPair;
  /** Decides on an authenticated client (its static key and hello). */
  admit: (clientKey: Buffer, hello: ClientHello) => Admission | Promise<Admission>;
  replay: ReplayGuard;
  /**
   * Message 1 must arrive before the connection's close instant, drawn from
   * `closeDelayMs(timeoutMs)`: by default uniform in [timeoutMs, 2 × timeoutMs].
   * @default 10000
   */
  timeoutMs?: number | undefined;
  /** Draws one connection's close instant, ms after it arrived (tests inject a fixed one). @default closeDelay */
  closeDelayMs?: (timeoutMs: number) => number;
  /** Accepted difference between client and server clocks. @default 300000 */
  maxSkewMs?: number | undefined;
  /** @default 256 */
  maxPadding?: number;
  signal?: AbortSignal | undefined;
  /** Called for silent drops (probe, replay, skew): for logs and metrics. */
  onDrop?: (reason: string, detail?: Record<string, unknown>) => void;
}

export interface ServerHandshakeResult {
  channel: SecureChannel;
  clientKey: Buffer;
  hello: ClientHello;
  admission: Extract<Admission, { accept: true }>;
}

/** Thrown (after the silent close) when a connection was dropped without an answer. */
export class SilentDropError extends PolytunError {
  constructor(readonly reason: string) {
    super('ERR_HANDSHAKE_DROPPED', `handshake dropped: ${reason}`);
  }
}

/**
 * Keeps recently seen handshake ephemerals so a captured message 1 cannot be
 * replayed to make the server answer. Entries live for twice the clock skew.
 * Bounded: when full, new handshakes are dropped (unauthenticated work is
 * dropped under load, not queued).
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs = 600_000,
    private readonly max = 200_000,
  ) {}
  /** Returns false if `key` was seen (replay) or the guard is full. */
  remember(key: Buffer, now = Date.now()): boolean {
    const k = key.toString('base64');
    if (this.seen.has(k)) return false;
    if (this.seen.size >= this.max) {
      for (const [kk, exp] of this.seen) if (exp <= now) this.seen.delete(kk);
      if (this.seen.size >= this.max) return false;
    }
    this.seen.set(k, now + this.ttlMs);
    return true;
  }
  /** True if `key` was remembered (a replay), without remembering it: the packet responder asks before it spends a cookie reply. */
  has(key: Buffer): boolean {
    return this.seen.has(key.toString('base64'));
  }
  get size(): number {
    return this.seen.size;
  }
}

/**
 * The default close schedule: uniform in [timeoutMs, 2 × timeoutMs] (10–20 s
 * by default), drawn once per connection. The lower bound leaves a genuine
 * client the whole handshake timeout to send message 1.
 */
export function closeDelay(timeoutMs: number): number {
  return timeoutMs + randomInt(0, Math.max(1, timeoutMs) + 1);
}

/** Bytes a silently dropped connection may still send us; then we stop reading (TCP flow control holds the rest). */
export const DISCARD_CAP_BYTES = 64 * 1024;

/**
 * Reads and discards until `closeAt` aborts, then closes: the same instant
 * whatever arrived (bytes, a FIN). Past DISCARD_CAP_BYTES the stream is
 * paused rather than closed early, so volume does not move the close either.
 */
function silentClose(stream: Duplex, closeAt: AbortSignal): void {
  let left = DISCARD_CAP_BYTES;
  stream.removeAllListeners('data');
  stream.on('data', (c: Buffer) => {
    left -= c.length;
    if (left <= 0) stream.pause();
  });
  stream.on('end', () => undefined); // a half-close changes nothing: we close at closeAt
  stream.on('error', () => undefined); // the prober may reset; nothing to report
  if (closeAt.aborted) return void stream.destroy();
  const close = (): void => void stream.destroy();
  closeAt.addEventListener('abort', close, { once: true });
  stream.once('close', () => closeAt.removeEventListener('abort', close));
}

/**
 * True when the client's TLS exporter value (sent inside message 1, so
 * authenticated by its static key and hidden from everyone else) equals
 * ours: the client's TLS session is the one we terminated, with no TLS
 * front in between that could read the records.
 */
function sameTlsSession(conn: HandshakeConn, hello: ClientHello): boolean {
  if (hello.tlsBinding === undefined) return false;
  const mine = capabilitiesOf(conn.stream).tlsBinding?.();
  return mine !== undefined && mine.length === hello.tlsBinding.length && timingSafeEqual(mine, hello.tlsBinding);
}

/** Runs the server side. Rejects with SilentDropError, RejectedError (sent to the client) or TimeoutError. */
export async function serverHandshake(conn: HandshakeConn, init: ServerHandshakeInit): Promise<ServerHandshakeResult> {
  const timeoutMs = init.timeoutMs ?? 10_000;
  const hs = new HandshakeState({
    protocolName: NOISE_PROTOCOL,
    initiator: false,
    prologue: PROLOGUE,
    staticKeyPair: init.staticKeyPair,
  });
  const reader = new Reader(conn.stream);
  // One deadline: message 1 must be in by then, and a dropped connection is
  // closed exactly then (the timer is kept running for that; see silentClose).
  const dl = deadline((init.closeDelayMs ?? closeDelay)(timeoutMs), 'handshake', init.signal);
  let dropped = false;
  const drop = (reason: string, detail?: Record<string, unknown>): never => {
    dropped = true;
    reader.detach();
    init.onDrop?.(reason, detail);
    silentClose(conn.stream, dl.signal);
    throw new SilentDropError(reason);
  };
  try {
    let msg1: Buffer;
    try {
      msg1 = await reader.read(MSG1_SIZE, dl.signal);
    } catch (err) {
      if (err instanceof TimeoutError) return drop('timeout');
      // The peer half-closed before a full message 1: still close on schedule.
      if (err instanceof ProtocolError && !conn.stream.destroyed) return drop('closed-early');
      throw err;
    }
    let hello: ClientHello;
    try {
      hello = decodeClientHello(hs.readMessage(msg1));
    } catch {
      return drop('unauthenticated');
    }
    const skew = hello.timestampMs - Date.now();
    const clientKey = hs.remoteStaticKey as Buffer;
    if (Math.abs(skew) > (init.maxSkewMs ?? 300_000)) return drop('clock-skew', { skewMs: skew, clientKey: clientKey.toString('base64url') });
    if (!init.replay.remember(msg1.subarray(0, 32))) return drop('replay');
    if (hello.padLen > 0) await reader.read(hello.padLen, dl.signal);

    let admission: Admission;
    // The cipher first: a client we cannot talk to costs no admission (no session slot, no user lookup).
    const pick = pickCipher(localCipherPolicy(init.cipher, init.aesAccelerated), hello.caps);
    if (hello.maxVersion < PROTOCOL_VERSION || hello.minVersion > PROTOCOL_VERSION) admission = { accept: false, reject: RejectCode.unsupportedVersion };
    else if ('reject' in pick) admission = { accept: false, reject: pick.reject, detail: pick.detail };
    else admission = await init.admit(clientKey, hello);
    const cipher: RecordCipher = 'cipher' in pick ? pick.cipher : pick.serverWants;

    const padLen = randomInt(0, (init.maxPadding ?? 256) + 1);
    const bound = admission.accept && init.tlsBound !== false && sameTlsSession(conn, hello);
    const sh: ServerHello = admission.accept
      ? {
          status: 0,
          version: PROTOCOL_VERSION,
          caps: (OUR_CAPS & hello.caps & (CAP_DATAGRAM | CAP_RESUME)) | (bound ? CAP_TLS_BOUND : 0) | (cipher === 'aes-256-gcm' ? CAP_AES_GCM : 0),
          sessionId: admission.sessionId,
          recvSeq: admission.recvSeq,
          resumed: admission.resumed,
          streamWindow: admission.streamWindow,
          sessionWindow: admission.sessionWindow,
          padLen,
        }
      : { status: admission.reject, version: PROTOCOL_VERSION, caps: cipher === 'aes-256-gcm' ? CAP_AES_GCM : 0, sessionId: Buffer.alloc(16), recvSeq: 0, resumed: false, streamWindow: 0, sessionWindow: 0, padLen };
    conn.stream.write(Buffer.concat([hs.writeMessage(encodeServerHello(sh)), randomBytes(padLen)]));
    if (!admission.accept) {
      reader.detach();
      conn.stream.end();
      setTimeout(() => conn.stream.destroy(), 2000).unref();
      throw new RejectedError(admission.reject, admission.detail);
    }
    const leftover = reader.detach();
    return { channel: makeChannel(conn, hs, leftover, init, bound, cipher), clientKey, hello, admission };
  } catch (err) {
    if (!(err instanceof SilentDropError) && !(err instanceof RejectedError)) {
      reader.detach();
      conn.stream.destroy();
    }
    throw err;
  } finally {
    if (!dropped) dl.clear();
  }
}
