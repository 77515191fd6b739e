/**
 * The SOCKS5 front (RFC 1928, RFC 1929 auth): a local listener whose CONNECT
 * requests become CONNECT streams and whose UDP ASSOCIATE requests become UDP
 * associations on the datagram lane. Domains go to the server unresolved.
 *
 * ```
 *   accept ─▶ greeting ─▶ [auth] ─▶ request ─┬─ CONNECT ──▶ status ─▶ reply ─▶ splice
 *      │  (handshake timer runs until here)  ├─ UDP ASSOCIATE ─▶ reply ─▶ relay until TCP closes
 *      │                                     └─ BIND / other ─▶ reply 0x07, close
 *      └─ over maxConnections: greeting ─▶ [auth] ─▶ request ─▶ reply 0x01 (general failure), close
 * ```
 *
 * The SOCKS5 protocol carries no secret: a listener reachable from other
 * hosts without username/password is an open proxy into the tunnel, so
 * start() refuses a non-loopback address without `auth`.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv4, isIPv6, type Socket } from 'node:net';
import { makeDestination, type Destination } from '../core/address.js';
import { AbortedError, isBenignClose, TimeoutError, toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ProxyClient } from './proxy-client.js';
import { splice } from './splice.js';
import { checkCredentials, endWithReply, type Credentials } from './tcp-front.js';
import { ProxyFront, type ProxyFrontInit } from './proxy-front.js';
import {
  decodeUdpDatagram, encodeReply, encodeUdpDatagram, Socks5Error, socks5ErrorReply, Socks5Method, Socks5Reply,
  Socks5ServerParser, type Socks5Event,
} from './socks5-codec.js';

/** Options of {@link Socks5Front}. */
export interface Socks5FrontInit extends ProxyFrontInit {
  proxy: ProxyClient;
  /** Require RFC 1929 username/password. Mandatory on a non-loopback `listen` host. */
  auth?: Credentials;
  /** From accept until the request is parsed. @default 10000 */
  handshakeTimeoutMs?: number;
}

/** See the file comment. */
export class Socks5Front extends ProxyFront {
  constructor(private readonly init: Socks5FrontInit) {
    super('socks5', 'socks5', init);
  }

  /** `overLimit` (a client over the limit gets a SOCKS answer it can report, not a bare close): the handshake runs as usual, and the request is answered with general failure. */
  protected onConnection(sock: Socket, overLimit: boolean): void {
    const parser = new Socks5ServerParser();
    const headDone = this.watchHead(sock, this.init.handshakeTimeoutMs ?? 10_000, 'socks5 handshake');
    const onData = (chunk: Buffer): void => {
      try {
        let ev = parser.push(chunk);
        while (ev) {
          if (ev.type === 'request') {
            sock.off('data', onData);
            headDone();
            sock.pause();
            if (overLimit) {
              endWithReply(sock, encodeReply(Socks5Reply.generalFailure));
              return;
            }
            this.onRequest(sock, ev).catch((err: unknown) => {
              this.log.warn({ remote: sock.remoteAddress, err: toError(err).message }, 'socks5 request failed');
              sock.destroy();
            });
            return;
          }
          ev = ev.type === 'greeting' ? this.onGreeting(sock, parser, ev.methods) : this.onAuth(sock, parser, ev);
        }
      } catch (err) {
        sock.off('data', onData);
        headDone();
        if (!(err instanceof Socks5Error)) {
          this.log.warn({ remote: sock.remoteAddress, err: toError(err).message }, 'socks5 handshake failed');
          sock.destroy();
          return;
        }
        this.log.debug({ remote: sock.remoteAddress, err: err.message }, 'bad socks5 handshake');
        const reply = socks5ErrorReply(err);
        if (reply) endWithReply(sock, reply);
        else sock.destroy();
      }
    };
    sock.on('data', onData);
  }

  private onGreeting(sock: Socket, parser: Socks5ServerParser, methods: number[]): Socks5Event | null {
    const want = this.init.auth ? Socks5Method.userPass : Socks5Method.noAuth;
    if (!methods.includes(want)) {
      this.log.debug({ remote: sock.remoteAddress, offered: methods }, 'socks5 client offers no acceptable method');
      endWithReply(sock, parser.selectMethod(Socks5Method.noAcceptable));
      return null;
    }
    sock.write(parser.selectMethod(want));
    return parser.resume();
  }

  private onAuth(sock: Socket, parser: Socks5ServerParser, ev: { username: string; password: string }): Socks5Event | null {
    const ok = this.init.auth !== undefined && checkCredentials(this.init.auth, ev);
    if (!ok) {
      this.log.info({ remote: sock.remoteAddress }, 'socks5 authentication failed');
      endWithReply(sock, parser.authResult(false));
      return null;
    }
    sock.write(parser.authResult(true));
    return parser.resume();
  }

  private async onRequest(sock: Socket, ev: Extract<Socks5Event, { type: 'request' }>): Promise<void> {
    if (ev.cmd === 'connect') return this.onConnect(sock, ev.dest, ev.remainder);
    if (ev.cmd === 'udp-associate') return this.onUdpAssociate(sock);
    // BIND needs a second reply when the peer connects; we offer -R forwards instead.
    this.log.debug({ cmd: ev.cmd }, 'socks5 command not supported');
    endWithReply(sock, encodeReply(Socks5Reply.commandNotSupported));
  }

  private async onConnect(sock: Socket, dest: Destination, remainder: Buffer): Promise<void> {
    const ac = new AbortController();
    const onClose = (): void => ac.abort(new AbortedError('socks5 client left'));
    sock.once('close', onClose);
    let stream;
    let status: number;
    try {
      const conn = await this.init.proxy.connect(dest, { signal: ac.signal });
      stream = conn.stream;
      // Bytes a client pipelined after its request leave with the OPEN.
      if (remainder.length > 0) stream.write(remainder);
      status = await conn.status;
    } catch (err) {
      sock.off('close', onClose);
      if (ac.signal.aborted) return;
      if (err instanceof TimeoutError) this.log.info({ dest: `${dest.host}:${dest.port}`, err: toError(err).message }, 'socks5 connect failed');
      else this.refusals.local('socks5', dest, err);
      endWithReply(sock, encodeReply(err instanceof TimeoutError ? Socks5Reply.hostUnreachable : Socks5Reply.generalFailure));
      return;
    }
    sock.off('close', onClose);
    if (status !== 0) {
      stream.destroy();
      this.refusals.status('socks5', dest, status);
      endWithReply(sock, encodeReply(status <= Socks5Reply.addressTypeNotSupported ? status : Socks5Reply.generalFailure));
      return;
    }
    sock.write(encodeReply(Socks5Reply.succeeded));
    splice(sock, stream, {
      onDone: (err) => {
        if (err && !isBenignClose(err)) this.log.debug({ dest: `${dest.host}:${dest.port}`, err: err.message }, 'socks5 relay ended with an error');
      },
    });
  }

  /**
   * UDP ASSOCIATE: a UDP socket on the address the client reached us at,
   * relaying to one association until the control connection closes. Only
   * the control connection's IP may use it, and the first datagram fixes the
   * client's port (RFC 1928 §7); replies go back there.
   */
  private async onUdpAssociate(sock: Socket): Promise<void> {
    const local = unmapV4(sock.localAddress ?? '127.0.0.1');
    const clientIp = unmapV4(sock.remoteAddress ?? '');
    const udp = createSocket({ type: isIPv6(local) ? 'udp6' : 'udp4' });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, local, () => {
          udp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.log.warn({ local, err: toError(err).message }, 'socks5 udp associate: cannot open a udp socket');
      udp.close();
      endWithReply(sock, encodeReply(Socks5Reply.generalFailure));
      return;
    }
    if (sock.destroyed) {
      udp.close();
      return;
    }
    const assoc = this.init.proxy.udpAssociation();
    let client: { address: string; port: number } | undefined;
    udp.on('error', (err) => this.log.debug({ err: err.message }, 'socks5 udp socket error'));
    udp.on('message', (msg, rinfo) => {
      if (unmapV4(rinfo.address) !== clientIp) return;
      if (client === undefined) client = { address: rinfo.address, port: rinfo.port };
      else if (client.port !== rinfo.port || client.address !== rinfo.address) return;
      let d;
      try {
        d = decodeUdpDatagram(msg);
      } catch (err) {
        this.log.debug({ err: toError(err).message }, 'socks5 udp datagram dropped');
        return;
      }
      if (!assoc.send(d.dest, d.payload)) this.log.debug({ size: d.payload.length }, 'socks5 udp datagram dropped (no path, queue full or too large)');
    });
    assoc.onMessage((src, data) => {
      if (client) sendUdp(udp, encodeUdpDatagram(src, data), client, this.log);
    });
    const teardown = (): void => {
      assoc.close();
      udp.close();
    };
    sock.once('close', teardown);
    // The control connection carries nothing more; its end ends the association.
    sock.on('end', () => sock.end());
    sock.resume();
    sock.write(encodeReply(Socks5Reply.succeeded, makeDestination(local, (udp.address()).port)));
  }
}

/** `::ffff:1.2.3.4` → `1.2.3.4`, so a dual-stack listener still compares and replies in IPv4. */
function unmapV4(ip: string): string {
  return ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

function sendUdp(udp: UdpSocket, msg: Buffer, to: { address: string; port: number }, log: Logger): void {
  udp.send(msg, to.port, to.address, (err) => {
    if (err) log.debug({ err: err.message }, 'socks5 udp reply not sent');
  });
}
