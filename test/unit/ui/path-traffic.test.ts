/**
 * Per-path traffic into the history under a fake clock: deltas of the
 * session's path counters each sample, a closing path's last bytes, and one
 * series per path across reconnects (new session, new path number, same
 * carrier and endpoint) and across a restart (the SQLite file reopened).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import type { PathStats, Session } from '../../../src/session/session.js';
import type { PathSupervisor } from '../../../src/paths/supervisor.js';
import { PathTrafficRecorder, pathSeriesId } from '../../../src/ui/path-traffic.js';
import { SessionEventLog } from '../../../src/ui/session-events.js';
import { openPathHistory } from '../../../src/ui/history-file.js';

const dir = mkdtempSync(join(tmpdir(), 'polytun-ui-hist-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function path(id: number, label: string, carrier: string, sent: number, received: number): PathStats {
  return { id, label, carrier, role: 'primary', state: 'up', remote: label, local: '127.0.0.1:1', rttMs: 10, inflightBytes: 0, rateBytesPerSec: 0, bytesSent: sent, bytesReceived: received, pingsMissed: 0, protection: 'aead' };
}

class FakeSession extends EventEmitter {
  paths: PathStats[] = [];
  get stats(): { paths: PathStats[] } {
    return { paths: this.paths };
  }
}

function supervisor(): PathSupervisor & EventEmitter & { current: FakeSession | undefined } {
  const e = new EventEmitter() as PathSupervisor & EventEmitter & { current: FakeSession | undefined };
  Object.defineProperty(e, 'session', { get: () => e.current as unknown as Session | undefined });
  e.current = undefined;
  return e;
}

describe('path series ids', () => {
  it('are carrier://endpoint for the link\'s path and the --path spec for the others', () => {
    assert.equal(pathSeriesId({ label: '127.0.0.1:4433', carrier: 'tcp' }), 'tcp://127.0.0.1:4433');
    assert.equal(pathSeriesId({ label: 'udp://vps:4433,bind=eth1', carrier: 'udp' }), 'udp://vps:4433,bind=eth1');
  });
});

describe('PathTrafficRecorder', () => {
  it('records per-path deltas each sample into 1-minute points that survive a reopen', async () => {
    const file = join(dir, 'h1.db');
    const MIN = 60_000;
    let wall = 1_700_000_000_000 - (1_700_000_000_000 % (60 * MIN)); // on an hour boundary
    const now = (): number => wall;
    const clock = new ManualClock();
    const h = openPathHistory(file, { flushMs: 3_600_000 });
    const sup = supervisor();
    const rec = new PathTrafficRecorder({ supervisor: sup, history: h.history, sampleMs: 15_000, clock, now });
    const events = new SessionEventLog({ supervisor: sup, servers: ['127.0.0.1:4433'], now, max: 3 });

    const s1 = new FakeSession();
    s1.paths = [path(1, '127.0.0.1:4433', 'tcp', 0, 0), path(2, 'udp://127.0.0.1:4434', 'udp', 0, 0)];
    sup.current = s1;
    sup.emit('session', s1);
    s1.paths = [path(1, '127.0.0.1:4433', 'tcp', 1000, 5000), path(2, 'udp://127.0.0.1:4434', 'udp', 100, 200)];
    wall += 15_000;
    clock.advance(15_000); // sample: +1000/+5000 tcp, +100/+200 udp in minute 0
    s1.paths = [path(1, '127.0.0.1:4433', 'tcp', 1500, 6000), path(2, 'udp://127.0.0.1:4434', 'udp', 100, 200)];
    wall += MIN;
    // The tcp path closes before the next sample: its last bytes still count (minute 1).
    const closing = s1.paths[0] as PathStats;
    s1.paths = [s1.paths[1] as PathStats];
    s1.emit('pathClosed', closing, new Error('carrier closed'));
    // A new session after a reconnect: the tcp path has a new number and fresh counters, same endpoint.
    const s2 = new FakeSession();
    s2.paths = [path(7, '127.0.0.1:4433', 'tcp', 0, 0)];
    sup.current = s2;
    sup.emit('session', s2);
    s2.paths = [path(7, '127.0.0.1:4433', 'tcp', 20, 30)];
    wall += 5_000;
    clock.advance(15_000);
    rec.close();
    await h.close();

    const again = openPathHistory(file);
    const from = wall - 10 * MIN;
    const tcp = await again.history.series('path', 'tcp://127.0.0.1:4433', from, wall + MIN, 60);
    const t0 = wall - 5_000 - MIN - 15_000;
    assert.deepEqual(tcp, [
      { at: t0, up: 1000, down: 5000 },
      { at: t0 + MIN, up: 520, down: 1030 },
    ]);
    const udp = await again.history.series('path', 'udp://127.0.0.1:4434', from, wall + MIN, 60);
    assert.deepEqual(udp, [{ at: t0, up: 100, down: 200 }]);
    const hours = await again.history.series('path', 'tcp://127.0.0.1:4433', from, wall + MIN, 3600);
    assert.deepEqual(hours, [{ at: t0, up: 1520, down: 6030 }]);
    assert.deepEqual(rec.pathIds(), ['tcp://127.0.0.1:4433', 'udp://127.0.0.1:4434']);
    await again.close();

    // The event ring kept only the newest 3, oldest first.
    assert.deepEqual(events.list().map((e) => e.kind), ['connected', 'path-down', 'connected']);
    assert.match(events.list()[1]?.message ?? '', /went down: carrier closed/);
    assert.equal(events.list()[1]?.path, 'tcp://127.0.0.1:4433');
  });
});
