/** The path scheduler on its own, with fake paths and a manual clock. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../../src/core/clock.js';
import type { SecureChannel } from '../../../../src/secure/channel.js';
import { PathScheduler } from '../../../../src/session/multipath/scheduler.js';
import { pathChannel } from '../../../helpers/fake-path.js';

function setup(pathUpAfterMs = 0): { sched: PathScheduler; clock: ManualClock; flushes: () => number } {
  const clock = new ManualClock(0);
  let ids = 100;
  let flushes = 0;
  const sched = new PathScheduler({ nextPingId: () => ids++, scheduleFlush: () => void flushes++ }, pathUpAfterMs, clock);
  return { sched, clock, flushes: () => flushes };
}

const channel = (): SecureChannel => pathChannel() as unknown as SecureChannel;

describe('PathScheduler', () => {
  it('a single path is taken while it is up and writable', () => {
    const { sched } = setup();
    const ch = pathChannel();
    const p = sched.add(ch as unknown as SecureChannel, {});
    assert.equal(sched.pickPath(), p);
    ch.writable = false;
    assert.equal(sched.pickPath(), undefined);
  });

  it('a joining path is up at once only when alone or without warm-up', () => {
    const { sched } = setup(1000);
    const a = sched.add(channel(), {});
    const b = sched.add(channel(), {});
    assert.equal(a.up, true);
    assert.equal(b.up, false);
    assert.equal(sched.pickPath(), a);
  });

  it('picks the path with the earliest expected delivery, and moves to the other when one is suspended', () => {
    const { sched } = setup();
    const fast = sched.add(channel(), { label: 'fast' });
    const slow = sched.add(channel(), { label: 'slow' });
    fast.onRtt(10);
    slow.onRtt(80);
    assert.equal(sched.pickPath(), fast);
    fast.suspend();
    assert.equal(sched.pickPath(), slow);
    assert.equal(sched.rttMs, 80, 'the RTT is the usable paths\'');
    fast.unsuspend();
    assert.equal(sched.pickPath(), fast);
  });

  it('uses backups only when no primary is up, and revives suspended paths when none is up', () => {
    const { sched } = setup();
    const primary = sched.add(channel(), { role: 'primary' });
    const backup = sched.add(channel(), { role: 'backup' });
    backup.onRtt(1);
    primary.onRtt(100);
    assert.equal(sched.pickPath(), primary);
    primary.suspend();
    assert.equal(sched.pickPath(), backup);
    backup.suspend();
    assert.equal(sched.pickPath(), undefined);
    sched.reviveIfNoneUp();
    assert.equal(sched.pickPath(), primary);
  });

  it('asks for a bonding probe on a path with data in flight, and settles it once its PING was written', () => {
    const { sched, clock, flushes } = setup();
    const a = sched.add(channel(), {});
    sched.add(channel(), {});
    a.addInflight(1000);
    (a.channel as unknown as { bytesOut: number }).bytesOut = 1000;
    sched.pickPath();
    assert.equal(a.pingToSend, 100, 'a probe PING is due');
    assert.equal(flushes(), 1);
    a.writeControl(Buffer.alloc(64));
    clock.advance(5);
    sched.pickPath();
    assert.equal(a.probeDue(clock.now()), false, 'no second probe before new bytes and 10 ms');
    assert.equal(a.onProbePong(100, clock.now() + 20), true, 'the probe was recorded');
  });

  it('control frames take any writable path, up ones and faster ones first', () => {
    const { sched } = setup(1000);
    const a = sched.add(channel(), {});
    const b = sched.add(channel(), {});
    a.onRtt(50);
    b.onRtt(5);
    assert.equal(sched.bestControlPath(), a, 'b is still joining');
    b.markUp(0);
    assert.equal(sched.bestControlPath(), b);
    assert.equal(sched.windowRttMs(), 50, 'windows cover the slowest usable path');
  });
});
