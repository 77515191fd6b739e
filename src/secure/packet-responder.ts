/**
 * The server side of the packet secure channel (groundwork for issue 17):
 * one responder takes every datagram of a UDP listener, whichever
 * association (source address:port) it came from, and
 *
 * - hands transport datagrams to the session whose index their masked
 *   header names; an authenticated, fresh and newest datagram from another
 *   source moves the session there (roaming, as WireGuard does: NAT
 *   rebinding, Wi-Fi → mobile), and nothing else moves it;
 * - answers initiations (packet-handshake.ts): mac1 first (one HMAC, no DH),
 *   then, when cookies are asked for, mac2 (cookie.ts), then Noise, the
 *   clock skew and the replay guard, then `admit`;
 * - drops everything else, counted, without a byte back.
 *
 * Cookies: asked for when `cookies` is 'always', or 'under-load' (the
 * default) once `loadThreshold` initiations have reached the DH in the
 * current second or half the handshake table is in use. Under load a
 * spoofed source then costs one HMAC and a cookie reply, never a DH or a
 * table entry. Not always: an honest client would pay a round trip on every
 * handshake for an attack that is not happening (WireGuard's choice too).
 *
 * No amplification: whatever the server sends a source it has not
 * authenticated (a cookie reply, a response, a typed reject, a repeated
 * response) is no bigger than the datagram it answers; the smallest
 * initiation (221 bytes) is larger than the largest answer before padding,
 * and padding only fills the difference.
 *
 * Idempotence: a repeated initiation (the same Noise message 1, by its
 * ephemeral key) from the same source gets the same response datagram, and
 * no second session, for `answeredTtlMs`; from another source, or later,
 * it gets nothing (the replay guard): a prober replaying a captured
 * initiation learns nothing, as on TCP (handshake.ts). One gap is left: a
 * capture replayed elsewhere before its sender's Noise message was ever
 * read (its sender still waiting for a cookie) gets a cookie reply.
 *
 * Bounded work and memory under a flood: the handshake table holds at most
 * `maxHandshakes` entries (beyond: dropped, not queued), the replay guard is
 * bounded, and every datagram costs at most one AES block, one HMAC and, only
 * past mac1 and the cookie, a Noise read.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { RejectCode } from '../core/errors.js';
import { localCipherPolicy, pickCipher, type CipherChoice, type RecordCipher } from './cipher.js';
import { CookieJar, encodeCookieReply } from './cookie.js';
import { ReplayGuard, type Admission } from './handshake.js';
import { CAP_AES_GCM, CAP_DATAGRAM, CAP_RESUME, HELLO_SIZE, OUR_CAPS, PROTOCOL_VERSION, decodeClientHello, encodeServerHello, type ClientHello, type ServerHello } from './hello.js';
import type { KeyPair } from './keys.js';
import { HandshakeState } from './noise.js';
import { PacketRecordChannel, type DatagramPort, type PacketChannelInit } from './packet-channel.js';
import { PACKET_NOISE_PROTOCOL, PACKET_PROLOGUE, channelKeys, encodeRespPayload, randomIndex } from './packet-handshake.js';
import {
  HEADER, HS_INITIATION, HS_RESPONSE, HeaderMask, INIT_MSG, TRANSPORT_PARAMS, MIN_INITIATION, MIN_RESPONSE, TAG, checkMac1, decodeHandshake, encodeHandshake, mac1Of, readHeader, serverPublicKeys, type ServerPublicKeys,
} from './packet-wire.js';

/** Options of a {@link PacketResponder}. */
export interface PacketResponderInit extends PacketChannelInit {
  staticKeyPair: KeyPair;
  /** Decides on an authenticated client (its static key and hello), as the stream handshake's. */
  admit: (clientKey: Buffer, hello: ClientHello) => Admission | Promise<Admission>;
  /** @default a new ReplayGuard */
  replay?: ReplayGuard;
  /** When initiations must carry a cookie (see the file comment). @default 'under-load' */
  cookies?: 'always' | 'under-load';
  /** Initiations per second reaching the DH before cookies are asked for. @default 200 */
  loadThreshold?: number;
  /** Handshakes held (answered or awaiting admission); beyond, initiations are dropped. @default 4096 */
  maxHandshakes?: number;
  /** How long a response is repeated for a repeated initiation, ms. @default 30000 */
  answeredTtlMs?: number;
  /** Accepted difference between the client's clock and ours. @default 300000 */
  maxSkewMs?: number;
  /** Wall clock for the skew and replay checks. @default Date.now */
  wallClock?: () => number;
  /** Random padding of answers, at most (and never past the size of what they answer). @default 256 */
  handshakePadding?: number;
  cipher?: CipherChoice;
  aesAccelerated?: boolean;
  /** Carrier name in channels' info. @default 'udp' */
  carrier?: string;
}

/** A session the responder admitted. */
export interface PacketSession {
  channel: PacketRecordChannel;
  clientKey: Buffer;
  hello: ClientHello;
  admission: Extract<Admission, { accept: true }>;
  /** The client's transport parameters (opaque here; arq/cc-choice.ts reads them). */
  transportParams: Buffer;
}

/** What the responder dropped and sent (plain monotonic counters). */
export interface PacketResponderStats {
  datagrams: number;
  bytesIn: number;
  /** Bytes sent to sources not (yet) authenticated: cookie replies and handshake answers. */
  handshakeBytesOut: number;
  truncated: number;
  oversized: number;
  /** No session's and no valid mac1: garbage, probes, a wrong server key. */
  unauthenticated: number;
  /** A session's index, but did not open (counted by the channel too: forged, replayed). */
  transportDropped: number;
  cookieReplies: number;
  /** Past mac1 (and the cookie), but Noise or the hello did not check out. */
  handshakeFailed: number;
  skewed: number;
  replayedInitiations: number;
  repeatedInitiations: number;
  /** A repeated initiation smaller than the response: not answered. */
  amplificationRefused: number;
  busy: number;
  rejected: number;
  sessions: number;
  roamed: number;
  errors: number;
}

/** A handshake past Noise: when it expires, where it came from, and its answer once made. */
type Entry = { expires: number; source: string; response: Buffer | undefined };

/** See the file comment. */
export class PacketResponder {
  readonly stats: PacketResponderStats = {
    datagrams: 0, bytesIn: 0, handshakeBytesOut: 0, truncated: 0, oversized: 0, unauthenticated: 0, transportDropped: 0, cookieReplies: 0,
    handshakeFailed: 0, skewed: 0, replayedInitiations: 0, repeatedInitiations: 0, amplificationRefused: 0, busy: 0, rejected: 0, sessions: 0, roamed: 0, errors: 0,
  };
  readonly #init: PacketResponderInit;
  readonly #clock: Clock;
  readonly #keys: ServerPublicKeys;
  readonly #jar: CookieJar;
  readonly #replay: ReplayGuard;
  /** The one client → server header key: the server must unmask before it knows the session. */
  readonly #hpKey = randomBytes(16);
  readonly #mask = new HeaderMask(this.#hpKey);
  readonly #hdr = Buffer.alloc(HEADER);
  readonly #sessions = new Map<number, PacketRecordChannel>();
  readonly #handshakes = new Map<string, Entry>();
  readonly #ports = new Set<DatagramPort>();
  #onSession: (s: PacketSession) => void = (s) => s.channel.abort();
  #loadStart: number;
  #load = 0;
  #closed = false;

  constructor(init: PacketResponderInit) {
    this.#init = init;
    this.#clock = init.clock;
    this.#keys = serverPublicKeys(init.staticKeyPair.publicKey);
    this.#jar = new CookieJar(init.clock);
    this.#replay = init.replay ?? new ReplayGuard();
    this.#loadStart = init.clock.now();
  }

  /** Sets the handler of admitted sessions (their channels are not started). */
  onSession(handler: (s: PacketSession) => void): void {
    this.#onSession = handler;
  }

  /** Sessions alive now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Handshakes held now (bounded by maxHandshakes). */
  get handshakeCount(): number {
    return this.#handshakes.size;
  }

  /** Takes an association of the listener (its onConn): its datagrams come here; close() closes it. */
  accept(port: DatagramPort): void {
    if (this.#closed) return port.close();
    this.#ports.add(port);
    port.onClose(() => this.#ports.delete(port));
    port.onPackets((batch) => {
      for (const d of batch) {
        try {
          this.receive(port, d);
        } catch {
          this.stats.errors++; // never out of the receive path
        }
      }
    });
  }

  /** One datagram from `port`'s source (accept() calls it; tests call it directly). */
  receive(port: DatagramPort, d: Buffer): void {
    const s = this.stats;
    s.datagrams++;
    s.bytesIn += d.length;
    if (this.#closed) return;
    if (d.length > port.maxPacketSize || d.length > 65_535) return void s.oversized++;
    if (d.length < HEADER + 1 + TAG) return void s.truncated++;
    this.#mask.peek(d, this.#hdr);
    const h = readHeader(this.#hdr);
    const ch = h === undefined ? undefined : this.#sessions.get(h.index);
    if (ch !== undefined && h !== undefined) {
      const r = ch.receive(d, h);
      if (r === 'newest' && ch.port !== port) {
        ch.moveTo(port);
        s.roamed++;
      }
      if (r !== false) return;
      s.transportDropped++;
      // Not this session's after all? A rare initiation whose bytes unmask to a live index goes on below.
      if (d.length < MIN_INITIATION) return;
    }
    if (!checkMac1(this.#keys, d)) return void s.unauthenticated++;
    this.#initiation(port, d);
  }

  #cookieRequired(): boolean {
    if (this.#init.cookies === 'always') return true;
    const now = this.#clock.now();
    if (now - this.#loadStart >= 1000) {
      this.#loadStart = now;
      this.#load = 0;
    }
    return this.#load >= (this.#init.loadThreshold ?? 200) || this.#handshakes.size >= this.#maxHandshakes / 2;
  }

  get #maxHandshakes(): number {
    return this.#init.maxHandshakes ?? 4096;
  }

  #sendUnauthenticated(port: DatagramPort, answer: Buffer, answering: Buffer): void {
    if (answer.length > answering.length) return void this.stats.amplificationRefused++;
    this.stats.handshakeBytesOut += answer.length;
    port.send([answer]);
  }

  #sweep(): void {
    const now = this.#clock.now();
    for (const [k, e] of this.#handshakes) {
      if (e.expires > now) break; // insertion order is expiry order
      this.#handshakes.delete(k);
    }
  }

  #initiation(port: DatagramPort, d: Buffer): void {
    const s = this.stats;
    const hd = decodeHandshake(this.#keys, d, true);
    if (hd === undefined || hd.type !== HS_INITIATION || hd.body.length < INIT_MSG) return void s.handshakeFailed++;
    // The ephemeral key names the Noise message 1 (it is readable before any DH).
    const key = hd.body.toString('base64', 0, 32);
    this.#sweep();
    const seen = this.#handshakes.get(key);
    if (seen !== undefined) {
      // A repeat from where the original came is a retransmission; from anywhere else, a captured
      // initiation replayed to see whether we answer (active probing): it gets nothing.
      if (seen.source !== port.remote) return void s.replayedInitiations++;
      s.repeatedInitiations++;
      if (seen.response !== undefined) this.#sendUnauthenticated(port, seen.response, d);
      return;
    }
    if (this.#replay.has(hd.body.subarray(0, 32))) return void s.replayedInitiations++;
    if (this.#cookieRequired() && !this.#jar.checkMac2(d, port.remote)) {
      s.cookieReplies++;
      const reply = encodeCookieReply(this.#keys, this.#jar.cookieFor(port.remote), mac1Of(d), d.length, this.#init.handshakePadding ?? 256);
      return this.#sendUnauthenticated(port, reply, d);
    }
    if (this.#handshakes.size >= this.#maxHandshakes) return void s.busy++;
    this.#load++;
    const hs = new HandshakeState({ protocolName: PACKET_NOISE_PROTOCOL, initiator: false, prologue: PACKET_PROLOGUE, staticKeyPair: this.#init.staticKeyPair });
    let hello: ClientHello;
    let clientIndex: number;
    let params: Buffer;
    try {
      const payload = hs.readMessage(hd.body.subarray(0, INIT_MSG));
      hello = decodeClientHello(payload.subarray(0, HELLO_SIZE));
      clientIndex = payload.readUInt32BE(HELLO_SIZE);
      params = Buffer.from(payload.subarray(HELLO_SIZE + 4, HELLO_SIZE + 4 + TRANSPORT_PARAMS));
    } catch {
      return void s.handshakeFailed++;
    }
    const wall = (this.#init.wallClock ?? Date.now)();
    if (Math.abs(hello.timestampMs - wall) > (this.#init.maxSkewMs ?? 300_000)) return void s.skewed++;
    if (!this.#replay.remember(hd.body.subarray(0, 32), wall)) return void s.replayedInitiations++;
    const entry: Entry = { expires: this.#clock.now() + (this.#init.answeredTtlMs ?? 30_000), source: port.remote, response: undefined };
    this.#handshakes.set(key, entry);
    const clientKey = hs.remoteStaticKey as Buffer;
    const pick = pickCipher(localCipherPolicy(this.#init.cipher, this.#init.aesAccelerated), hello.caps);
    const answer = (admission: Admission): void => {
      if (this.#closed) return;
      try {
        this.#answer(port, d, hs, hello, clientKey, clientIndex, params, admission, 'cipher' in pick ? pick.cipher : pick.serverWants, entry);
      } catch {
        s.errors++;
      }
    };
    if (hello.maxVersion < PROTOCOL_VERSION || hello.minVersion > PROTOCOL_VERSION) return answer({ accept: false, reject: RejectCode.unsupportedVersion });
    if ('reject' in pick) return answer({ accept: false, reject: pick.reject, detail: pick.detail });
    let verdict: Admission | Promise<Admission>;
    try {
      verdict = this.#init.admit(clientKey, hello);
    } catch {
      return answer({ accept: false, reject: RejectCode.busy });
    }
    if (!(verdict instanceof Promise)) return answer(verdict);
    verdict.then(answer, () => answer({ accept: false, reject: RejectCode.busy }));
  }

  #answer(port: DatagramPort, d: Buffer, hs: HandshakeState, hello: ClientHello, clientKey: Buffer, clientIndex: number, transportParams: Buffer, admission: Admission, cipher: RecordCipher, entry: Entry): void {
    let index = randomIndex();
    while (this.#sessions.has(index)) index = randomIndex();
    const aes = cipher === 'aes-256-gcm' ? CAP_AES_GCM : 0;
    const sh: ServerHello = admission.accept
      ? {
          status: 0, version: PROTOCOL_VERSION, caps: (OUR_CAPS & hello.caps & (CAP_DATAGRAM | CAP_RESUME)) | aes, sessionId: admission.sessionId,
          recvSeq: admission.recvSeq, resumed: admission.resumed, streamWindow: admission.streamWindow, sessionWindow: admission.sessionWindow, padLen: 0,
        }
      : { status: admission.reject, version: PROTOCOL_VERSION, caps: aes, sessionId: Buffer.alloc(16), recvSeq: 0, resumed: false, streamWindow: 0, sessionWindow: 0, padLen: 0 };
    const msg2 = hs.writeMessage(encodeRespPayload(encodeServerHello(sh), index, this.#hpKey));
    const body = Buffer.concat([mac1Of(d), msg2]);
    const room = Math.max(0, Math.min(this.#init.handshakePadding ?? 256, d.length - MIN_RESPONSE));
    entry.response = encodeHandshake(this.#keys, HS_RESPONSE, body, MIN_RESPONSE + randomInt(0, room + 1));
    if (!admission.accept) {
      this.stats.rejected++;
      return this.#sendUnauthenticated(port, entry.response, d);
    }
    const channel = new PacketRecordChannel(channelKeys(hs, cipher, index, clientIndex, this.#hpKey), port, this.#init.carrier ?? 'udp', this.#init);
    this.#sessions.set(index, channel);
    channel.onClose(() => this.#sessions.delete(index));
    this.stats.sessions++;
    this.#sendUnauthenticated(port, entry.response, d);
    this.#onSession({ channel, clientKey, hello, admission, transportParams });
  }

  /** Ends every session (abort) and closes every association it was given. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ch of [...this.#sessions.values()]) ch.abort();
    for (const p of [...this.#ports]) p.close();
    this.#handshakes.clear();
  }
}
