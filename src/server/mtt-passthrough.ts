/**
 * mtt compatibility mode: a stock mos-tls-tunnel `mtt-client -wss` talks to
 * a polytun gateway user as it talks to `mtt-mu-server`. After the
 * WebSocket upgrade there is no polytun handshake, no inner encryption:
 * binary frames carry the application's bytes as they are, to the user's
 * fixed dst.
 *
 *   upgrade on a user's path, offering Sec-WebSocket-Protocol …
 *     smux_off ─▶ 101 (smux_off) ─▶ one WebSocket = one TCP connection to dst
 *     smux_on  ─▶ 101 (smux_on)  ─▶ smux v1 inside (smux.ts): one stream = one TCP connection to dst
 *     neither  ─▶ the polytun handshake, as for any polytun client of that user
 *
 * mtt-client always offers exactly one of the two, so the upgrade itself
 * says which protocol follows (never a guess from the first bytes). When
 * both are offered, smux_on wins: gorilla's upgrader picks the first of its
 * own list [smux_on, smux_off] that the client offers.
 *
 * Only mtt-mode users get this (see {@link isMttUser}): mtt mode is off
 * unless the controller added the user or an admin set its `mtt` flag. For them the
 * URL path is the only secret, as with mtt itself: whoever knows it reaches
 * dst, with nothing but TLS (when wss) in between; no authentication, no
 * forward secrecy beyond TLS's, no probe resistance on that path.
 *
 * Behaviour kept from mtt: EOF in either direction ends both (openTunnel);
 * an idle connection (no byte either way for `idleMs`, mtt's `-timeout`,
 * 1 min) is closed; user changes never cut live connections (the dst is
 * read once, at the upgrade). Unlike mtt, the idle clock counts both
 * directions together, so a long one-way download is not cut.
 */
import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { FrameReader, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, frameHeader, headerLength, writeHeader } from '../carriers/ws-frames.js';
import { SmuxSession } from './smux.js';
import { MTT_QUEUE_BYTES } from '../core/limits.js';

/** The subprotocols mtt speaks, in gorilla's (the mtt server's) order of preference. */
export const MTT_SUBPROTOCOLS = ['smux_on', 'smux_off'] as const;
export type MttSubprotocol = (typeof MTT_SUBPROTOCOLS)[number];

/** mtt's default `-timeout`. */
export const MTT_IDLE_MS = 60_000;
/**
 * True for a user that accepts stock mtt-clients: in mtt mode (the
 * controller's users, or marked by an admin) with a path and a dst.
 */
export function isMttUser(user: { readonly mtt: boolean; readonly wssPath: string | null; readonly dst: string | null }): boolean {
  return user.mtt && user.wssPath !== null && user.dst !== null;
}

/** The mtt subprotocol an upgrade request offers (gorilla's choice), or undefined when it offers neither. */
export function mttSubprotocol(req: IncomingMessage): MttSubprotocol | undefined {
  const raw = req.headers['sec-websocket-protocol'];
  if (raw === undefined) return undefined;
  const offered = new Set(raw.split(',').map((p) => p.trim()));
  return MTT_SUBPROTOCOLS.find((p) => offered.has(p));
}

/** Options of {@link serveMtt}. */
export interface MttServeInit {
  /** The user's dst. */
  readonly dst: { readonly host: string; readonly port: number };
  /** smux_on: smux v1 inside; smux_off: the bytes themselves. */
  readonly protocol: MttSubprotocol;
  /** Bytes read past the upgrade's header block. */
  readonly head: Buffer;
  /** Close after this long without a byte either way, ms; 0 = never. @default MTT_IDLE_MS */
  readonly idleMs?: number;
  /** Largest WebSocket frame accepted. @default 1 MiB */
  readonly maxPayloadBytes?: number;
  /** For the stream's lifecycle (debug) and failures (warn); never gets the path. */
  readonly logger?: Logger;
  /** Called once when the connection is over, with the bytes relayed each way. */
  readonly onClose?: (bytes: { up: number; down: number }) => void;
}

/**
 * Bytes one direction may have queued toward a slow side before the other
 * side stops being read. Far above a socket's 16 KiB high-water mark: a
 * pause at every write that crosses that mark turned the relay into a
 * ping-pong that left the server idle half the time.
 */
const QUEUE_BYTES = MTT_QUEUE_BYTES;
const CLOSE_NORMAL = 1000;
const CLOSE_PROTOCOL = 1002;
/** How long a sent Close waits for the client to close the TCP connection. */
const CLOSE_WAIT_MS = 5000;

/**
 * Serves one upgraded connection (the 101 is already written) in mtt mode.
 * The socket is the caller's no more: this owns and closes it.
 */
export function serveMtt(socket: Socket, init: MttServeInit): void {
  new MttConn(socket, init);
}

class MttConn {
  private readonly log: Logger;
  private readonly reader: FrameReader;
  private readonly idleMs: number;
  private readonly session: SmuxSession | undefined;
  /** The single dst connection of plain mode. */
  private readonly dst: Socket | undefined;
  private lastActive = Date.now();
  private readonly idleTimer: NodeJS.Timeout | undefined;
  private closeSent = false;
  private done = false;
  /** dst is corked until the next check phase (see onWsData). */
  private corked = false;
  private up = 0;
  private down = 0;

  constructor(
    private readonly ws: Socket,
    private readonly init: MttServeInit,
  ) {
    this.log = init.logger ?? nullLogger;
    this.idleMs = init.idleMs ?? MTT_IDLE_MS;
    this.reader = new FrameReader(true, { data: this.onData, messageEnd: () => undefined, control: this.onControl }, init.maxPayloadBytes ?? 1024 * 1024);
    ws.setTimeout(0);
    ws.setNoDelay(true);
    ws.on('data', this.onWsData);
    ws.on('end', () => this.finish('client ended', true));
    ws.on('close', () => this.finish('client closed', false));
    ws.on('error', (err: NodeJS.ErrnoException) => this.finish(`client error ${err.code ?? err.message}`, false));
    if (init.protocol === 'smux_on') {
      this.session = new SmuxSession(
        {
          send: (chunks) => {
            this.sendMessage(chunks);
            return this.ws.writableLength <= QUEUE_BYTES;
          },
          pause: () => this.ws.pause(),
          resume: () => this.ws.resume(),
          dial: () => this.dial(),
          fail: (err) => this.protocolError(err),
          log: (msg, fields) => this.log.debug(fields, msg),
        },
        { idleMs: this.idleMs },
      );
      ws.on('drain', () => this.session?.drained());
    } else {
      const dst = this.dial();
      this.dst = dst;
      dst.setNoDelay(true);
      dst.on('data', (b: Buffer) => {
        this.lastActive = Date.now();
        this.down += b.length;
        this.sendMessage([b]);
        if (this.ws.writableLength > QUEUE_BYTES) dst.pause();
      });
      ws.on('drain', () => dst.resume());
      dst.on('drain', () => this.ws.resume());
      // openTunnel: EOF from dst ends both directions.
      dst.on('end', () => this.finish('destination ended', false));
      dst.on('close', () => this.finish('destination closed', false));
      dst.on('error', (err: NodeJS.ErrnoException) => this.finish(`destination error ${err.code ?? err.message}`, false));
      if (this.idleMs > 0) {
        this.idleTimer = setInterval(() => {
          if (Date.now() - this.lastActive >= this.idleMs) this.finish('idle timeout', false);
        }, Math.max(50, Math.min(1000, this.idleMs / 4)));
        this.idleTimer.unref();
      }
    }
    if (init.head.length > 0) this.onWsData(init.head);
  }

  private dial(): Socket {
    const s = connect({ host: this.init.dst.host, port: this.init.dst.port });
    // A dial may fail before any listener of the caller is attached.
    s.once('error', (err: NodeJS.ErrnoException) => this.log.debug({ code: err.code }, 'mtt: destination connection failed'));
    return s;
  }

  private readonly onWsData = (chunk: Buffer): void => {
    if (this.done) return;
    // gorilla sends each 4 KiB frame as a TLS record of its own, and TLS hands every record up as a
    // 'data' event: one write to dst per event was a syscall per 4 KiB (a fifth of the server's time
    // at 300 MB/s). dst stays corked until the event loop has handled this turn's reads: one writev.
    const dst = this.dst;
    if (dst !== undefined && !this.corked) {
      this.corked = true;
      dst.cork();
      setImmediate(this.uncork);
    }
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.protocolError(toError(err));
    }
  };

  private readonly uncork = (): void => {
    this.corked = false;
    this.dst?.uncork();
  };

  private readonly onData = (slice: Buffer): void => {
    if (this.done) return;
    this.lastActive = Date.now();
    this.up += slice.length;
    if (this.session !== undefined) return this.session.push(slice);
    // The slice is a view of the socket's read, unmasked in place: written on as it is.
    const dst = this.dst as Socket;
    dst.write(slice);
    if (dst.writableLength > QUEUE_BYTES) this.ws.pause();
  };

  private readonly onControl = (op: number, payload: Buffer): void => {
    if (op === OP_PING) {
      if (!this.closeSent) this.ws.write(Buffer.concat([frameHeader(OP_PONG, true, payload.length, null), payload]));
    } else if (op === OP_CLOSE) {
      // mtt-client's Close (1000) is its EOF: flush what it sent to dst, then end both.
      this.finish('client sent close', true, payload.subarray(0, 2));
    }
    // A pong needs nothing.
  };

  /** One binary message holding `chunks`; false when the socket is full. */
  private sendMessage(chunks: readonly Buffer[]): boolean {
    if (this.closeSent || !this.ws.writable) return true;
    let len = 0;
    for (const c of chunks) len += c.length;
    const h = Buffer.allocUnsafe(headerLength(len, false));
    writeHeader(h, 0, OP_BINARY, true, len, null);
    this.ws.cork();
    let ok = this.ws.write(h);
    for (const c of chunks) ok = this.ws.write(c);
    this.ws.uncork();
    return ok;
  }

  private protocolError(err: Error): void {
    this.log.debug({ err: err.message }, 'mtt: protocol error; closing');
    this.finish('protocol error', false, undefined, CLOSE_PROTOCOL);
  }

  /**
   * Ends the connection (once): a Close frame to the client (echoing its
   * code when it closed first), dst ended after its pending bytes when the
   * client's EOF was clean, else destroyed.
   */
  private finish(why: string, clientEof: boolean, echo?: Buffer, code = CLOSE_NORMAL): void {
    if (this.done) return;
    this.done = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.session?.close();
    const dst = this.dst;
    if (dst !== undefined) {
      if (clientEof && !dst.destroyed) {
        dst.end();
        dst.once('finish', () => dst.destroy());
        setTimeout(() => dst.destroy(), CLOSE_WAIT_MS).unref();
      } else {
        dst.destroy();
      }
    }
    if (!this.closeSent && this.ws.writable) {
      this.closeSent = true;
      let payload = echo;
      if (payload === undefined || payload.length < 2) {
        payload = Buffer.allocUnsafe(2);
        payload.writeUInt16BE(code, 0);
      }
      this.ws.end(Buffer.concat([frameHeader(OP_CLOSE, true, payload.length, null), payload]));
      setTimeout(() => this.ws.destroy(), CLOSE_WAIT_MS).unref();
    } else {
      this.ws.destroy();
    }
    this.log.debug({ why, up: this.up, down: this.down, protocol: this.init.protocol }, 'mtt: connection closed');
    this.init.onClose?.({ up: this.up, down: this.down });
  }
}
