/**
 * An authenticated peer that sends nonsense: records of well-formed frames
 * with arbitrary fields (unknown streams, sequence gaps and repeats, windows
 * and ACKs beyond anything sent, random codes and lengths) and plain garbage.
 * The receiving session may accept what is harmless or close itself, but only
 * with one of our typed errors; nothing escapes as an uncaught exception (the
 * test runner fails the test on one), and the server keeps serving others.
 */
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { SessionClient } from '../../../src/paths/session-client.js';
import { makeDestination } from '../../../src/core/address.js';
import { PolytunError } from '../../../src/core/errors.js';
import { encodeOpen } from '../../../src/proxy/wire.js';
import { EgressDialer } from '../../../src/server/egress.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { attachProxy, createProxyCounters, type ProxyCounters } from '../../../src/server/proxy-server.js';
import type { SessionPath } from '../../../src/session/multipath/path.js';
import type { Session } from '../../../src/session/session.js';
import { RECORD_DATA } from '../../../src/secure/record.js';
import { F_DATA, F_FIN, F_OPEN, F_PAD, F_PING, F_PONG, F_RST, writeAck, writeClose, writeDatagram, writeGoaway, writePingPong, writeSeqFrame, writeWindow } from '../../../src/session/frames.js';
import { echoStreams, makePair, readAll, type Pair } from '../../helpers/session-pair.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});

/** The client's channel, to write records the client session would never send. */
function rawChannel(s: Session): SessionPath['channel'] {
  const paths = (s as unknown as { scheduler: { paths: Map<number, SessionPath> } }).scheduler.paths;
  const first = paths.values().next().value;
  assert.ok(first, 'client session has a path');
  return first.channel;
}

type FrameSpec =
  | { kind: 'seq'; type: typeof F_DATA | typeof F_OPEN | typeof F_FIN | typeof F_RST; seqDelta: number; sid: number; freshSid: boolean; payload: Uint8Array; code: number }
  | { kind: 'window'; sid: number; max: number }
  | { kind: 'ack'; seq: number }
  | { kind: 'ping' | 'pong'; id: number }
  | { kind: 'datagram'; flow: number; payload: Uint8Array }
  | { kind: 'goaway'; code: number }
  | { kind: 'close'; code: number; reason: Uint8Array }
  | { kind: 'pad'; len: number }
  | { kind: 'garbage'; bytes: Uint8Array };

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u48 = fc.integer({ min: 0, max: 2 ** 48 - 1 });
/** A well-formed proxy OPEN payload (CONNECT, BIND, or the server's ACCEPTED) for an arbitrary destination. */
const openRequest: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.constantFrom('connect' as const, 'bind' as const, 'accepted' as const), fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()), fc.integer({ min: 0, max: 65535 }), u32)
  .map(([kind, host, port, bindId]) => {
    try {
      const dest = makeDestination(host, port);
      return encodeOpen(kind === 'accepted' ? { kind, bindId, peer: dest } : { kind, dest });
    } catch {
      return new Uint8Array([1]); // a destination the codec refuses (port 0, say): a truncated request
    }
  });
/** Mostly the two live streams (1 and 3); other small ids may be the server's or unused; large ones are unknown. */
const sid = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(1, 3) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 8 }) }, { weight: 1, arbitrary: u32 });
const frameSpec: fc.Arbitrary<FrameSpec> = fc.oneof(
  {
    weight: 16,
    arbitrary: fc.record({
      kind: fc.constant('seq' as const),
      type: fc.constantFrom(F_DATA, F_OPEN, F_FIN, F_RST),
      // Relative to what the server expects next: mostly that one, else repeats and gaps.
      seqDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: -3, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }) }),
      sid,
      // An OPEN on the next stream id the client would use, rather than `sid`.
      freshSid: fc.boolean(),
      payload: fc.oneof({ weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) }, { weight: 2, arbitrary: openRequest }),
      code: u32,
    }),
  },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('window' as const), sid, max: u48 }) },
  // Mostly within what the server sent (a few frames), sometimes beyond it.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('ack' as const), seq: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 2 }) }, { weight: 1, arbitrary: u48 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('ping' as const, 'pong' as const), id: u32 }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('datagram' as const), flow: u32, payload: fc.uint8Array({ maxLength: 300 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('goaway' as const), code: u32 }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('pad' as const), len: fc.integer({ min: 0, max: 500 }) }) },
  // Rare: each ends the session outright.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const), code: u32, reason: fc.uint8Array({ maxLength: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
);

/**
 * Encodes one record's plaintext (type byte first). `next` holds the
 * sequence number the server expects next and the client's next stream id;
 * a frame with delta 0 takes the sequence number and moves it on, and so
 * does a `freshSid` OPEN with the stream id.
 */
function encodeRecord(frames: FrameSpec[], next: { seq: number; sid: number }): Buffer {
  const buf = Buffer.alloc(1 + frames.length * 1024);
  buf[0] = RECORD_DATA;
  let off = 1;
  for (const f of frames) {
    switch (f.kind) {
      case 'seq': {
        const seq = Math.min(2 ** 48 - 1, Math.max(0, next.seq + f.seqDelta));
        if (f.seqDelta === 0) next.seq++;
        const payload = f.type === F_DATA || f.type === F_OPEN ? Buffer.from(f.payload) : undefined;
        let sid = f.sid;
        if (f.type === F_OPEN && f.freshSid) {
          sid = next.sid;
          next.sid += 2;
        }
        off = writeSeqFrame(buf, off, { type: f.type, seq, sid, payload, code: f.code });
        break;
      }
      case 'window':
        off = writeWindow(buf, off, f.sid, f.max);
        break;
      case 'ack':
        off = writeAck(buf, off, f.seq);
        break;
      case 'ping':
      case 'pong':
        off = writePingPong(buf, off, f.kind === 'ping' ? F_PING : F_PONG, f.id);
        break;
      case 'datagram':
        off = writeDatagram(buf, off, f.flow, Buffer.from(f.payload));
        break;
      case 'goaway':
        off = writeGoaway(buf, off, f.code);
        break;
      case 'close':
        off = writeClose(buf, off, f.code, Buffer.from(f.reason));
        break;
      case 'pad':
        buf[off] = F_PAD;
        buf.writeUInt16BE(f.len, off + 1);
        buf.fill(0, off + 3, off + 3 + f.len);
        off += 3 + f.len;
        break;
      case 'garbage':
        buf.set(f.bytes, off);
        off += f.bytes.length;
        break;
    }
  }
  return buf.subarray(0, off);
}

/** Resolves once `s` is closed, or after `ms` with it still open. */
/** How long a side may take to answer or close: a hang guard, generous for a loaded machine (3 s was not). */
const LIVENESS_MS = 20_000;

function closedWithin(s: Session, ms: number): Promise<boolean> {
  if (s.state === 'closed') return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      s.off('closed', onClosed);
      resolve(false);
    }, ms);
    const onClosed = (): void => {
      clearTimeout(t);
      resolve(true);
    };
    s.once('closed', onClosed);
  });
}

/**
 * The proxy, as a server runs it, but unable to reach anything: every
 * destination is refused, names never resolve and no dial leaves the
 * machine (the test sends traffic to loopback only).
 */
function attachHarmlessProxy(server: Session, counters: ProxyCounters): void {
  const policy = new DestinationPolicy({ otherwise: 'deny' });
  const nowhere = (): never => {
    throw Object.assign(new Error('no resolver in this test'), { code: 'ENOTFOUND' });
  };
  const egress = new EgressDialer({
    policy,
    resolve: async () => nowhere(),
    connect: () => {
      const s = new Socket();
      process.nextTick(() => s.destroy(Object.assign(new Error('no dials in this test'), { code: 'ECONNREFUSED' })));
      return s;
    },
  });
  attachProxy(server, { egress, policy, counters, reverse: { enabled: false }, udp: { resolve: async () => nowhere() } });
}

/** Who attacks whom, and what the attacked side runs. */
interface Scenario {
  name: string;
  /** The server attacks the client (else the client attacks the server). */
  serverAttacks: boolean;
  /** What the server's side of each fresh session runs; `counters` collects the proxy's, when there is one. */
  serve(server: Session, counters: ProxyCounters): void;
  /** What each fresh client runs, set up before it connects. */
  client?(client: SessionClient): void;
  /** A check, on a fresh well-behaved session, that the server still serves. */
  stillServes(session: Session): Promise<void>;
  /** Checks on what the whole run reached. */
  reached?(counters: ProxyCounters): void;
}

const echoBack = async (session: Session): Promise<void> => {
  const s = session.openStream();
  s.end('still here');
  assert.equal((await readAll(s)).toString(), 'still here');
};

const scenarios: Scenario[] = [
  { name: 'a client attacks a server that echoes', serverAttacks: false, serve: echoStreams, stillServes: echoBack },
  {
    name: 'a client attacks a server running the proxy',
    serverAttacks: false,
    serve: attachHarmlessProxy,
    async stillServes(session) {
      const s = session.openStream(encodeOpen({ kind: 'connect', dest: makeDestination('127.0.0.1', 9) }));
      s.end();
      // The policy's refusal: status 0x02 (not allowed by ruleset) and the stream's end.
      assert.deepEqual([...(await readAll(s))], [2]);
    },
    reached(counters) {
      // The proxy saw both kinds of OPEN: ones it could not decode and well-formed CONNECTs.
      assert.ok(counters.badOpens > 0, 'no malformed OPEN reached the proxy');
      assert.ok(counters.connects > 0, `no CONNECT reached the proxy: ${JSON.stringify(counters)}`);
    },
  },
  {
    name: 'a server attacks a client running the proxy client',
    serverAttacks: true,
    serve: echoStreams,
    // The proxy client as the CLI runs it: it takes the server's ACCEPTED streams and datagrams.
    client: (client) => ProxyClient.forSessionClient(client),
    stillServes: echoBack,
  },
];

describe('a session under a hostile authenticated peer', () => {
  for (const sc of scenarios) {
    it(`${sc.name}: the other side carries on or closes with a typed error, and the server keeps serving`, async () => {
      const p = await makePair();
      pairs.push(p);
      const counters = createProxyCounters();
      const serverSessions = new Map<string, Session>();
      p.server.on('session', (e: { session: Session }) => serverSessions.set(e.session.id.toString('hex'), e.session));
      /** A fresh session on the same server, and the server's side of it. */
      const fresh = async (): Promise<{ client: SessionClient; session: Session; server: Session }> => {
        const client = new SessionClient({ carrier: new TcpCarrier(), endpoint: p.endpoint, serverPublicKey: p.serverKeys.publicKey, clientKeyPair: p.clientKeys, backoffBaseMs: 20, backoffMaxMs: 200 });
        sc.client?.(client);
        const session = await client.connect();
        const server = serverSessions.get(session.id.toString('hex'));
        assert.ok(server, 'the server announced the session before the client had it');
        sc.serve(server, counters);
        return { client, session, server };
      };
      const errors = new Map<string, number>();
      let closes = 0;
      let survived = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(frameSpec, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }), async (records) => {
          const { client, session, server } = await fresh();
          const [attacker, victim] = sc.serverAttacks ? [server, session] : [session, server];
          try {
            // Live client streams (ids 1 and 3) for the frames to land on.
            const live = [session.openStream(Buffer.from('a')), session.openStream(Buffer.from('b'))];
            for (const l of live) {
              l.on('error', () => undefined);
              l.write('hello');
              l.resume();
            }
            await session.ping();
            const ch = rawChannel(attacker);
            // The attacker's next stream id: the client's live streams took 1 and 3; the server has opened none.
            const next = { seq: victim.receivedSeq + 1, sid: sc.serverAttacks ? 2 : 5 };
            for (const frames of records) {
              const pt = encodeRecord(frames, next);
              ch.write(pt, pt.length);
            }
            // The ping leaves after those records: its answer proves they were all read.
            const outcome = await Promise.race([
              attacker.ping().then(
                () => 'answered',
                () => 'lost',
              ),
              closedWithin(victim, LIVENESS_MS).then((c) => (c ? 'closed' : 'stuck')),
            ]);
            assert.notEqual(outcome, 'stuck', 'the attacked side neither answered a ping nor closed the session');
            if (outcome === 'answered' && victim.state !== 'closed') {
              survived++;
              return;
            }
            assert.ok(await closedWithin(victim, LIVENESS_MS), 'the attacker lost its session, so the other side must have closed it');
            const err = victim.error;
            if (err) {
              assert.ok(err instanceof PolytunError, `session ended with an untyped ${err.name}: ${err.message}\n${err.stack}`);
              errors.set(err.name, (errors.get(err.name) ?? 0) + 1);
            }
            closes++;
          } finally {
            client.close();
          }
        }),
        { numRuns: 200 },
      );
      // Both outcomes happened: the generator reaches the error paths and the harmless ones.
      assert.ok(closes > 0, 'no run closed the session');
      assert.ok(survived > 0, 'every run closed the session');
      assert.ok((errors.get('ProtocolError') ?? 0) > 0, `no ProtocolError among ${JSON.stringify([...errors])}`);
      sc.reached?.(counters);
      const { client, session } = await fresh();
      try {
        await sc.stillServes(session);
      } finally {
        client.close();
      }
    });
  }
});
