/**
 * Speed tests through a real client/server session over loopback TCP: the
 * server's SPEED handler (attached by attachProxy) against the client's
 * speedTest(), both directions; the bounds (one at a time, the announced
 * size, the decoder's maximum); the user's counters; and a server without
 * the handler (older) recognised as such.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { NotOfferedError, StreamResetError } from '../../../src/core/errors.js';
import { speedTest } from '../../../src/client/speed-test.js';
import { encodeOpen, MAX_SPEED_TEST_BYTES } from '../../../src/proxy/wire.js';
import { EgressDialer } from '../../../src/server/egress.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { attachProxy, createProxyCounters, ProxyResetCode } from '../../../src/server/proxy-server.js';
import { ResetCode, type PolyStream } from '../../../src/session/stream.js';
import { makePair } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(attach = true) {
  const p = await makePair();
  cleanups.push(() => p.close());
  const ss = await p.serverSession;
  const counters = createProxyCounters();
  if (attach) {
    const policy = new DestinationPolicy({});
    const proxy = attachProxy(ss, { egress: new EgressDialer({ policy }), policy, counters });
    cleanups.push(() => proxy.close());
  } else {
    // A session that takes streams, but not this kind: what a server older than speed tests does.
    ss.lanes.streams([0x01], (s) => s.reset(ResetCode.refused));
  }
  return { cs: p.clientSession, counters };
}

/** Resolves with how `s` ended: 'end', or the reset code. */
function outcome(s: PolyStream): Promise<'end' | number> {
  return new Promise((resolve) => {
    s.on('error', (e: Error) => resolve(e instanceof StreamResetError ? e.resetCode : -1));
    s.on('end', () => resolve('end'));
    s.resume();
  });
}

describe('speed test', () => {
  it('down: the whole size arrives when it fits the budget, and is counted as the user\'s download', async () => {
    const { cs, counters } = await setup();
    const r = await speedTest(cs, { direction: 'down', maxBytes: 4 * 1024 * 1024, budgetMs: 30_000 });
    assert.equal(r.direction, 'down');
    assert.equal(r.bytes, 4 * 1024 * 1024);
    assert.ok(r.ms > 0 && r.bytesPerSec > 0, JSON.stringify(r));
    assert.equal(r.bytesPerSec, (r.bytes * 1000) / r.ms);
    assert.equal(counters.bytesDown, 4 * 1024 * 1024);
  });

  it('up: the server counts what arrived and answers it; counted as the user\'s upload', async () => {
    const { cs, counters } = await setup();
    const r = await speedTest(cs, { direction: 'up', maxBytes: 3 * 1024 * 1024 + 5, budgetMs: 30_000 });
    assert.equal(r.bytes, 3 * 1024 * 1024 + 5);
    assert.equal(counters.bytesUp, 3 * 1024 * 1024 + 5);
    assert.ok(r.ms >= 0);
  });

  it('a short budget stops the test early with what was measured', async () => {
    const { cs } = await setup();
    const down = await speedTest(cs, { direction: 'down', budgetMs: 50 });
    assert.ok(down.bytes > 0 && down.bytes < MAX_SPEED_TEST_BYTES, JSON.stringify(down));
    const up = await speedTest(cs, { direction: 'up', budgetMs: 50 });
    assert.ok(up.bytes > 0 && up.bytes < MAX_SPEED_TEST_BYTES, JSON.stringify(up));
  });

  it('one at a time per session: a second one while the first runs is refused', async () => {
    const { cs } = await setup();
    const first = cs.openStream(encodeOpen({ kind: 'speed', direction: 'up', bytes: 1024 }));
    const firstDone = outcome(first);
    const second = cs.openStream(encodeOpen({ kind: 'speed', direction: 'down', bytes: 1024 }));
    assert.equal(await outcome(second), ResetCode.refused);
    first.end(Buffer.alloc(1024));
    assert.equal(await firstDone, 'end');
    // Once it ended, the next one runs.
    const third = await speedTest(cs, { direction: 'down', maxBytes: 1024 });
    assert.equal(third.bytes, 1024);
  });

  it('an upload longer than announced is reset; a size over the maximum is a bad OPEN', async () => {
    const { cs } = await setup();
    const s = cs.openStream(encodeOpen({ kind: 'speed', direction: 'up', bytes: 1000 }));
    const how = outcome(s);
    s.write(Buffer.alloc(2000));
    assert.equal(await how, ProxyResetCode.speedTest);
    const raw = Buffer.from([0x04, 0x01, 0, 0, 0, 0]);
    raw.writeUInt32BE(MAX_SPEED_TEST_BYTES + 1, 2);
    assert.equal(await outcome(cs.openStream(raw)), ProxyResetCode.badOpen);
  });

  it('a server without speed tests: NotOfferedError, which says to update it', async () => {
    const { cs } = await setup(false);
    await assert.rejects(speedTest(cs, { direction: 'down' }), (e: Error) => e instanceof NotOfferedError && e.code === 'ERR_NOT_OFFERED' && /speed tests .*update it/.test(e.message));
  });
});
