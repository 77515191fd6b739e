/**
 * The HTTP proxy front: `CONNECT host:port` opens a tunnel (answered with
 * 200 once the server has connected), and absolute-form requests
 * (`GET http://host/path`) are sent to the origin rewritten to origin form
 * with `Connection: close`, after which bytes are relayed raw both ways.
 *
 * ```
 *   accept ─▶ head (timer) ─▶ [Proxy-Authorization] ─┬─ CONNECT ─▶ status ─▶ 200 / 403 / 502 / 504 ─▶ splice
 *                                                     └─ GET http://… ─▶ rewritten head + body (0-RTT) ─▶ status ─▶ splice
 * ```
 */
import type { Socket } from 'node:net';
import { formatHostPort } from '../core/address.js';
import { AbortedError, isBenignClose, TimeoutError, toError } from '../core/errors.js';
import {
  encodeProxyResponse, HttpProxyError, HttpProxyRequestParser, parseProxyAuthorization, rewriteForOrigin,
  type HttpProxyRequest,
} from './http-proxy-codec.js';
import type { ProxyClient } from './proxy-client.js';
import { splice } from './splice.js';
import { checkCredentials, endWithReply, type Credentials } from './tcp-front.js';
import { ProxyFront, type ProxyFrontInit } from './proxy-front.js';
import { describeLocalFailure, describeStatus, isStreamLimit } from './refusal.js';

/** Options of {@link HttpFront}. */
export interface HttpFrontInit extends ProxyFrontInit {
  proxy: ProxyClient;
  /** Require `Proxy-Authorization: Basic`. Mandatory on a non-loopback `listen` host. */
  auth?: Credentials;
  /** From accept until the request head is complete. @default 10000 */
  headTimeoutMs?: number;
}

/**
 * The HTTP answer for a server status byte (SOCKS5 reply codes): 403 when
 * the server's policy refused, 504 on a TTL/timeout, 502 for the rest.
 */
export function httpStatusForProxyStatus(status: number): 403 | 502 | 504 {
  if (status === 0x02) return 403;
  if (status === 0x06) return 504;
  return 502;
}

/** See the file comment. */
export class HttpFront extends ProxyFront {
  constructor(private readonly init: HttpFrontInit) {
    super('http', 'http proxy', init);
  }

  protected onConnection(sock: Socket, overLimit: boolean): void {
    if (overLimit) {
      // Answered before its request is read: HTTP clients take a response at any time.
      endWithReply(sock, encodeProxyResponse(503, [['Retry-After', '5']], `polytun: this proxy already serves ${this.maxConnections} connections, the most it handles at once; try again shortly`));
      return;
    }
    const parser = new HttpProxyRequestParser();
    const headDone = this.watchHead(sock, this.init.headTimeoutMs ?? 10_000, 'http proxy request head');
    const onData = (chunk: Buffer): void => {
      let req: HttpProxyRequest | null;
      try {
        req = parser.push(chunk);
      } catch (err) {
        sock.off('data', onData);
        headDone();
        if (!(err instanceof HttpProxyError)) {
          this.log.warn({ remote: sock.remoteAddress, err: toError(err).message }, 'http proxy request failed');
          sock.destroy();
          return;
        }
        this.log.debug({ remote: sock.remoteAddress, err: err.message }, 'bad http proxy request');
        endWithReply(sock, encodeProxyResponse(err.status));
        return;
      }
      if (!req) return;
      sock.off('data', onData);
      headDone();
      sock.pause();
      if (!this.authorized(sock, req)) {
        endWithReply(sock, encodeProxyResponse(407, [['Proxy-Authenticate', 'Basic realm="polytun"']]));
        return;
      }
      this.forward(sock, req).catch((err: unknown) => {
        this.log.warn({ remote: sock.remoteAddress, err: toError(err).message }, 'http proxy request failed');
        sock.destroy();
      });
    };
    sock.on('data', onData);
  }

  private authorized(sock: Socket, req: HttpProxyRequest): boolean {
    const want = this.init.auth;
    if (!want) return true;
    for (const [name, value] of req.headers) {
      if (name.toLowerCase() !== 'proxy-authorization') continue;
      const got = parseProxyAuthorization(value);
      if (got && checkCredentials(want, got)) return true;
    }
    this.log.info({ remote: sock.remoteAddress }, 'http proxy request without valid credentials');
    return false;
  }

  private async forward(sock: Socket, req: HttpProxyRequest): Promise<void> {
    const target = formatHostPort(req.target);
    const ac = new AbortController();
    const onClose = (): void => ac.abort(new AbortedError('http proxy client left'));
    sock.once('close', onClose);
    let stream;
    let status: number;
    try {
      const conn = await this.init.proxy.connect(req.target, { signal: ac.signal });
      stream = conn.stream;
      // The origin request (or pipelined tunnel bytes) leaves with the OPEN.
      if (req.path !== null) stream.write(rewriteForOrigin(req));
      if (req.remainder.length > 0) stream.write(req.remainder);
      status = await conn.status;
    } catch (err) {
      sock.off('close', onClose);
      if (ac.signal.aborted) return;
      if (err instanceof TimeoutError) {
        this.log.info({ target, err: toError(err).message }, 'http proxy connect failed');
        endWithReply(sock, encodeProxyResponse(504, [], `polytun: no answer from the server about ${target}`));
        return;
      }
      this.refusals.local('http', req.target, err);
      endWithReply(sock, encodeProxyResponse(isStreamLimit(err) ? 503 : 502, [], `polytun: ${describeLocalFailure(err, req.target)}`));
      return;
    }
    sock.off('close', onClose);
    if (status !== 0) {
      stream.destroy();
      this.refusals.status('http', req.target, status);
      endWithReply(sock, encodeProxyResponse(httpStatusForProxyStatus(status), [], `polytun: ${describeStatus(status, req.target)}`));
      return;
    }
    if (req.path === null) sock.write(encodeProxyResponse(200));
    splice(sock, stream, {
      onDone: (err) => {
        if (err && !isBenignClose(err)) this.log.debug({ target, err: err.message }, 'http proxy relay ended with an error');
      },
    });
  }
}
