/**
 * The reconnect pacing: 1 s doubling to a 10 s cap, half of each delay
 * jittered, never 0; the `reconnecting in Ns` wording; what `--retry N`
 * allows. The random source is injected, so every figure is exact.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backoff, UnreachableError, formatDelay, retriesLeft } from '../../../src/paths/backoff.js';

describe('Backoff', () => {
  it('doubles from 1 s to the 10 s cap; the random half spans [ceiling/2, ceiling)', () => {
    const low = new Backoff({ random: () => 0 });
    const high = new Backoff({ random: () => 0.999_999 });
    const lows = Array.from({ length: 8 }, () => low.next());
    const highs = Array.from({ length: 8 }, () => high.next());
    assert.deepEqual(lows, [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
    assert.deepEqual(highs, [999, 1999, 3999, 7999, 9999, 9999, 9999, 9999]);
    assert.equal(low.attempts, 8);
  });

  it('reset() starts again from the first delay', () => {
    const b = new Backoff({ random: () => 0 });
    b.next();
    b.next();
    b.next();
    b.reset();
    assert.equal(b.attempts, 0);
    assert.equal(b.next(), 500);
  });

  it('honours base and cap, and never hands out 0 (no tight loop)', () => {
    const b = new Backoff({ baseMs: 1, maxMs: 4, random: () => 0 });
    assert.deepEqual(Array.from({ length: 5 }, () => b.next()), [1, 1, 2, 2, 2]);
    const z = new Backoff({ baseMs: 0, maxMs: 0, random: () => 0 });
    assert.ok(z.next() >= 1);
  });

  it('stays within the cap after very many attempts', () => {
    const b = new Backoff({ random: () => 0.5 });
    let last = 0;
    for (let i = 0; i < 10_000; i++) last = b.next();
    assert.equal(last, 7500);
  });
});

describe('formatDelay', () => {
  it('says what "reconnecting in Ns" means', () => {
    assert.equal(formatDelay(250), '250ms');
    assert.equal(formatDelay(1000), '1s');
    assert.equal(formatDelay(1499), '1.5s');
    assert.equal(formatDelay(9_949), '9.9s');
    assert.equal(formatDelay(29_999), '30s');
  });
});

describe('retriesLeft / UnreachableError', () => {
  it('--retry N allows N retries after the first failure; absent = forever', () => {
    assert.equal(retriesLeft(0, 1), false);
    assert.equal(retriesLeft(2, 2), true);
    assert.equal(retriesLeft(2, 3), false);
    assert.equal(retriesLeft(undefined, 1_000_000), true);
  });

  it('names the server, the cause and the flag', () => {
    const cause = new Error('dial 127.0.0.1:9 failed: ECONNREFUSED');
    const zero = new UnreachableError('127.0.0.1:9', 1, 0, cause);
    assert.equal(zero.code, 'ERR_UNREACHABLE');
    assert.equal(zero.message, 'cannot reach the server 127.0.0.1:9: dial 127.0.0.1:9 failed: ECONNREFUSED; not retrying (--retry 0)');
    assert.equal(new UnreachableError('h:1', 4, 3, cause).message, 'cannot reach the server h:1: dial 127.0.0.1:9 failed: ECONNREFUSED; gave up after 4 attempts (--retry 3)');
    assert.equal(zero.cause, cause);
  });
});
