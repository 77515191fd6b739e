/**
 * The soak's traffic: a target server that speaks a tiny request protocol,
 * and the stream drivers that play the four kinds of user (bulk, interactive,
 * paused and slow readers). Every byte is checked at its position, so a lost,
 * duplicated or reordered byte anywhere fails the stream at once.
 *
 * Request (client → target), 9 bytes:
 *
 *   ┌──────┬──────────────┬──────────────┐
 *   │ kind │ seed (u32 BE)│ size (u32 BE)│
 *   └──────┴──────────────┴──────────────┘
 *
 *   'D' download: the target sends `size` pattern bytes from `seed`, then FIN.
 *   'U' upload:   the client sends `size` pattern bytes, the target checks
 *                 them and answers "OK\n" (or "BAD\n") and FIN.
 *   'E' echo:     the target echoes everything until the client's FIN.
 */
import net from 'node:net';

export type Kind = 'bulk-down' | 'bulk-up' | 'interactive' | 'paused' | 'slow';

/** An xorshift32 byte generator: sender and checker agree without storing data. */
export class Pattern {
  private x: number;
  private word = 0;
  private left = 0;
  constructor(seed: number) {
    this.x = seed >>> 0 || 0x9e3779b9;
  }
  private nextByte(): number {
    if (this.left === 0) {
      let x = this.x;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.x = x >>> 0;
      this.word = this.x;
      this.left = 4;
    }
    const b = this.word & 0xff;
    this.word >>>= 8;
    this.left--;
    return b;
  }
  fill(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.nextByte();
    return b;
  }
  /** Index of the first byte of `chunk` that differs from the pattern, or -1. */
  check(chunk: Buffer): number {
    for (let i = 0; i < chunk.length; i++) if (chunk[i] !== this.nextByte()) return i;
    return -1;
  }
}

/** The target every soak stream reaches through the tunnel. */
export async function startTarget(): Promise<{ port: number; sockets: Set<net.Socket>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let head = Buffer.alloc(0);
    const onHead = (c: Buffer): void => {
      head = Buffer.concat([head, c]);
      if (head.length < 9) return;
      sock.off('data', onHead);
      const kind = String.fromCharCode(head[0] as number);
      const seed = head.readUInt32BE(1);
      const size = head.readUInt32BE(5);
      const rest = head.subarray(9);
      if (kind === 'D') download(sock, seed, size);
      else if (kind === 'U') upload(sock, seed, size, rest);
      else if (kind === 'E') {
        if (rest.length) sock.write(rest);
        sock.pipe(sock);
      } else sock.destroy();
    };
    sock.on('data', onHead);
  });
  // As polytun's own listeners (LISTEN_BACKLOG): a burst of dials from the server must not overflow the accept queue.
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await new Promise((r) => server.once('listening', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function download(sock: net.Socket, seed: number, size: number): void {
  const p = new Pattern(seed);
  let left = size;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, 32 * 1024);
      left -= n;
      if (!sock.write(p.fill(n))) {
        sock.once('drain', pump);
        return;
      }
    }
    sock.end();
  };
  pump();
}

function upload(sock: net.Socket, seed: number, size: number, first: Buffer): void {
  const p = new Pattern(seed);
  let got = 0;
  let bad = false;
  const take = (c: Buffer): void => {
    if (!bad && p.check(c) !== -1) bad = true;
    got += c.length;
  };
  if (first.length) take(first);
  sock.on('data', take);
  sock.on('end', () => sock.end(!bad && got === size ? 'OK\n' : `BAD ${got}/${size}\n`));
}

/** How a stream ended. */
export interface StreamResult {
  kind: Kind;
  /** 'done': completed and verified; 'closed': stopped by the soak at the end, all bytes verified;
   *  'broken': the connection failed (error or early end) — allowed only during the server outage. */
  outcome: 'done' | 'closed' | 'broken';
  bytes: number;
  /** A verification failure (wrong byte, wrong length): never allowed. */
  corrupt?: string | undefined;
  endedAt: number;
  why?: string;
}

export interface DriveInit {
  kind: Kind;
  port: number;
  seed: number;
  /** Bytes to move for downloads and uploads. */
  size: number;
  signal: AbortSignal;
  now: () => number;
}

/** Opens one stream through the tunnel's -L port and plays `kind` until done or aborted. */
export function drive(init: DriveInit): Promise<StreamResult> {
  const { kind, port, seed, size, signal, now } = init;
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let bytes = 0;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = (outcome: StreamResult['outcome'], extra: Partial<StreamResult> = {}): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve({ kind, outcome, bytes, endedAt: now(), ...extra });
    };
    const onAbort = (): void => finish('closed');
    signal.addEventListener('abort', onAbort);
    sock.on('error', (err) => finish('broken', { why: err.message }));
    sock.on('close', () => finish('broken', { why: 'closed early' }));
    const header = Buffer.alloc(9);
    header.writeUInt32BE(seed, 1);
    header.writeUInt32BE(size, 5);

    if (kind === 'bulk-down' || kind === 'paused' || kind === 'slow') {
      header[0] = 'D'.charCodeAt(0);
      sock.write(header);
      const p = new Pattern(seed);
      sock.on('data', (c: Buffer) => {
        const bad = p.check(c);
        if (bad !== -1) return finish('broken', { corrupt: `byte ${bytes + bad} differs` });
        bytes += c.length;
        if (kind === 'slow') {
          // 1 KiB/s: after each chunk, pause for as long as that chunk "takes".
          sock.pause();
          timers.push(setTimeout(() => sock.resume(), Math.max(50, c.length)));
        }
      });
      sock.on('end', () => {
        if (bytes === size) finish('done');
        else finish('broken', { corrupt: bytes < size ? undefined : `got ${bytes} of ${size}`, why: `ended at ${bytes} of ${size}` });
      });
      if (kind === 'paused') {
        // Read a little, then stop reading for long stretches (a paused video tab).
        const cycle = (): void => {
          sock.pause();
          timers.push(
            setTimeout(() => {
              sock.resume();
              timers.push(setTimeout(cycle, 500));
            }, 20_000 + (seed % 40_000)),
          );
        };
        timers.push(setTimeout(cycle, 200));
      }
    } else if (kind === 'bulk-up') {
      header[0] = 'U'.charCodeAt(0);
      const p = new Pattern(seed);
      let left = size;
      let answer = '';
      sock.on('data', (c: Buffer) => (answer += c.toString()));
      sock.on('end', () => (answer === 'OK\n' ? finish('done', { bytes: size }) : finish('broken', { corrupt: answer ? `target says ${answer.trim()}` : undefined, why: 'no answer' })));
      sock.write(header);
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, 32 * 1024);
          left -= n;
          bytes += n;
          if (!sock.write(p.fill(n))) {
            sock.once('drain', pump);
            return;
          }
        }
        sock.end();
      };
      pump();
    } else {
      // interactive: 64-byte messages at random intervals, each echo checked.
      header[0] = 'E'.charCodeAt(0);
      sock.write(header);
      const out = new Pattern(seed);
      const back = new Pattern(seed);
      sock.on('data', (c: Buffer) => {
        const bad = back.check(c);
        if (bad !== -1) return finish('broken', { corrupt: `echo byte ${bytes + bad} differs` });
        bytes += c.length;
      });
      sock.on('end', () => finish('broken', { why: 'echo ended' }));
      const tick = (): void => {
        sock.write(out.fill(64));
        timers.push(setTimeout(tick, 200 + Math.floor(Math.random() * 1800)));
      };
      tick();
    }
  });
}
