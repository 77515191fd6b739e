/**
 * A SessionClient whose server stays away longer than the resume grace
 * period: once the grace timer has closed the session, the client opens a
 * new one by itself (before issue 14 it waited forever on a closed session),
 * one 'reconnecting' per failed attempt, and with `maxRetries` it gives up.
 *
 * An in-process server on loopback is "crashed" (listener closed, its
 * connections destroyed, its sessions forgotten) and a new one with the same
 * key started on the same port. Grace and backoff are a few ms, so waiting
 * is for events, never for a duration.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { TimeoutError } from '../../../src/core/errors.js';
import type { Logger } from '../../../src/core/logger.js';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import type { Listener } from '../../../src/carriers/types.js';
import { UnreachableError } from '../../../src/paths/backoff.js';
import { SessionClient, type SessionClientInit } from '../../../src/paths/session-client.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { SessionServer } from '../../../src/server/session-server.js';
import type { Session } from '../../../src/session/session.js';

const serverKeys = generateKeyPair();
const clientKeys = generateKeyPair();

/** A server that can crash and come back on the same port with the same key (but no memory of sessions). */
class CrashableServer {
  private listener: Listener | undefined;
  private server: SessionServer<string> | undefined;
  private readonly conns = new Set<Duplex>();
  port = 0;

  async start(): Promise<void> {
    const server = new SessionServer<string>({ staticKeyPair: serverKeys, users: { byKey: () => 'alice' } });
    this.server = server;
    this.listener = await new TcpCarrier().listen({ host: '127.0.0.1', port: this.port }, (c) => {
      this.conns.add(c.stream);
      c.stream.once('close', () => this.conns.delete(c.stream));
      server.handle(c);
    });
    this.port = this.listener.address.port;
  }

  /** Gone without a goodbye: carriers cut, sessions forgotten. */
  async crash(): Promise<void> {
    await this.listener?.close();
    for (const c of this.conns) c.destroy();
    for (const e of this.server?.sessions.values() ?? []) e.session.abort();
    this.listener = undefined;
  }
}

function recordingLogger(): Logger & { lines: { level: string; msg: string; obj: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const at = (level: string) => (obj: object, msg?: string): void => void lines.push({ level, msg: msg ?? '', obj: obj as Record<string, unknown> });
  const log = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

// The session's and the client's timers are unref'd (an app's own sockets keep
// it alive); while the server is down nothing else would keep this test's loop running.
const keepAlive = setInterval(() => undefined, 1000);
const cleanups: (() => unknown)[] = [() => clearInterval(keepAlive)];
after(async () => {
  for (const c of cleanups) await c();
});

async function setup(extra: Partial<SessionClientInit> = {}): Promise<{ srv: CrashableServer; client: SessionClient; log: ReturnType<typeof recordingLogger>; first: Session }> {
  const srv = new CrashableServer();
  await srv.start();
  const log = recordingLogger();
  const client = new SessionClient({
    carrier: new TcpCarrier(),
    endpoint: { host: '127.0.0.1', port: srv.port },
    serverPublicKey: serverKeys.publicKey,
    clientKeyPair: clientKeys,
    logger: log,
    session: { graceMs: 100 },
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    reconnectBaseMs: 5,
    reconnectMaxMs: 20,
    ...extra,
  });
  cleanups.push(() => client.close(), () => srv.crash());
  const first = await client.connect();
  return { srv, client, log, first };
}

describe('SessionClient: outage longer than the grace period', () => {
  it('opens a new session by itself once the server is back', async () => {
    const { srv, client, log, first } = await setup();
    const closed = once(client, 'sessionClosed');
    await srv.crash();
    const [, why] = (await closed) as [Session, Error];
    assert.ok(why instanceof TimeoutError, `closed by ${why.message}`);
    // Still down: it keeps trying, one event (and line) per attempt.
    await once(client, 'reconnecting');
    await once(client, 'reconnecting');
    assert.equal(client.reconnecting, true);

    const renewed = once(client, 'session');
    await srv.start();
    const [next] = (await renewed) as [Session];
    assert.notEqual(next, first);
    assert.equal(next.state, 'open');
    assert.equal(client.session, next);
    assert.notDeepEqual(next.id, first.id);
    // The new session carries traffic.
    await next.ping();
    const msgs = log.lines.map((l) => l.msg);
    assert.ok(msgs.some((m) => m.startsWith('connection to server lost; reconnecting')), msgs.join('\n'));
    assert.ok(msgs.includes('could not resume the session in time; open connections are lost; starting a new session'), msgs.join('\n'));
    assert.ok(msgs.includes('connected (new session)'), msgs.join('\n'));
    // The line names the record cipher the new session's handshake chose, as status() does.
    const line = log.lines.find((l) => l.msg === 'connected (new session)');
    assert.ok(line?.obj.cipher === 'aes-256-gcm' || line?.obj.cipher === 'chacha20-poly1305', JSON.stringify(line?.obj));
    assert.equal(client.status().cipher, line.obj.cipher);
    const attempts = msgs.filter((m) => /^reconnecting in \d+(\.\d)?(ms|s)$/.test(m)).length;
    assert.ok(attempts >= 2, msgs.join('\n'));
  });

  it('after maxRetries failures in a row it gives up (gaveUp, no more attempts)', async () => {
    const { srv, client } = await setup({ maxRetries: 2 });
    let reconnecting = 0;
    client.on('reconnecting', () => reconnecting++);
    await srv.crash();
    const [err] = (await once(client, 'gaveUp')) as [UnreachableError];
    assert.ok(err instanceof UnreachableError);
    assert.equal(err.attempts, 3);
    assert.match(err.message, /gave up after 3 attempts \(--retry 2\)/);
    assert.equal(reconnecting, 2);
    assert.equal(client.reconnecting, false);
  });

  it('a session the server forgot (it restarted within the grace period) is replaced at once', async () => {
    const { srv, client, first } = await setup({ session: { graceMs: 60_000 } });
    const renewed = once(client, 'session');
    await srv.crash();
    await srv.start();
    const [next] = (await renewed) as [Session];
    assert.notEqual(next, first);
    assert.equal(first.state, 'closed');
    assert.equal(next.state, 'open');
  });
});
