/**
 * SOCKS5 server-side codec (RFC 1928, with RFC 1929 username/password auth):
 * an I/O-free state machine fed whatever chunks the client socket delivers,
 * plus encoders for the replies and the UDP ASSOCIATE datagram header.
 */
import { AddressError, Atyp, decodeDestination, encodedDestinationLength, writeDestination } from '../core/address.js';
import type { Destination } from '../core/address.js';
import { ChunkList } from '../core/chunks.js';
import { ClosedError, ProtocolError } from '../core/errors.js';
import { ProxyStatus } from '../proxy/wire.js';

/** Authentication method codes of the greeting / method selection. */
export const Socks5Method = { noAuth: 0x00, gssapi: 0x01, userPass: 0x02, noAcceptable: 0xff } as const;

/** REP codes of the reply to a request (RFC 1928 §6). */
export const Socks5Reply = ProxyStatus;
/** One of the `Socks5Reply` values. */
export type Socks5ReplyCode = (typeof Socks5Reply)[keyof typeof Socks5Reply];

/** Which reply the client is waiting for when an error happens. */
export type Socks5Stage = 'greeting' | 'auth' | 'request' | 'udp';

/**
 * The client broke the SOCKS5 protocol. `canReply` says whether a reply is
 * still meaningful (a wrong version byte means we are not talking to a SOCKS5
 * client: just close); `replyCode` is the REP to send at the request stage.
 * `socks5ErrorReply(err)` builds the bytes.
 */
export class Socks5Error extends ProtocolError {
  readonly stage: Socks5Stage;
  readonly replyCode: Socks5ReplyCode;
  readonly canReply: boolean;
  constructor(stage: Socks5Stage, replyCode: Socks5ReplyCode, canReply: boolean, message: string, options?: { cause?: unknown }) {
    super(`socks5 ${stage}: ${message}`, options);
    this.stage = stage;
    this.replyCode = replyCode;
    this.canReply = canReply;
  }
}

/** Events the parser produces, one per completed client message. */
export type Socks5Event =
  | { type: 'greeting'; methods: number[] }
  | { type: 'auth'; username: string; password: string }
  | {
      type: 'request';
      /** Known commands by name; any other CMD byte as its number (reply `commandNotSupported`). */
      cmd: 'connect' | 'bind' | 'udp-associate' | number;
      dest: Destination;
      /** Bytes the client sent after the request (pipelined data); never lost. */
      remainder: Buffer;
    };

/**
 * Parser states:
 *
 *   greeting ─(greeting)─▶ await-method ─selectMethod(noAuth)───▶ request ─(request)─▶ done
 *                               │      └─selectMethod(userPass)─▶ auth ─(auth)─▶ await-auth
 *                               └─selectMethod(0xFF)─▶ closed         await-auth ─authResult(true)─▶ request
 *                                                                     await-auth ─authResult(false)─▶ closed
 *   any state ─(bad bytes / limit)─▶ failed
 */
export type Socks5State = 'greeting' | 'await-method' | 'auth' | 'await-auth' | 'request' | 'done' | 'closed' | 'failed';

/** Options of `Socks5ServerParser`. */
export interface Socks5ParserInit {
  /**
   * Most unparsed bytes held before the request completes. Bytes that arrive
   * while the parser waits for `selectMethod` / `authResult` count here.
   * @default 1024
   */
  maxBuffered?: number;
}

const CMD_NAMES: Record<number, 'connect' | 'bind' | 'udp-associate'> = { 1: 'connect', 2: 'bind', 3: 'udp-associate' };

/**
 * Server side of the SOCKS5 handshake. The parser pauses after each message
 * that needs a decision, so pipelined bytes are never acted on early:
 *
 *   ev = p.push(chunk)                      // → greeting
 *   write(p.selectMethod(Socks5Method.userPass)); ev = p.resume()   // → auth?
 *   write(p.authResult(await check(ev)));  ev = p.resume()          // → request?
 *   // on request: dial ev.dest, write(encodeReply(...)), then send ev.remainder upstream
 *
 * `push` and `resume` return the completed event or null (need more bytes, or
 * waiting for a decision). They throw only `Socks5Error` (and `ClosedError`
 * if fed after the request). Bytes after the request are handed over in the
 * request event; the caller pipes the socket itself from then on.
 */
export class Socks5ServerParser {
  private readonly buf = new ChunkList();
  private readonly maxBuffered: number;
  private st: Socks5State = 'greeting';
  private offered: number[] = [];
  private error: Socks5Error | undefined;

  constructor(init: Socks5ParserInit = {}) {
    this.maxBuffered = init.maxBuffered ?? 1024;
  }

  /** Current state (see the diagram on `Socks5State`). */
  get state(): Socks5State {
    return this.st;
  }

  /** Feeds bytes from the client; returns the message completed by them, if any. */
  push(chunk: Buffer): Socks5Event | null {
    if (this.error) throw this.error;
    if (this.st === 'done') throw new ClosedError('socks5 parser (request already parsed)');
    if (this.st === 'closed') return null;
    if ((this.st === 'await-method' || this.st === 'await-auth') && this.buf.length + chunk.length > this.maxBuffered) {
      const stage = this.st === 'await-method' ? 'greeting' : 'auth';
      this.fail(stage, Socks5Reply.generalFailure, true, `more than ${this.maxBuffered} bytes sent before the reply`);
    }
    this.buf.push(chunk);
    return this.resume();
  }

  /** Parses what is buffered, after a decision; returns a completed message, if any. */
  resume(): Socks5Event | null {
    if (this.error) throw this.error;
    let ev: Socks5Event | null = null;
    if (this.st === 'greeting') ev = this.parseGreeting();
    else if (this.st === 'auth') ev = this.parseAuth();
    else if (this.st === 'request') ev = this.parseRequest();
    if (ev === null && (this.st === 'greeting' || this.st === 'auth' || this.st === 'request') && this.buf.length > this.maxBuffered) {
      this.fail(this.st, Socks5Reply.generalFailure, true, `message larger than ${this.maxBuffered} bytes`);
    }
    return ev;
  }

  /**
   * Chooses the method after the greeting: `noAuth`, `userPass` (must be among
   * the offered ones) or `noAcceptable` (the parser closes). Returns the reply
   * to write; call `resume()` next.
   * @throws ProtocolError when called out of turn or with another method
   */
  selectMethod(method: number): Buffer {
    if (this.st !== 'await-method') throw new ProtocolError(`socks5: selectMethod in state ${this.st}`);
    if (method === Socks5Method.noAcceptable) {
      this.close();
    } else if ((method === Socks5Method.noAuth || method === Socks5Method.userPass) && this.offered.includes(method)) {
      this.st = method === Socks5Method.userPass ? 'auth' : 'request';
    } else {
      throw new ProtocolError(`socks5: cannot select method ${method} (offered ${this.offered.join(',')})`);
    }
    return encodeMethodSelection(method);
  }

  /** Reports the credential check. Returns the reply to write; on success call `resume()` next. */
  authResult(ok: boolean): Buffer {
    if (this.st !== 'await-auth') throw new ProtocolError(`socks5: authResult in state ${this.st}`);
    if (ok) this.st = 'request';
    else this.close();
    return encodeAuthReply(ok);
  }

  private close(): void {
    this.st = 'closed';
    this.buf.clear();
  }

  private fail(stage: Socks5Stage, code: Socks5ReplyCode, canReply: boolean, msg: string, cause?: unknown): never {
    this.st = 'failed';
    this.buf.clear();
    this.error = new Socks5Error(stage, code, canReply, msg, cause === undefined ? undefined : { cause });
    throw this.error;
  }

  /*
   * +-----+----------+----------+
   * | VER | NMETHODS | METHODS  |
   * +-----+----------+----------+
   * |  1  |    1     | 1 to 255 |
   * +-----+----------+----------+
   */
  private parseGreeting(): Socks5Event | null {
    const b = this.buf;
    if (b.length < 1) return null;
    if (b.byteAt(0) !== 5) this.fail('greeting', Socks5Reply.generalFailure, false, `version ${b.byteAt(0)} is not 5`);
    if (b.length < 2) return null;
    const n = b.byteAt(1);
    if (n === 0) this.fail('greeting', Socks5Reply.generalFailure, true, 'no methods offered');
    if (b.length < 2 + n) return null;
    const msg = b.read(2 + n);
    this.offered = [...msg.subarray(2)];
    this.st = 'await-method';
    return { type: 'greeting', methods: [...this.offered] };
  }

  /*
   * +-----+------+----------+------+----------+
   * | VER | ULEN |  UNAME   | PLEN |  PASSWD  |
   * +-----+------+----------+------+----------+
   * |  1  |  1   | 1 to 255 |  1   | 0 to 255 |
   * +-----+------+----------+------+----------+
   */
  private parseAuth(): Socks5Event | null {
    const b = this.buf;
    if (b.length < 1) return null;
    if (b.byteAt(0) !== 1) this.fail('auth', Socks5Reply.generalFailure, false, `auth version ${b.byteAt(0)} is not 1`);
    if (b.length < 2) return null;
    const ulen = b.byteAt(1);
    if (ulen === 0) this.fail('auth', Socks5Reply.generalFailure, true, 'empty username');
    if (b.length < 3 + ulen) return null;
    const plen = b.byteAt(2 + ulen);
    if (b.length < 3 + ulen + plen) return null;
    const msg = b.read(3 + ulen + plen);
    let username: string;
    let password: string;
    try {
      username = strictUtf8.decode(msg.subarray(2, 2 + ulen));
      password = strictUtf8.decode(msg.subarray(3 + ulen));
    } catch (err) {
      // Decoding lossily would let two different byte strings compare equal.
      this.fail('auth', Socks5Reply.generalFailure, true, 'credentials are not UTF-8', err);
    }
    this.st = 'await-auth';
    return { type: 'auth', username, password };
  }

  /*
   * +-----+-----+-------+------+----------+----------+
   * | VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
   * +-----+-----+-------+------+----------+----------+
   * |  1  |  1  | X'00' |  1   | Variable |    2     |
   * +-----+-----+-------+------+----------+----------+
   */
  private parseRequest(): Socks5Event | null {
    const b = this.buf;
    if (b.length < 1) return null;
    if (b.byteAt(0) !== 5) this.fail('request', Socks5Reply.generalFailure, false, `version ${b.byteAt(0)} is not 5`);
    if (b.length < 4) return null;
    if (b.byteAt(2) !== 0) this.fail('request', Socks5Reply.generalFailure, true, 'reserved byte is not 0');
    const atyp = b.byteAt(3);
    let addrLen: number;
    if (atyp === Atyp.ipv4) addrLen = 4;
    else if (atyp === Atyp.ipv6) addrLen = 16;
    else if (atyp === Atyp.domain) {
      if (b.length < 5) return null;
      addrLen = 1 + b.byteAt(4);
    } else {
      this.fail('request', Socks5Reply.addressTypeNotSupported, true, `address type ${atyp}`);
    }
    const total = 4 + addrLen + 2;
    if (b.length < total) return null;
    const msg = b.read(total);
    const cmdByte = msg[1] as number;
    // UDP ASSOCIATE's address is only a hint the server may ignore (RFC 1928 §7), and
    // clients fill it with anything: PySocks sends the domain "0". We ignore it.
    const dest = cmdByte === 3 ? decodeHint(msg) : decodeAddress(msg, 3, 'request');
    const remainder = this.buf.readAll();
    this.st = 'done';
    return { type: 'request', cmd: CMD_NAMES[cmdByte] ?? cmdByte, dest, remainder };
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A UDP ASSOCIATE request's address, or 0.0.0.0:0 when it is not a usable one. */
function decodeHint(msg: Buffer): Destination {
  try {
    return decodeDestination(msg, 3).dest;
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    return { host: '0.0.0.0', port: msg.readUInt16BE(msg.length - 2), kind: 'ipv4' };
  }
}

/** Decodes an address block, mapping address errors to SOCKS5 replies. */
function decodeAddress(buf: Buffer, offset: number, stage: Socks5Stage): Destination {
  try {
    return decodeDestination(buf, offset).dest;
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    // An unusable domain is reported as unreachable: that is what resolving it would give.
    const code =
      err.reason === 'atyp' ? Socks5Reply.addressTypeNotSupported : err.reason === 'domain' ? Socks5Reply.hostUnreachable : Socks5Reply.generalFailure;
    throw new Socks5Error(stage, code, stage !== 'udp', err.message, { cause: err });
  }
}

/** `VER=5, METHOD` — the server's method selection. */
export function encodeMethodSelection(method: number): Buffer {
  return Buffer.from([5, method & 0xff]);
}

/** `VER=1, STATUS` — the RFC 1929 auth reply (0 = success). */
export function encodeAuthReply(ok: boolean): Buffer {
  return Buffer.from([1, ok ? 0 : 1]);
}

const UNSPECIFIED: Destination = { host: '0.0.0.0', port: 0, kind: 'ipv4' };

/**
 * `VER=5, REP, RSV=0, ATYP BND.ADDR BND.PORT` — the reply to a request.
 * `bound` defaults to 0.0.0.0:0 (what failures and most CONNECTs report).
 * @throws AddressError if `bound` is not a valid destination
 */
export function encodeReply(rep: number, bound: Destination = UNSPECIFIED): Buffer {
  const out = Buffer.allocUnsafe(3 + encodedDestinationLength(bound));
  out[0] = 5;
  out[1] = rep & 0xff;
  out[2] = 0;
  writeDestination(bound, out, 3);
  return out;
}

/** The bytes to send the client for `err` before closing, or null to just close. */
export function socks5ErrorReply(err: Socks5Error): Buffer | null {
  if (!err.canReply) return null;
  if (err.stage === 'greeting') return encodeMethodSelection(Socks5Method.noAcceptable);
  if (err.stage === 'auth') return encodeAuthReply(false);
  if (err.stage === 'request') return encodeReply(err.replyCode);
  return null;
}

/*
 * UDP ASSOCIATE datagram:
 *
 * +-----+------+------+----------+----------+----------+
 * | RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
 * +-----+------+------+----------+----------+----------+
 * |  2  |  1   |  1   | Variable |    2     | Variable |
 * +-----+------+------+----------+----------+----------+
 */

/**
 * Decodes one UDP relay datagram. `payload` is a view into `buf` (no copy).
 * Fragmented datagrams (FRAG ≠ 0) are refused: we do not reassemble, and
 * RFC 1928 lets a server drop them.
 * @throws Socks5Error (stage 'udp', canReply false): drop the datagram
 */
export function decodeUdpDatagram(buf: Buffer): { frag: number; dest: Destination; payload: Buffer } {
  if (buf.length < 4) throw new Socks5Error('udp', Socks5Reply.generalFailure, false, 'datagram shorter than its header');
  if (buf[0] !== 0 || buf[1] !== 0) throw new Socks5Error('udp', Socks5Reply.generalFailure, false, 'reserved bytes are not 0');
  const frag = buf[2] as number;
  if (frag !== 0) throw new Socks5Error('udp', Socks5Reply.generalFailure, false, `fragment ${frag} dropped (no reassembly)`);
  const { dest, bytesRead } = decodeUdpAddress(buf);
  return { frag, dest, payload: buf.subarray(3 + bytesRead) };
}

function decodeUdpAddress(buf: Buffer): { dest: Destination; bytesRead: number } {
  try {
    return decodeDestination(buf, 3);
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    throw new Socks5Error('udp', Socks5Reply.generalFailure, false, err.message, { cause: err });
  }
}

/** The header of a UDP relay datagram to `dest` (for `send([header, payload])` without a copy). */
export function encodeUdpHeader(dest: Destination): Buffer {
  const out = Buffer.allocUnsafe(3 + encodedDestinationLength(dest));
  out[0] = 0;
  out[1] = 0;
  out[2] = 0;
  writeDestination(dest, out, 3);
  return out;
}

/** One UDP relay datagram (header + payload in one buffer). */
export function encodeUdpDatagram(dest: Destination, payload: Buffer): Buffer {
  const hlen = 3 + encodedDestinationLength(dest);
  const out = Buffer.allocUnsafe(hlen + payload.length);
  out[0] = 0;
  out[1] = 0;
  out[2] = 0;
  writeDestination(dest, out, 3);
  payload.copy(out, hlen);
  return out;
}
