import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Fifo } from '../../../src/core/fifo.js';

describe('Fifo', () => {
  it('keeps order across the compaction of its consumed front; peek, last and length agree', () => {
    const q = new Fifo<number>();
    assert.equal(q.shift(), undefined);
    assert.equal(q.peek(), undefined);
    assert.equal(q.last(), undefined);
    for (let i = 0; i < 3000; i++) q.push(i);
    for (let i = 0; i < 2500; i++) assert.equal(q.shift(), i);
    assert.equal(q.length, 500);
    assert.equal(q.peek(), 2500);
    assert.equal(q.last(), 2999);
    q.push(3000);
    for (let i = 2500; i <= 3000; i++) assert.equal(q.shift(), i);
    assert.equal(q.length, 0);
    assert.equal(q.last(), undefined);
    q.push(1);
    q.push(2);
    q.clear();
    assert.equal(q.length, 0);
    assert.equal(q.shift(), undefined);
  });
});
