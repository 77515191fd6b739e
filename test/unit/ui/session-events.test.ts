/**
 * The dashboard's timeline from a supervisor's typed events: each kind in
 * words a user reads, the failover naming the server now in use, bounded.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { PathSupervisor } from '../../../src/paths/supervisor.js';
import { SessionEventLog } from '../../../src/ui/session-events.js';

describe('SessionEventLog', () => {
  it('tells the story of an outage and a failover, oldest first', () => {
    const sup = Object.assign(new EventEmitter(), { session: undefined }) as unknown as PathSupervisor & EventEmitter;
    let t = 1000;
    const log = new SessionEventLog({ supervisor: sup, servers: ['vps1:4433', 'vps2:4433'], now: () => t++ });
    const s1 = new EventEmitter();
    sup.emit('session', s1);
    sup.emit('detached', new Error('carrier closed'));
    sup.emit('reconnecting', 2500, new Error('dial vps1:4433 failed: ECONNREFUSED'));
    sup.emit('server', 1);
    const s2 = new EventEmitter();
    sup.emit('session', s2);
    s2.emit('pathUp', { label: 'udp://vps2:4433', carrier: 'udp' });
    sup.emit('server', 0);
    const events = log.list();
    assert.deepEqual(events.map((e) => e.kind), ['connected', 'detached', 'reconnecting', 'server', 'connected', 'path-up', 'server']);
    assert.deepEqual(events.map((e) => e.at), [1000, 1001, 1002, 1003, 1004, 1005, 1006]);
    assert.equal(events[0]?.message, 'connected to vps1:4433');
    assert.equal(events[2]?.message, 'dial vps1:4433 failed: ECONNREFUSED; trying again in 2.5 s');
    assert.equal(events[3]?.message, 'failed over to server 2: vps2:4433');
    assert.equal(events[4]?.message, 'new session to vps2:4433');
    assert.equal(events[5]?.path, 'udp://vps2:4433');
    assert.equal(events[6]?.message, 'back on the first server: vps1:4433');
    // The old session's paths no longer report.
    s1.emit('pathUp', { label: 'vps1:4433', carrier: 'tcp' });
    assert.equal(log.list().length, 7);
  });
});
