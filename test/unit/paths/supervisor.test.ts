/**
 * The supervisor (SessionClient) on its own: its paths come from a fake
 * PathSource (in-memory duplexes into a SessionServer, no sockets) whose
 * open() can be scripted to fail, so reconnect, resume, renewal, --retry N
 * and refusals are driven directly, and the status counters checked.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { memoryStreamPair } from '../../../src/carriers/memory.js';
import { RejectCode, RejectedError } from '../../../src/core/errors.js';
import { UnreachableError } from '../../../src/paths/backoff.js';
import type { RefusedError } from '../../../src/paths/refusal.js';
import { SessionClient } from '../../../src/paths/session-client.js';
import type { PathRequest, PathSource, OpenedPath, ResumeRequest } from '../../../src/paths/source.js';
import type { PathSupervisor } from '../../../src/paths/supervisor.js';
import { clientHandshake } from '../../../src/secure/handshake.js';
import { generateKeyPair, type KeyPair } from '../../../src/secure/keys.js';
import { SessionServer } from '../../../src/server/session-server.js';
import { CloseCode } from '../../../src/session/session.js';
import { waitUntil } from '../../helpers/eventually.js';

/** A path source whose next opens fail as scripted; after the script, each open reaches the server. */
class FakeSource implements PathSource {
  readonly kind = 'fake';
  readonly name = 'fake-server:1';
  readonly options = {};
  /** What the next opens do: an error to throw, or 'ok'. */
  script: (Error | 'ok')[] = [];
  opens = 0;
  /** The resume/join each successful open asked for (undefined: a new session). */
  resumes: (ResumeRequest | undefined)[] = [];
  /** Server ends of the paths opened, to cut them. */
  readonly serverEnds = new Set<Duplex>();

  constructor(
    private readonly server: SessionServer<string>,
    private readonly serverKey: Buffer,
    private readonly keys: KeyPair,
  ) {}

  async open(req: PathRequest): Promise<OpenedPath> {
    this.opens++;
    const step = this.script.shift() ?? 'ok';
    if (step !== 'ok') throw step;
    const [client, server] = memoryStreamPair();
    this.serverEnds.add(server);
    server.once('close', () => this.serverEnds.delete(server));
    this.server.handle({ stream: server, remote: 'fake-client:2', local: this.name, meta: {} }, 'mem');
    const resume = req.resume?.();
    this.resumes.push(resume);
    return clientHandshake(
      { stream: client, remote: this.name, local: 'fake-client:2', carrier: 'mem' },
      { serverPublicKey: this.serverKey, clientKeyPair: this.keys, resume, streamWindow: req.streamWindow, sessionWindow: req.sessionWindow, signal: req.signal },
    );
  }

  /** A dead link: every path's server end goes away. */
  cut(): void {
    for (const s of this.serverEnds) s.destroy();
  }
}

// In-memory paths hold no handle open and the supervisor's timers are
// unref'd (as in a real client, whose sockets keep the process alive): keep
// the event loop up while the tests wait.
const keepAlive = setInterval(() => undefined, 1000);
const cleanups: (() => void)[] = [() => clearInterval(keepAlive)];
after(() => {
  for (const c of cleanups) c();
});

function setup(opts: { maxRetries?: number; refusedRetryMs?: number; graceMs?: number } = {}): { client: SessionClient; source: FakeSource; server: SessionServer<string>; enabled: { on: boolean } } {
  const serverKeys = generateKeyPair();
  const clientKeys = generateKeyPair();
  const enabled = { on: true };
  const server = new SessionServer<string>({
    staticKeyPair: serverKeys,
    users: { byKey: (k) => (k.equals(clientKeys.publicKey) ? 'alice' : undefined), refuse: () => (enabled.on ? undefined : RejectCode.disabled) },
    session: { graceMs: opts.graceMs ?? 5_000 },
  });
  const source = new FakeSource(server, serverKeys.publicKey, clientKeys);
  const client = new SessionClient({
    sources: [source],
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    reconnectBaseMs: 5,
    reconnectMaxMs: 20,
    ...(opts.maxRetries !== undefined ? { maxRetries: opts.maxRetries } : {}),
    ...(opts.refusedRetryMs !== undefined ? { refusedRetryMs: opts.refusedRetryMs } : {}),
    session: { graceMs: opts.graceMs ?? 5_000 },
  });
  cleanups.push(() => client.close(), () => server.close());
  return { client, source, server, enabled };
}

const networkDown = (): Error => Object.assign(new Error('connect ECONNREFUSED fake-server:1'), { code: 'ECONNREFUSED' });

describe('PathSupervisor (SessionClient over a fake path source)', () => {
  it('opens a session from the source and reports a fresh status', async () => {
    const { client, source } = setup();
    const sup: PathSupervisor = client;
    const s = await sup.connect();
    assert.equal(s.state, 'open');
    assert.equal(sup.session, s);
    assert.deepEqual(source.resumes, [undefined]);
    const st = sup.status();
    assert.equal(st.serverIndex, 0);
    assert.equal(st.resumes, 0);
    assert.equal(st.newSessions, 0);
    assert.equal(st.lastError, undefined);
  });

  it('connect() fails fast on the first failure (the patient start is connectPersistently)', async () => {
    const { client, source } = setup();
    source.script = [networkDown()];
    await assert.rejects(client.connect(), /ECONNREFUSED/);
    assert.equal(source.opens, 1);
  });

  it('a lost path is reopened as a resume of the same session: resumed, counted', async () => {
    const { client, source } = setup();
    const s = await client.connect();
    const resumed = once(client, 'resumed');
    source.script = [networkDown()]; // the first redial fails, the next resumes
    source.cut();
    const [back] = await resumed;
    assert.equal(back, s, 'the same session goes on');
    const last = source.resumes.at(-1);
    assert.ok(last && last.id.equals(s.id) && !last.join, 'a resume, not a join');
    assert.equal(client.status().resumes, 1);
    assert.equal(client.status().newSessions, 0);
    assert.ok(client.status().lastError);
  });

  it('a session the server closed is replaced; failed attempts emit reconnecting with a delay', async () => {
    const { client, source, server } = setup();
    const first = await client.connect();
    const delays: number[] = [];
    client.on('reconnecting', (ms) => delays.push(ms));
    source.script = [networkDown(), networkDown()];
    const renewed = once(client, 'renewed');
    for (const e of server.sessions.values()) e.session.close(CloseCode.shutdown, 'server shutting down');
    const [next] = await renewed;
    assert.notEqual(next, first);
    assert.equal(delays.length, 2);
    assert.ok(delays.every((d) => d > 0 && d <= 20), String(delays));
    assert.equal(client.status().newSessions, 1);
    assert.equal(client.status().lastError, 'connect ECONNREFUSED fake-server:1');
  });

  it('with maxRetries, gives up after that many failed retries in a row and stops opening', async () => {
    const { client, source, server } = setup({ maxRetries: 1 });
    await client.connect();
    source.script = Array.from({ length: 10 }, networkDown);
    const gaveUp = once(client, 'gaveUp');
    for (const e of server.sessions.values()) e.session.close(CloseCode.shutdown, 'server shutting down');
    const [err] = (await gaveUp) as [UnreachableError];
    assert.ok(err instanceof UnreachableError);
    assert.equal(err.attempts, 2);
    // The renewal loop has ended: nothing is left to open another session.
    await waitUntil(() => !client.reconnecting, 'the renewal loop to end');
    assert.equal(source.opens, 1 + 2, 'the first open, then the attempt and the one retry');
  });

  it('a refusal is reported with its retry interval and retried slowly until the server accepts again', async () => {
    const { client, source, server, enabled } = setup({ refusedRetryMs: 30 });
    await client.connect();
    const refused: [RefusedError, number | null][] = [];
    client.on('refused', (err, retry) => refused.push([err, retry]));
    enabled.on = false;
    source.script = [new RejectedError(RejectCode.disabled)];
    for (const e of server.sessions.values()) e.session.close(CloseCode.kicked, 'kicked by admin');
    await waitUntil(() => refused.length >= 2, 'two refusals');
    assert.equal(refused[0]?.[1], 30);
    assert.match(refused[0]?.[0].message ?? '', /session kicked/);
    enabled.on = true;
    const [back] = await once(client, 'session');
    assert.equal(back.state, 'open');
  });
});
