/**
 * waitForShutdown with an abort signal (how `polytun ui` stops a tunnel it
 * started): the abort resolves it, and its SIGINT/SIGTERM handlers are gone
 * afterwards, so restarting a tunnel many times leaves none behind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nullLogger } from '../../../src/core/logger.js';
import { waitForShutdown } from '../../../src/cli/shutdown.js';

describe('waitForShutdown', () => {
  it('resolves with "abort" on its signal and removes its signal handlers', async () => {
    const before = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    for (let i = 0; i < 20; i++) {
      const ac = new AbortController();
      const p = waitForShutdown(nullLogger, ac.signal);
      assert.equal(process.listenerCount('SIGTERM'), (before[1] as number) + 1);
      ac.abort();
      assert.equal(await p, 'abort');
    }
    assert.deepEqual([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')], before);
    const done = new AbortController();
    done.abort();
    assert.equal(await waitForShutdown(nullLogger, done.signal), 'abort');
  });
});
