/**
 * keepTrying() (the paths layer's one retry loop) and connectPersistently()
 * (the long-running client's first connect) with a fake client: no sockets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, RejectCode, RejectedError } from '../../../src/core/errors.js';
import type { Logger } from '../../../src/core/logger.js';
import { UnreachableError } from '../../../src/paths/backoff.js';
import { RefusedError } from '../../../src/paths/refusal.js';
import { connectPersistently, keepTrying } from '../../../src/paths/retry.js';

function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_obj: object, msg?: string): void => void lines.push({ level, msg: msg ?? '' });
  const log = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log as unknown as Logger & { lines: { level: string; msg: string }[] };
}

/** A client whose connect() fails as scripted, then succeeds. */
function scripted(script: Error[]): { connect(): Promise<void>; calls: number } {
  const c = {
    calls: 0,
    async connect(): Promise<void> {
      c.calls++;
      const e = script.shift();
      if (e) throw e;
    },
  };
  return c;
}

const down = (): Error => new Error('connect ECONNREFUSED 127.0.0.1:1');
const disabled = (): Error => new RejectedError(RejectCode.disabled);

describe('keepTrying', () => {
  it('waits what failed() says between attempts, and returns the result', async () => {
    const waits: number[] = [];
    let n = 0;
    const r = await keepTrying({
      firstDelayMs: 7,
      attempt: async () => {
        if (++n < 3) throw new Error(`fail ${n}`);
        return 'done';
      },
      failed: () => 10 * n,
      wait: async (ms) => (waits.push(ms), true),
    });
    assert.equal(r, 'done');
    assert.deepEqual(waits, [7, 10, 20]);
  });

  it('stops when failed() returns undefined, or a wait is cut short', async () => {
    assert.equal(await keepTrying({ firstDelayMs: 0, attempt: () => Promise.reject(new Error('x')), failed: () => undefined, wait: async () => true }), undefined);
    let attempts = 0;
    const r = await keepTrying({ firstDelayMs: 0, attempt: () => (attempts++, Promise.reject(new Error('x'))), failed: () => 5, wait: async () => false });
    assert.equal(r, undefined);
    assert.equal(attempts, 1);
  });

  it('rethrows what failed() throws', async () => {
    await assert.rejects(keepTrying({ firstDelayMs: 0, attempt: () => Promise.reject(new Error('x')), failed: () => { throw new ConfigError('a', 'b'); }, wait: async () => true }), ConfigError);
  });
});

describe('connectPersistently', () => {
  const never = new AbortController().signal;

  it('retries an unreachable server with a "reconnecting in" line per attempt, then says it is reachable', async () => {
    const c = scripted([down(), down()]);
    const log = recordingLogger();
    assert.equal(await connectPersistently(c, { refusedRetryMs: 5, maxRetries: undefined, server: 's:1' }, log, never), true);
    assert.equal(c.calls, 3);
    assert.equal(log.lines.filter((l) => l.msg.startsWith('cannot connect to the server; reconnecting in ')).length, 2);
    assert.ok(log.lines.some((l) => l.msg === 'server reachable'));
  });

  it('gives up after --retry N with an UnreachableError', async () => {
    const c = scripted([down(), down(), down()]);
    await assert.rejects(connectPersistently(c, { refusedRetryMs: 5, maxRetries: 0, server: 's:1' }, recordingLogger(), never), (err: unknown) => err instanceof UnreachableError && err.attempts === 1);
    assert.equal(c.calls, 1);
  });

  it('logs a refusal once per reason, retries it every refusedRetryMs, and says when it is accepted again', async () => {
    const c = scripted([disabled(), disabled(), disabled()]);
    const log = recordingLogger();
    assert.equal(await connectPersistently(c, { refusedRetryMs: 5, maxRetries: 0, server: 's:1' }, log, never), true);
    assert.equal(c.calls, 4, 'refusals do not count against --retry');
    assert.equal(log.lines.filter((l) => l.level === 'error').length, 1);
    assert.ok(log.lines.some((l) => l.msg === 'server accepts us again'));
  });

  it('with refusedRetryMs 0 a refusal is thrown as a RefusedError; a config error at once', async () => {
    await assert.rejects(connectPersistently(scripted([disabled()]), { refusedRetryMs: 0, maxRetries: undefined, server: 's:1' }, recordingLogger(), never), RefusedError);
    await assert.rejects(connectPersistently(scripted([new ConfigError('link', 'bad')]), { refusedRetryMs: 5, maxRetries: undefined, server: 's:1' }, recordingLogger(), never), ConfigError);
  });

  it('false when the signal fires while waiting', async () => {
    const ac = new AbortController();
    const c = scripted([disabled(), disabled()]);
    const p = connectPersistently(c, { refusedRetryMs: 60_000, maxRetries: undefined, server: 's:1' }, recordingLogger(), ac.signal);
    ac.abort();
    assert.equal(await p, false);
  });
});
