/**
 * Session throughput: one stream and 8 streams through a session over real
 * loopback TCP (client here, server in a child process), beside raw loopback
 * TCP measured in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { TcpCarrier } from '../src/carriers/tcp.js';
import { SessionClient } from '../src/paths/session-client.js';
import { generateKeyPair } from '../src/secure/keys.js';
import type { Duplex } from 'node:stream';

const here = new URL('.', import.meta.url).pathname;

export async function startChild(args: string[]): Promise<{ child: ChildProcess; info: { port: number; pk?: string } }> {
  const child = spawn(process.execPath, [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir=.scratch/prof'] : []), '--import', 'tsx', `${here}session-child.ts`, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await once(rl, 'line')) as [string];
  return { child, info: JSON.parse(line) as { port: number; pk?: string } };
}

/** Writes `bytes` to the stream as fast as it accepts, ends it, waits for the sink's count. */
export async function blast(s: Duplex, bytes: number, chunk = Buffer.alloc(256 * 1024, 0x5a)): Promise<void> {
  let reply = '';
  s.on('data', (c: Buffer) => (reply += c.toString()));
  const ended = once(s, 'end');
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(chunk.length, bytes - sent);
    sent += n;
    if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await once(s, 'drain');
  }
  s.end();
  await ended;
  if (Number(reply.trim()) !== bytes) throw new Error(`sink counted ${reply.trim()} of ${bytes} bytes`);
}

export interface SessionBenchResult {
  rawMBps: number;
  oneStreamMBps: number;
  eightStreamsMBps: number;
}

export async function benchSession(totalBytes = 1 << 30): Promise<SessionBenchResult> {
  // Raw loopback TCP, same sizes.
  const raw = await startChild(['raw']);
  let t = performance.now();
  const sock = net.connect(raw.info.port, '127.0.0.1');
  await once(sock, 'connect');
  await blast(sock, totalBytes);
  const rawMBps = totalBytes / 1e6 / ((performance.now() - t) / 1000);
  raw.child.stdin?.end();

  const clientKeys = generateKeyPair();
  const srv = await startChild(['session', clientKeys.publicKey.toString('base64url')]);
  const client = new SessionClient({
    carrier: new TcpCarrier(),
    endpoint: { host: '127.0.0.1', port: srv.info.port },
    serverPublicKey: Buffer.from(srv.info.pk as string, 'base64url'),
    clientKeyPair: clientKeys,
  });
  const session = await client.connect();
  // Warm-up.
  await blast(session.openStream(), 64 << 20);
  t = performance.now();
  await blast(session.openStream(), totalBytes);
  const oneStreamMBps = totalBytes / 1e6 / ((performance.now() - t) / 1000);
  t = performance.now();
  await Promise.all(Array.from({ length: 8 }, () => blast(session.openStream(), totalBytes / 8)));
  const eightStreamsMBps = totalBytes / 1e6 / ((performance.now() - t) / 1000);
  client.close();
  srv.child.stdin?.end();
  return { rawMBps, oneStreamMBps, eightStreamsMBps };
}
