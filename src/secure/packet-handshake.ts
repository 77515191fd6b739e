/**
 * The Noise IK handshake in datagrams (groundwork for issue 17): the
 * client side, and what both sides share. The server side is
 * packet-responder.ts.
 *
 * ```
 * client → server  initiation: Noise msg1 (e, es, s, ss) + ClientHello 64 + client index 4
 * server → client  [cookie reply: sealed cookie — the client repeats its initiation with mac2]
 * server → client  response:   Noise msg2 (e, ee, se) + ServerHello 64 + server index 4 + header key 16
 * ```
 * (framing and obfuscation: packet-wire.ts; cookies: cookie.ts). Each
 * message fits one datagram of at most 1200 bytes.
 *
 * The client sends its initiation, then the same datagram again (mac2
 * refreshed when a cookie came) after `initialRetransmitMs`, doubling up to
 * `maxRetransmitMs`, until a response arrives or `timeoutMs` passes, all on
 * the injected Clock. The server answers a repeated initiation with the
 * same response and no second session (packet-responder.ts), so a lost
 * response costs one retransmission.
 *
 * Keys: the Noise split gives one key per direction. Headers are masked
 * client → server with the server's one header key (given in the response,
 * so only admitted clients learn it; the server must unmask before it knows
 * the session), server → client with a key derived from the handshake hash.
 */
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import type { Clock, TimerHandle } from '../core/clock.js';
import { AbortedError, AuthError, ProtocolError, RejectCode, RejectedError, TimeoutError, toError } from '../core/errors.js';
import { cipherOfServerCaps, clientCipherCaps, localCipherPolicy, type CipherChoice, type RecordCipher } from './cipher.js';
import { openCookieReply } from './cookie.js';
import {
  HELLO_SIZE, OUR_CAPS, PROTOCOL_VERSION, decodeServerHello, encodeClientHello, type ClientHello, type ServerHello,
} from './hello.js';
import type { KeyPair } from './keys.js';
import { HandshakeState } from './noise.js';
import { PacketRecordChannel, type DatagramPort, type PacketChannelInit, type PacketChannelKeys } from './packet-channel.js';
import {
  DEFAULT_DATAGRAM_SIZE, TRANSPORT_PARAMS, HS_COOKIE, MAC, macEqual, HS_INITIATION, HS_RESPONSE, MIN_INITIATION, RESP_MSG, decodeHandshake, encodeHandshake, mac1Of, serverPublicKeys, setMac2,
} from './packet-wire.js';

export const PACKET_NOISE_PROTOCOL = 'Noise_IK_25519_ChaChaPoly_SHA256';
/** Distinct from the stream handshake's, so a message of one cannot be replayed as the other. */
export const PACKET_PROLOGUE = Buffer.from('polytun udp v1');

/** The server → client header key, from the handshake hash. */
export function s2cMaskKey(handshakeHash: Buffer): Buffer {
  return createHmac('sha256', handshakeHash).update('polytun udp hp s2c').digest().subarray(0, 16);
}

/** A random non-zero 32-bit index. */
export function randomIndex(): number {
  return randomBytes(4).readUInt32BE(0) || 1;
}

/**
 * The client's message-1 payload: hello, the index it wants in the
 * server's headers, and its transport parameters (what it asks of the
 * server's sending side; zeros: the server's defaults).
 */
export function encodeInitPayload(hello: ClientHello, index: number, params?: Buffer): Buffer {
  const b = Buffer.alloc(HELLO_SIZE + 4 + TRANSPORT_PARAMS);
  encodeClientHello(hello).copy(b, 0);
  b.writeUInt32BE(index >>> 0, HELLO_SIZE);
  if (params !== undefined) {
    if (params.length !== TRANSPORT_PARAMS) throw new RangeError(`transport parameters must be ${TRANSPORT_PARAMS} bytes`);
    params.copy(b, HELLO_SIZE + 4);
  }
  return b;
}

/** The server's message-2 payload: hello, its index, and the client → server header key. */
export function encodeRespPayload(hello: Buffer, index: number, c2sMask: Buffer): Buffer {
  const b = Buffer.alloc(HELLO_SIZE + 4 + 16);
  hello.copy(b, 0);
  b.writeUInt32BE(index >>> 0, HELLO_SIZE);
  c2sMask.copy(b, HELLO_SIZE + 4);
  return b;
}

/** The channel keys of a finished handshake, seen from `hs`'s side. */
export function channelKeys(hs: HandshakeState, cipher: RecordCipher, localIndex: number, remoteIndex: number, c2sMask: Buffer): PacketChannelKeys {
  const { send, recv } = hs.transport();
  const hash = hs.handshakeHash;
  const s2c = s2cMaskKey(hash);
  return {
    cipher,
    sendKey: send.exportKey(),
    recvKey: recv.exportKey(),
    sendMask: hs.initiator ? c2sMask : s2c,
    recvMask: hs.initiator ? s2c : c2sMask,
    localIndex,
    remoteIndex,
    handshakeHash: hash,
  };
}

/** Options of {@link packetClientHandshake}. */
export interface PacketClientInit extends PacketChannelInit {
  serverPublicKey: Buffer;
  clientKeyPair: KeyPair;
  streamWindow: number;
  sessionWindow: number;
  /** Resume this session (id + highest seq we delivered); `join` adds a path instead of replacing. */
  resume?: { id: Buffer; recvSeq: number; join?: boolean; backup?: boolean } | undefined;
  /** Carrier name in the channel's info. @default 'udp' */
  carrier?: string;
  /** What we ask of the server's sending side (TRANSPORT_PARAMS bytes, arq/cc-choice.ts). @default zeros: its defaults */
  transportParams?: Buffer | undefined;
  /** Give up after this long without a response, ms. @default 10000 */
  timeoutMs?: number;
  /** First retransmission after this long, ms; doubles each time. @default 500 */
  initialRetransmitMs?: number;
  /** Retransmission interval cap, ms. @default 4000 */
  maxRetransmitMs?: number;
  /** Random padding of the initiation, at most this many bytes. @default 256 */
  handshakePadding?: number;
  /** Record cipher choice (cipher.ts). @default 'auto' */
  cipher?: CipherChoice;
  aesAccelerated?: boolean;
  /** Wall clock for the hello's timestamp (the server checks skew). @default Date.now */
  wallClock?: () => number;
  signal?: AbortSignal;
}

/** What the client learns. */
export interface PacketClientResult {
  channel: PacketRecordChannel;
  hello: ServerHello;
  /** Initiations sent (1 + retransmissions), and cookie replies honoured. */
  initiationsSent: number;
  cookies: number;
}

/**
 * Runs the client side over `port`, which it keeps (the channel then owns
 * it: the channel's end closes it). Rejects with TimeoutError, RejectedError,
 * ProtocolError or AbortedError; the port is closed on failure.
 */
export function packetClientHandshake(port: DatagramPort, init: PacketClientInit): Promise<PacketClientResult> {
  const keys = serverPublicKeys(init.serverPublicKey);
  const clock: Clock = init.clock;
  const hs = new HandshakeState({ protocolName: PACKET_NOISE_PROTOCOL, initiator: true, prologue: PACKET_PROLOGUE, staticKeyPair: init.clientKeyPair, remoteStaticKey: init.serverPublicKey });
  const ciphers = localCipherPolicy(init.cipher, init.aesAccelerated);
  const localIndex = randomIndex();
  const hello: ClientHello = {
    minVersion: PROTOCOL_VERSION,
    maxVersion: PROTOCOL_VERSION,
    caps: OUR_CAPS | clientCipherCaps(ciphers),
    timestampMs: (init.wallClock ?? Date.now)(),
    resumeId: init.resume?.id,
    recvSeq: init.resume?.recvSeq ?? 0,
    streamWindow: init.streamWindow,
    sessionWindow: init.sessionWindow,
    padLen: 0,
    join: init.resume?.join === true,
    backup: init.resume?.backup === true,
  };
  const msg1 = hs.writeMessage(encodeInitPayload(hello, localIndex, init.transportParams));
  const maxSize = Math.min(init.maxDatagramSize ?? DEFAULT_DATAGRAM_SIZE, port.maxPacketSize);
  const pad = randomInt(0, Math.max(0, Math.min(init.handshakePadding ?? 256, maxSize - MIN_INITIATION)) + 1);
  const initiation = encodeHandshake(keys, HS_INITIATION, msg1, MIN_INITIATION + pad);
  const mac1 = Buffer.from(mac1Of(initiation));
  let cookie: Buffer | undefined;
  let sent = 0;
  let cookies = 0;

  return new Promise<PacketClientResult>((resolve, reject) => {
    let rto = init.initialRetransmitMs ?? 500;
    let retransmit: TimerHandle | undefined;
    let finished = false;
    const send = (): void => {
      sent++;
      port.send([initiation]);
    };
    const arm = (): void => {
      clock.clear(retransmit);
      retransmit = clock.setTimeout(() => {
        send();
        rto = Math.min(rto * 2, init.maxRetransmitMs ?? 4000);
        arm();
      }, rto);
    };
    const done = (err: Error | undefined, result?: PacketClientResult): void => {
      if (finished) return;
      finished = true;
      clock.clear(retransmit);
      clock.clear(deadline);
      init.signal?.removeEventListener('abort', onAbort);
      if (err !== undefined) {
        port.close();
        reject(err);
      } else resolve(result as PacketClientResult);
    };
    const deadline = clock.setTimeout(() => done(new TimeoutError('udp handshake (no response from the server: wrong server key in the link, blocked UDP, or not a polytun server)')), init.timeoutMs ?? 10_000);
    const onAbort = (): void => done(new AbortedError(init.signal?.reason));
    init.signal?.addEventListener('abort', onAbort, { once: true });

    let channel: PacketRecordChannel | undefined;
    const onDatagram = (d: Buffer): void => {
      if (channel !== undefined) return void channel.receive(d);
      const hd = d.length >= 1 + 16 + 1 ? decodeHandshake(keys, d, false) : undefined;
      if (hd === undefined) return;
      if (hd.type === HS_COOKIE) {
        const c = openCookieReply(keys, hd.body, mac1);
        if (c === undefined || (cookie !== undefined && c.equals(cookie))) return;
        cookie = c;
        cookies++;
        setMac2(initiation, cookie);
        send(); // at once: the server is waiting for proof of our address, not for a timer
        arm();
        return;
      }
      // A response echoes our mac1: one that does not is not the server's answer (an off-path sender cannot know it).
      if (hd.type !== HS_RESPONSE || hd.body.length < MAC + RESP_MSG || !macEqual(hd.body.subarray(0, MAC), mac1)) return;
      let payload: Buffer;
      try {
        payload = hs.readMessage(hd.body.subarray(MAC, MAC + RESP_MSG));
      } catch (err) {
        // Not from the server (anyone can send us a datagram): the state is dead, so is this handshake.
        return done(new AuthError('udp handshake response did not authenticate', { cause: err }));
      }
      try {
        channel = finish(payload);
        done(undefined, { channel, hello: decodeServerHello(payload.subarray(0, HELLO_SIZE)), initiationsSent: sent, cookies });
      } catch (err) {
        done(toError(err));
      }
    };
    const finish = (payload: Buffer): PacketRecordChannel => {
      const sh = decodeServerHello(payload.subarray(0, HELLO_SIZE));
      if (sh.status === RejectCode.cipherMismatch) throw new RejectedError(sh.status, `the server requires ${cipherOfServerCaps(sh.caps)}`);
      if (sh.status !== 0) throw new RejectedError(sh.status);
      if (sh.version !== PROTOCOL_VERSION) throw new ProtocolError(`server chose unsupported version ${sh.version}`);
      const cipher = cipherOfServerCaps(sh.caps);
      if (cipher === 'aes-256-gcm' && ciphers.choice === 'chacha20-poly1305') throw new ProtocolError('server chose aes-256-gcm records, which we did not offer');
      if (ciphers.choice !== 'auto' && cipher !== ciphers.choice) throw new RejectedError(RejectCode.cipherMismatch, `we require ${ciphers.choice}, the server chose ${cipher}`);
      const remoteIndex = payload.readUInt32BE(HELLO_SIZE);
      const c2s = Buffer.from(payload.subarray(HELLO_SIZE + 4, HELLO_SIZE + 20));
      const ch = new PacketRecordChannel(channelKeys(hs, cipher, localIndex, remoteIndex, c2s), port, init.carrier ?? 'udp', init);
      ch.onClose(() => ch.port.close());
      return ch;
    };
    port.onPackets((batch) => {
      for (const d of batch) {
        try {
          onDatagram(d);
        } catch {
          // never out of the receive path: a datagram we cannot read is dropped
        }
      }
    });
    if (init.signal?.aborted) return onAbort();
    send();
    arm();
  });
}

/**
 * Moves a client channel to a new socket (the old one is closed): what a
 * NAT rebinding or a network change looks like from the client. The server
 * follows the first authenticated datagram from the new address.
 */
export function rebindClient(channel: PacketRecordChannel, port: DatagramPort): void {
  const old = channel.port;
  channel.moveTo(port);
  port.onPackets((batch) => {
    for (const d of batch) channel.receive(d);
  });
  channel.onClose(() => port.close());
  if (old !== port) old.close();
}
