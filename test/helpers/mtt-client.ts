/**
 * A stand-in for mos-tls-tunnel's mtt-client, written in the test from the
 * protocols (never from polytun's own encoders): the upgrade request
 * mtt-client sends (gorilla's dialer, one Sec-WebSocket-Protocol), RFC 6455
 * frames laid out by hand (masked, as a client must), and smux v1 frames
 * laid out by hand (ver 1, cmd, length u16 LE, stream id u32 LE).
 */
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import tls from 'node:tls';
import type net from 'node:net';

/** One smux v1 frame, laid out by hand. */
export function smuxFrame(cmd: number, sid: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(8);
  h[0] = 1;
  h[1] = cmd;
  h[2] = body.length & 0xff;
  h[3] = body.length >> 8;
  h[4] = sid & 0xff;
  h[5] = (sid >>> 8) & 0xff;
  h[6] = (sid >>> 16) & 0xff;
  h[7] = sid >>> 24;
  return Buffer.concat([h, body]);
}

/** A masked client frame (RFC 6455 §5.2): FIN, opcode, mask bit, 7/16/64-bit length, key, masked payload. */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]) : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b; })()]);
  const key = randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = (payload[i] as number) ^ (key[i & 3] as number);
  return Buffer.concat([head, key, body]);
}

/** What the server sent, frame by frame. */
export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

/** One WebSocket connection as mtt-client makes it. */
export class MttTestClient {
  /** The 101's header block. */
  response = '';
  /** Binary payload received, concatenated (mtt reads messages as one byte stream). */
  private data: Buffer[] = [];
  private dataLen = 0;
  readonly frames: ServerFrame[] = [];
  closed = false;
  private buf: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined); // a reset shows as 'close'
  }

  /** Connects over TLS (wss) and upgrades on `path` offering `protocol` (omit for no offer). */
  static async open(port: number, path: string, protocol: string | undefined): Promise<MttTestClient> {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'example.com' });
    await once(socket, 'secureConnect');
    const c = new MttTestClient(socket);
    const key = randomBytes(16).toString('base64');
    socket.write(
      [`GET ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'User-Agent: Go-http-client/1.1', 'Connection: Upgrade', `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', ...(protocol ? [`Sec-WebSocket-Protocol: ${protocol}`] : []), 'Upgrade: websocket', '', ''].join('\r\n'),
    );
    let head = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        c.response = head.subarray(0, end).toString('latin1');
        const rest = head.subarray(end + 4);
        if (!c.response.startsWith('HTTP/1.1 101')) return resolve();
        const want = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        if (!c.response.includes(`Sec-WebSocket-Accept: ${want}`)) return reject(new Error(`bad accept in ${c.response}`));
        socket.on('data', (x: Buffer) => c.onData(x));
        if (rest.length > 0) c.onData(rest);
        resolve();
      };
      socket.on('data', onData);
      socket.once('close', () => resolve());
    });
    return c;
  }

  get status(): number {
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(this.response)?.[1] ?? 0);
  }

  /** The Sec-WebSocket-Protocol of the 101, if any. */
  get protocol(): string | undefined {
    return /\r\nSec-WebSocket-Protocol: ([^\r]+)/i.exec(this.response)?.[1];
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      const b1 = b[1] as number;
      if (b1 & 0x80) throw new Error('a server frame must not be masked');
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) break;
      const opcode = (b[0] as number) & 0x0f;
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      this.frames.push({ opcode, payload });
      if (opcode === 2 || opcode === 0) {
        this.data.push(payload);
        this.dataLen += payload.length;
      }
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `cond` holds (checked at each arrival) or the connection closed. */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (this.closed) throw new Error(`connection closed before the condition held (${this.dataLen} bytes received)`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** All binary payload received so far. */
  received(): Buffer {
    return Buffer.concat(this.data, this.dataLen);
  }

  /** Waits for `n` bytes of binary payload in total. */
  async read(n: number): Promise<Buffer> {
    await this.until(() => this.dataLen >= n);
    return this.received();
  }

  /** Resolves once the server closed the TCP connection. */
  async whenClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** One binary message per call, as mtt's wrapper writes. */
  send(payload: Buffer): void {
    this.socket.write(clientFrame(2, payload));
  }

  /** mtt-client's Close: a Close frame with 1000, then the TCP connection is closed. */
  close(): void {
    this.socket.write(clientFrame(8, Buffer.from([0x03, 0xe8])));
    this.socket.end();
  }
}
