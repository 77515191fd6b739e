/**
 * A real client/server session pair over loopback TCP for tests: a
 * SessionServer behind a TcpCarrier listener and a SessionClient dialing it,
 * optionally through a TCP impairment relay.
 */
import type { Duplex } from 'node:stream';
import { TcpCarrier } from '../../src/carriers/tcp.js';
import type { Endpoint, Listener, StreamCarrier } from '../../src/carriers/types.js';
import type { PathRole } from '../../src/session/multipath/path.js';
import { TcpRelay } from '../tools/relay.js';
import { SessionClient, type SessionClientInit } from '../../src/paths/session-client.js';
import { generateKeyPair, type KeyPair } from '../../src/secure/keys.js';
import { SessionServer, type SessionOptions, type SessionServerInit } from '../../src/server/session-server.js';
import type { Session } from '../../src/session/session.js';

export interface PairInit {
  session?: SessionOptions;
  clientSession?: SessionOptions;
  server?: Partial<SessionServerInit<string>>;
  client?: Partial<SessionClientInit>;
  /** Dial this instead of the server (e.g. a relay in front of it). */
  via?: (server: Endpoint) => Promise<Endpoint>;
  /** Carriers of both ends. @default TCP */
  carriers?: { server: StreamCarrier; client: StreamCarrier };
}

export interface Pair {
  server: SessionServer<string>;
  client: SessionClient;
  clientSession: Session;
  /** Resolves with the server side of the first session. */
  serverSession: Promise<Session>;
  serverKeys: KeyPair;
  clientKeys: KeyPair;
  listener: Listener;
  endpoint: Endpoint;
  /** Destroys every carrier connection the server has accepted (a dead link). */
  cut(): void;
  close(): Promise<void>;
}

export async function makePair(init: PairInit = {}): Promise<Pair> {
  const serverKeys = generateKeyPair();
  const clientKeys = generateKeyPair();
  const users = new Map([[clientKeys.publicKey.toString('hex'), 'alice']]);
  const server = new SessionServer<string>({
    staticKeyPair: serverKeys,
    users: { byKey: (k) => users.get(k.toString('hex')) },
    ...(init.session ? { session: init.session } : {}),
    ...init.server,
  });
  let resolveFirst: (s: Session) => void = () => undefined;
  const serverSession = new Promise<Session>((r) => (resolveFirst = r));
  server.on('session', (e: { session: Session }) => resolveFirst(e.session));
  const tcp = new TcpCarrier();
  const conns = new Set<Duplex>();
  const listener = await (init.carriers?.server ?? tcp).listen({ host: '127.0.0.1', port: 0 }, (conn) => {
    conns.add(conn.stream);
    conn.stream.once('close', () => conns.delete(conn.stream));
    server.handle(conn);
  });
  const endpoint = init.via ? await init.via(listener.address) : listener.address;
  const client = new SessionClient({
    carrier: init.carriers?.client ?? tcp,
    endpoint,
    serverPublicKey: serverKeys.publicKey,
    clientKeyPair: clientKeys,
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    ...((init.clientSession ?? init.session) ? { session: init.clientSession ?? init.session } : {}),
    ...init.client,
  });
  const clientSession = await client.connect();
  return {
    server,
    client,
    clientSession,
    serverSession,
    serverKeys,
    clientKeys,
    listener,
    endpoint,
    cut() {
      for (const c of conns) c.destroy();
    },
    async close() {
      client.close();
      server.close();
      await listener.close();
    },
  };
}

/**
 * A pair whose client session has two paths, A (the first) and B (an extra
 * path), each through its own TCP relay in front of the server, so a test
 * can cut, delay or blackhole one path. Close both with `close()`.
 */
export async function makeBondedPair(
  init: { roles?: [PathRole, PathRole]; session?: SessionOptions } = {},
): Promise<{ p: Pair; relays: TcpRelay[]; close: () => Promise<void> }> {
  const [roleA, roleB] = init.roles ?? ['primary', 'primary'];
  const relays: TcpRelay[] = [];
  let second: Endpoint | undefined;
  const p = await makePair({
    ...(init.session ? { session: init.session } : {}),
    via: async (server) => {
      for (let i = 0; i < 2; i++) {
        const r = new TcpRelay({ listen: { host: '127.0.0.1', port: 0 }, target: server });
        await r.start();
        relays.push(r);
      }
      second = (relays[1] as TcpRelay).address;
      return (relays[0] as TcpRelay).address;
    },
    client: {
      firstPath: { role: roleA, label: 'A' },
      get extraPaths() {
        return [{ carrier: new TcpCarrier(), endpoint: second as Endpoint, role: roleB, label: 'B' }];
      },
    },
  });
  return {
    p,
    relays,
    async close() {
      await p.close();
      for (const r of relays) await r.close();
    },
  };
}

/** Echoes every stream the server side opens back to the client. */
export function echoStreams(session: Session): void {
  session.onStream((s) => {
    s.on('error', () => undefined); // resets are part of the tests
    s.pipe(s);
  });
}

/** Reads a stream to its end. */
export async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
