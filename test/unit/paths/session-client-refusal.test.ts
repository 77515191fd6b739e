/**
 * How a SessionClient reacts when the server will not have its user: an
 * in-process server on loopback whose only user an "administrator" disables,
 * kicks and re-enables. The client must say why once, try again only every
 * `refusedRetryMs` (not with its reconnect backoff, which would hammer the
 * server), come back by itself when the user is enabled again, and stop for
 * good with `refusedRetryMs: 0`.
 *
 * Attempts are counted where the server admits authenticated handshakes
 * (`refuse()` runs once per attempt). The backoff is set to 1–5 ms, so a
 * client that retried a refusal with it would make hundreds of attempts in
 * the window; the assertions bound the count and the spacing by the
 * configured interval, which a slow machine can only make larger.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { RejectCode } from '../../../src/core/errors.js';
import type { Logger } from '../../../src/core/logger.js';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import type { Listener } from '../../../src/carriers/types.js';
import { RefusedError, SessionClient } from '../../../src/paths/session-client.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import { SessionServer } from '../../../src/server/session-server.js';
import { CloseCode, type Session } from '../../../src/session/session.js';
import { waitUntil } from '../../helpers/eventually.js';

const serverKeys = generateKeyPair();
const clientKeys = generateKeyPair();
const RETRY_MS = 150;
/** Refused attempts to observe: three gaps of at least RETRY_MS each. */
const ATTEMPTS = 4;

/** A server with one user, 'alice', that the test can disable; it records when each handshake was admitted or refused. */
class OneUserServer {
  disabled = false;
  /** Time of every authenticated handshake attempt that was refused. */
  readonly refusals: number[] = [];
  readonly conns = new Set<Duplex>();
  readonly server = new SessionServer<string>({
    staticKeyPair: serverKeys,
    users: {
      byKey: () => 'alice',
      refuse: () => {
        if (!this.disabled) return undefined;
        this.refusals.push(performance.now());
        return RejectCode.disabled;
      },
    },
  });
  private listener: Listener | undefined;

  async start(): Promise<number> {
    this.listener = await new TcpCarrier().listen({ host: '127.0.0.1', port: 0 }, (c) => {
      this.conns.add(c.stream);
      c.stream.once('close', () => this.conns.delete(c.stream));
      this.server.handle(c);
    });
    return this.listener.address.port;
  }

  /** What an admin's kick does: close every live session with CloseCode.kicked. */
  kick(): void {
    for (const e of this.server.sessions.values()) e.session.close(CloseCode.kicked, 'kicked by admin');
  }

  async stop(): Promise<void> {
    await this.listener?.close();
    for (const c of this.conns) c.destroy();
    for (const e of this.server.sessions.values()) e.session.abort();
  }
}

/** A logger that keeps the messages. */
function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_obj: object, msg?: string): void => void lines.push({ level, msg: msg ?? '' });
  const log = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups) await c();
});

async function setup(refusedRetryMs: number): Promise<{ srv: OneUserServer; client: SessionClient; log: ReturnType<typeof recordingLogger>; session: Session }> {
  const srv = new OneUserServer();
  const port = await srv.start();
  const log = recordingLogger();
  const client = new SessionClient({
    carrier: new TcpCarrier(),
    endpoint: { host: '127.0.0.1', port },
    serverPublicKey: serverKeys.publicKey,
    clientKeyPair: clientKeys,
    logger: log,
    backoffBaseMs: 1,
    backoffMaxMs: 5,
    refusedRetryMs,
  });
  cleanups.push(() => client.close(), () => srv.stop());
  const session = await client.connect();
  return { srv, client, log, session };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits for ATTEMPTS refused attempts (a loaded machine may take longer than
 * any fixed window; a client that stops trying fails on the deadline).
 */
async function attempts(srv: { refusals: readonly number[] }, what: string): Promise<void> {
  await waitUntil(() => srv.refusals.length >= ATTEMPTS, `${ATTEMPTS} attempts ${what}`);
}

/** Attempts must be spaced by the retry interval (timers may fire a little early): at most one per interval, whatever the load. */
function assertSlow(refusals: readonly number[], what: string): void {
  assert.ok(refusals.length >= 2, `${what}: the client stopped trying (${refusals.length} attempts)`);
  for (let i = 1; i < refusals.length; i++) {
    const gap = (refusals[i] as number) - (refusals[i - 1] as number);
    assert.ok(gap >= RETRY_MS * 0.9, `${what}: attempts ${i - 1} and ${i} were ${gap.toFixed(1)} ms apart (retry interval ${RETRY_MS} ms)`);
  }
}

const refusalLines = (log: ReturnType<typeof recordingLogger>, text: string): number => log.lines.filter((l) => l.msg.startsWith(`server refused: ${text}`)).length;

describe('SessionClient: permanent refusals', () => {
  it('kicked while disabled: says why once, retries every refusedRetryMs, comes back by itself when re-enabled', async () => {
    const { srv, client, log } = await setup(RETRY_MS);
    const refused: [RefusedError, number | null][] = [];
    client.on('refused', (err: RefusedError, retry: number | null) => refused.push([err, retry]));
    srv.disabled = true;
    srv.kick();
    await attempts(srv, 'after a kick');
    assertSlow(srv.refusals, 'after a kick');
    // One line for the kick, one for the refusal that follows; not one per attempt.
    assert.equal(refusalLines(log, 'session kicked;'), 1, JSON.stringify(log.lines));
    assert.equal(refusalLines(log, 'user disabled;'), 1, JSON.stringify(log.lines));
    assert.match(log.lines.find((l) => l.msg.startsWith('server refused: user disabled'))?.msg ?? '', /trying again every 150 ms/);
    assert.equal(log.lines.filter((l) => l.level === 'error').length, 2);
    assert.deepEqual(refused[0]?.[1], RETRY_MS);
    assert.equal(refused[0]?.[0].reason, 'session kicked');
    assert.equal(refused[1]?.[0].reason, 'user disabled');

    srv.disabled = false;
    const [back] = (await once(client, 'session')) as [Session];
    assert.equal(back.state, 'open');
    assert.ok(log.lines.some((l) => l.msg === 'server accepts us again'));
  });

  it('a lost connection whose resume is refused: the session is dropped and a new one tried every refusedRetryMs', async () => {
    const { srv, client, log, session } = await setup(RETRY_MS);
    srv.disabled = true;
    const closed = once(session, 'closed');
    for (const c of srv.conns) c.destroy(); // the carrier dies; the client tries to resume
    await closed;
    await attempts(srv, 'after a lost connection');
    assertSlow(srv.refusals, 'after a lost connection');
    assert.equal(refusalLines(log, 'user disabled;'), 1, JSON.stringify(log.lines));
    srv.disabled = false;
    await once(client, 'session');
  });

  it('refusedRetryMs 0: one refused event saying it stopped, then no attempt at all', async () => {
    const { srv, client, log } = await setup(0);
    srv.disabled = true;
    srv.kick();
    const [err, retry] = (await once(client, 'refused')) as [RefusedError, number | null];
    assert.ok(err instanceof RefusedError);
    assert.equal(err.code, 'ERR_REFUSED');
    assert.equal(err.message, 'server refused: session kicked');
    assert.equal(retry, null);
    assert.equal(refusalLines(log, 'session kicked; not trying again'), 1);
    await sleep(5 * RETRY_MS);
    assert.equal(srv.refusals.length, 0, 'the client tried again');
    assert.equal(srv.server.sessions.size, 0);
  });
});
