/**
 * Benchmark peer process: a session server (or a raw TCP sink) that swallows
 * every stream and answers its byte count when the stream ends. Prints one
 * JSON line `{port, pk}` on stdout when ready; exits when stdin closes.
 */
import net from 'node:net';
import { TcpCarrier } from '../src/carriers/tcp.js';
import { generateKeyPair } from '../src/secure/keys.js';
import { SessionServer } from '../src/server/session-server.js';
import type { CipherChoice } from '../src/secure/cipher.js';
import type { Session } from '../src/session/session.js';

const mode = process.argv[2] ?? 'session';

function sink(s: NodeJS.ReadableStream & NodeJS.WritableStream): void {
  let n = 0;
  s.on('data', (c: Buffer) => (n += c.length));
  s.on('end', () => s.end(`${n}\n`));
  s.on('error', () => undefined);
}

if (mode === 'raw') {
  const srv = net.createServer((sock) => sink(sock));
  srv.listen(0, '127.0.0.1', () => {
    console.log(JSON.stringify({ port: (srv.address() as net.AddressInfo).port }));
  });
} else {
  const keys = generateKeyPair();
  const clientPub = process.argv[3] ?? '';
  const server = new SessionServer<string>({
    staticKeyPair: keys,
    users: { byKey: (k) => (k.toString('base64url') === clientPub ? 'bench' : undefined) },
    // BENCH_CIPHER forces the record cipher (to compare commits across the cipher negotiation).
    ...(process.env.BENCH_CIPHER ? { cipher: process.env.BENCH_CIPHER as CipherChoice } : {}),
  });
  server.on('session', (e: { session: Session }) => e.session.onStream((s) => sink(s)));
  const l = await new TcpCarrier().listen({ host: '127.0.0.1', port: 0 }, (c) => server.handle(c));
  console.log(JSON.stringify({ port: l.address.port, pk: keys.publicKey.toString('base64url') }));
}
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
