/**
 * Connected record-channel pairs for the compliance suite: two secure
 * channels made by the real handshake over a stream carrier (or over two
 * sockets no carrier declared anything about: the plain path).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { TestContext } from 'node:test';
import type { StreamCarrier, StreamConn } from '../../../src/carriers/types.js';
import { ReplayGuard, clientHandshake, serverHandshake, type Admission } from '../../../src/secure/handshake.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import type { SecureChannel } from '../../../src/secure/channel.js';
import type { RecordChannelPair } from './record-channel-compliance.js';

const serverKeys = generateKeyPair();
const clientKeys = generateKeyPair();
const windows = { streamWindow: 1 << 20, sessionWindow: 1 << 24 };
const admit = (): Admission => ({ accept: true, sessionId: randomBytes(16), recvSeq: 0, resumed: false, ...windows });

/** Runs both handshakes over two connected streams; `a` is the client's channel, `b` the server's. */
async function handshakePair(client: Duplex, server: Duplex, carrier: string): Promise<{ a: SecureChannel; b: SecureChannel }> {
  const [c, s] = await Promise.all([
    clientHandshake({ stream: client, remote: 'server', local: 'client', carrier }, { serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows }),
    serverHandshake({ stream: server, remote: 'client', local: 'server', carrier }, { staticKeyPair: serverKeys, admit, replay: new ReplayGuard() }),
  ]);
  return { a: c.channel, b: s.channel };
}

function pairOf(a: SecureChannel, b: SecureChannel, clientStream: Duplex, serverStream: Duplex, t: TestContext): RecordChannelPair {
  t.after(() => {
    a.abort();
    b.abort();
  });
  return {
    a,
    b,
    injectToB: (bytes) => void clientStream.write(bytes),
    stallB: () => {
      serverStream.pause();
      return () => void serverStream.resume();
    },
  };
}

/** A pair over a stream carrier: `server` listens on loopback, `client` dials it. */
export async function carrierChannelPair(t: TestContext, server: StreamCarrier, client: StreamCarrier): Promise<RecordChannelPair> {
  let onConn: (conn: StreamConn) => void = () => undefined;
  const accepted = new Promise<StreamConn>((resolve) => (onConn = resolve));
  const listener = await server.listen({ host: '127.0.0.1', port: 0 }, (conn) => onConn(conn));
  t.after(() => listener.close());
  const [cc, sc] = await Promise.all([client.dial(listener.address), accepted]);
  const { a, b } = await handshakePair(cc.stream, sc.stream, server.scheme);
  return pairOf(a, b, cc.stream, sc.stream, t);
}

/** A pair over plain loopback TCP sockets that no carrier made: nothing declared, every optimisation off. */
export async function undeclaredTcpChannelPair(t: TestContext): Promise<RecordChannelPair & { sockets: net.Socket[] }> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  const [[server]] = await Promise.all([accepted, once(client, 'connect')]);
  const { a, b } = await handshakePair(client, server, 'tcp');
  return { ...pairOf(a, b, client, server, t), sockets: [client, server] };
}
