/**
 * Paused and slow readers through the real proxy path: TCP clients of a -L
 * forward, a client/server session over tcp or wss, the server's proxy
 * dialing a loopback target. Downloads whose readers stop (a paused video
 * tab) or crawl must not freeze the other connections of the same client.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import { WsCarrier } from '../../../src/carriers/ws.js';
import type { StreamCarrier } from '../../../src/carriers/types.js';
import { LocalForward } from '../../../src/client/forward.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { makeDestination } from '../../../src/core/address.js';
import { EgressDialer } from '../../../src/server/egress.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { attachProxy } from '../../../src/server/proxy-server.js';
import type { PolyStream } from '../../../src/session/stream.js';
import { testCert } from '../../helpers/certs.js';
import { untilDone } from '../../helpers/progress.js';
import { makePair } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const PAUSED = 100;
const SLOW = 100;
const BULK = 5 << 20;

/**
 * The target: the first byte a client sends says what it gets. `E`: endless
 * data; `B`: BULK bytes, then FIN; `Q`: a short answer, then FIN.
 */
async function target(): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.once('data', (c: Buffer) => {
      const mode = String.fromCharCode(c[0] as number);
      if (mode === 'Q') return void sock.end('answer');
      const chunk = Buffer.alloc(16 * 1024, 0x42);
      let left = mode === 'B' ? BULK : Infinity;
      const pump = (): void => {
        while (left > 0 && !sock.destroyed) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void sock.once('drain', pump);
        }
        if (left === 0) sock.end();
      };
      pump();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return (server.address() as AddressInfo).port;
}

async function connect(port: number, mode: string): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined); // torn down at the end
  await once(sock, 'connect');
  sock.write(mode);
  return sock;
}

/** Reads a connection to its end, failing if it stops moving; returns the byte count. */
async function readToEnd(sock: net.Socket, what: string): Promise<{ bytes: number; text: string }> {
  let bytes = 0;
  let text = '';
  let ended = false;
  sock.on('data', (c: Buffer) => {
    bytes += c.length;
    if (text.length < 64) text += c.toString('latin1');
  });
  sock.once('end', () => (ended = true));
  sock.resume();
  await untilDone(what, () => bytes, () => ended);
  return { bytes, text };
}

const carriers: [string, () => { server: StreamCarrier; client: StreamCarrier }][] = [
  ['tcp', () => ({ server: new TcpCarrier(), client: new TcpCarrier() })],
  [
    'wss',
    () => ({
      server: new WsCarrier({ tls: true, path: '/fair', cert: testCert().cert, key: testCert().key }),
      client: new WsCarrier({ tls: true, path: '/fair', pinSha256: testCert().fingerprintSha256 }),
    }),
  ],
];

describe('paused and slow readers through a -L forward', () => {
  for (const [name, make] of carriers) {
    it(`over ${name}: ${PAUSED} paused and ${SLOW} slow (1 KiB/s) downloads; new connections get answers and a 5 MiB download completes`, { timeout: 300_000 }, async () => {
      const port = await target();
      const p = await makePair({ carriers: make() });
      cleanups.push(() => p.close());
      const policy = new DestinationPolicy({ allow: ['127.0.0.1'] });
      const proxy = attachProxy(await p.serverSession, { egress: new EgressDialer({ policy }), policy });
      cleanups.push(() => proxy.close());
      const fwd = new LocalForward({ listen: { host: '127.0.0.1', port: 0 }, target: makeDestination('127.0.0.1', port), proxy: ProxyClient.forSessionClient(p.client) });
      await fwd.start();
      cleanups.push(() => fwd.close());
      const local = fwd.address.port;

      const paused: net.Socket[] = [];
      const slow: net.Socket[] = [];
      const received = new Map<net.Socket, number>();
      for (let i = 0; i < PAUSED; i++) {
        const s = await connect(local, 'E');
        s.pause(); // never read: the kernel buffers fill, then the relay's, then the stream's
        paused.push(s);
      }
      for (let i = 0; i < SLOW; i++) {
        const s = await connect(local, 'E');
        s.pause();
        received.set(s, 0);
        slow.push(s);
      }
      // The slow readers take about 1 KiB/s each.
      const crawl = setInterval(() => {
        for (const s of slow) {
          const c = s.read(Math.min(103, s.readableLength)) as Buffer | null;
          if (c) received.set(s, (received.get(s) ?? 0) + c.length);
        }
      }, 100);
      try {
        // The stall is in place once it reaches the session: at least as many
        // of the client's streams as there are paused connections hold bytes
        // their relay (its socket full) does not take, and every slow reader
        // got its first bytes; or once nothing moves any more (the session
        // froze, as it did: the requests below then fail).
        const streams = (p.clientSession as unknown as { table: { streams: Map<number, PolyStream> } }).table.streams;
        const holding = (): number => [...streams.values()].filter((s) => s.readableLength > 0).length;
        const filled = (): boolean => holding() >= PAUSED && slow.every((s) => (received.get(s) ?? 0) > 0);
        await untilDone('stalled downloads filling', () => proxy.stats.bytesDown, filled, 5_000, { stalled: 'settle' });
        const quick = await Promise.all(Array.from({ length: 10 }, async (_, i) => readToEnd(await connect(local, 'Q'), `request ${i}`)));
        for (const q of quick) assert.equal(q.text, 'answer');
        const bulk = await readToEnd(await connect(local, 'B'), '5 MiB download');
        assert.equal(bulk.bytes, BULK);
        // The stalled connections are still open, and the slow ones still move.
        assert.ok([...paused, ...slow].every((s) => !s.destroyed), 'no stalled connection was dropped');
        const before = [...received.values()].reduce((a, b) => a + b, 0);
        await untilDone('slow readers', () => [...received.values()].reduce((a, b) => a + b, 0), () => [...received.values()].reduce((a, b) => a + b, 0) > before);
      } finally {
        clearInterval(crawl);
        for (const s of [...paused, ...slow]) s.destroy();
      }
    });
  }
});
