import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { LogLimiter } from '../../../src/core/log-limiter.js';
import { recordingLogger } from '../../helpers/fake-egress.js';

describe('LogLimiter', () => {
  it('turns a flood of one event into one line now and one summary line with the count', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const log = recordingLogger();
      const lim = new LogLimiter({ intervalMs: 10_000 });
      for (let i = 0; i < 976; i++) lim.log(log, 'warn', 'stream-limit', { limit: 1024 }, 'stream limit reached');
      assert.equal(log.lines.length, 1);
      assert.equal(log.lines[0]?.msg, 'stream limit reached');
      mock.timers.tick(10_000);
      assert.equal(log.lines.length, 2);
      assert.equal(log.lines[1]?.level, 'warn');
      assert.deepEqual(log.lines[1]?.obj, { limit: 1024, repeated: 975, perSeconds: 10 });
      // A new window after the old one closed logs at once again.
      lim.log(log, 'warn', 'stream-limit', { limit: 1024 }, 'stream limit reached');
      assert.equal(log.lines.length, 3);
      mock.timers.tick(10_000);
      assert.equal(log.lines.length, 3, 'no summary when nothing was held back');
    } finally {
      mock.timers.reset();
    }
  });

  it('keeps keys apart and bounds the open windows, writing the evicted summary', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const log = recordingLogger();
      const lim = new LogLimiter({ intervalMs: 1000, maxKeys: 2 });
      lim.log(log, 'info', 'a', {}, 'A');
      lim.log(log, 'info', 'a', {}, 'A');
      lim.log(log, 'info', 'b', {}, 'B');
      assert.equal(log.lines.length, 2);
      lim.log(log, 'info', 'c', {}, 'C'); // evicts 'a', whose summary is written first
      assert.deepEqual(log.lines.map((l) => l.msg), ['A', 'B', 'A (repeated)', 'C']);
      lim.flush();
      assert.equal(log.lines.length, 4);
    } finally {
      mock.timers.reset();
    }
  });
});
