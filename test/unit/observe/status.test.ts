/** The status snapshot model: a client's report (its keys in their JSON order) and a gateway's. */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { clientStatus, gatewayStatus } from '../../../src/observe/status.js';
import type { PathSupervisor, SupervisorStatus } from '../../../src/paths/supervisor.js';
import type { Session } from '../../../src/session/session.js';

const udp = { udpDatagramsSent: 1, udpBytesSent: 2, udpDatagramsReceived: 3, udpBytesReceived: 4 };

function fakeSupervisor(session: Partial<Session> | undefined, st: Partial<SupervisorStatus>): PathSupervisor {
  const status: SupervisorStatus = { serverIndex: 0, since: new Date(1000), resumes: 0, newSessions: 0, lastError: undefined, ...st };
  return Object.assign(new EventEmitter(), {
    session: session as Session | undefined,
    reconnecting: false,
    connect: () => Promise.reject(new Error('not here')),
    status: () => status,
    close: () => undefined,
  }) as unknown as PathSupervisor;
}

describe('clientStatus', () => {
  it('an open session: every field, in the order `polytun status --json` has always printed them', () => {
    const session = { state: 'open', stats: { rttMs: 12.34567, bytesSent: 10, bytesReceived: 20, streams: 2, paths: [] } } as unknown as Session;
    const sup = fakeSupervisor(session, { serverIndex: 1, resumes: 2, newSessions: 1, lastError: 'connection lost' });
    const st = clientStatus({ supervisor: sup, servers: ['a:1', 'b:2'], carrier: 'tls', udp, fronts: [{ kind: 'socks5', listen: '127.0.0.1:1080' }] }, 6000);
    assert.deepEqual(Object.keys(st), ['role', 'state', 'server', 'carrier', 'since', 'sessionAgeMs', 'rttMs', 'bytesSent', 'bytesReceived', 'udpDatagramsSent', 'udpBytesSent', 'udpDatagramsReceived', 'udpBytesReceived', 'streams', 'reconnects', 'resumes', 'newSessions', 'fronts', 'lastError', 'paths']);
    assert.equal(st.server, 'b:2', 'the server in use');
    assert.equal(st.sessionAgeMs, 5000);
    assert.equal(st.rttMs, 12.346);
    assert.equal(st.reconnects, 3);
  });

  it('the negotiated record cipher comes right after the carrier, only when known (absent: the rest unchanged)', () => {
    const session = { state: 'open', stats: { bytesSent: 0, bytesReceived: 0, streams: 0, paths: [] } } as unknown as Session;
    const src = { servers: ['a:1'], carrier: 'tcp', udp, fronts: [] };
    const withCipher = clientStatus({ ...src, supervisor: fakeSupervisor(session, { cipher: 'aes-256-gcm' }) }, 6000);
    const without = clientStatus({ ...src, supervisor: fakeSupervisor(session, {}) }, 6000);
    assert.deepEqual(Object.keys(withCipher).slice(2, 6), ['server', 'carrier', 'cipher', 'since']);
    assert.equal(withCipher.cipher, 'aes-256-gcm');
    const { cipher: _c, ...rest } = withCipher;
    assert.equal(JSON.stringify(rest), JSON.stringify(without));
  });

  it('before the first session: connecting, no rtt, no last error; a closed session reads as reconnecting', () => {
    const st = clientStatus({ supervisor: fakeSupervisor(undefined, { newSessions: -1 }), servers: ['a:1'], carrier: 'tcp', udp, fronts: [] });
    assert.equal(st.state, 'connecting');
    assert.equal('rttMs' in st, false);
    assert.equal('lastError' in st, false);
    assert.equal(st.bytesSent, 0);
    const closed = clientStatus({ supervisor: fakeSupervisor({ state: 'closed', stats: { bytesSent: 0, bytesReceived: 0, streams: 0, paths: [] } } as unknown as Session, {}), servers: ['a:1'], carrier: 'tcp', udp, fronts: [] });
    assert.equal(closed.state, 'reconnecting');
  });
});

describe('gatewayStatus', () => {
  it('copies the counters, in the admin API order', () => {
    const counters = { accepted: 1, resumed: 0 };
    const st = gatewayStatus({ version: '1.0.0', startedAt: 5, draining: false, server: { sessions: new Map([['x', 1]]), counters }, listeners: [{ carrier: 'tcp', address: '0.0.0.0', port: 1 }] });
    assert.deepEqual(Object.keys(st), ['version', 'startedAt', 'draining', 'sessions', 'listeners', 'counters']);
    assert.equal(st.sessions, 1);
    counters.accepted = 9;
    assert.equal(st.counters.accepted, 1);
  });
});
