/**
 * Every record-channel implementation runs the compliance suite: today the
 * stream secure channel, over each stream carrier, and over sockets no
 * carrier declared anything about (the plain path every optimisation falls
 * back to).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStreamCarrier } from '../../../src/carriers/memory.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import { TlsCarrier } from '../../../src/carriers/tls.js';
import { WsCarrier } from '../../../src/carriers/ws.js';
import { NO_CAPABILITIES, capabilitiesOf } from '../../../src/core/stream-caps.js';
import { testCert } from '../../helpers/certs.js';
import { carrierChannelPair, undeclaredTcpChannelPair } from './channel-pairs.js';
import { recordChannelCompliance } from './record-channel-compliance.js';

const tls = () => ({ server: new TlsCarrier({ cert: testCert().cert, key: testCert().key }), client: new TlsCarrier({ pinSha256: testCert().fingerprintSha256 }) });
const ws = (secure: boolean) => ({
  server: new WsCarrier({ tls: secure, path: '/r', ...(secure && { cert: testCert().cert, key: testCert().key }) }),
  client: new WsCarrier({ tls: secure, path: '/r', ...(secure && { pinSha256: testCert().fingerprintSha256 }) }),
});

recordChannelCompliance('secure channel over memory', {
  pair: (t) => {
    const net = new MemoryNetwork();
    return carrierChannelPair(t, new MemoryStreamCarrier(net), new MemoryStreamCarrier(net));
  },
  reliable: true,
  protection: 'aead',
});

recordChannelCompliance('secure channel over tcp', { pair: (t) => carrierChannelPair(t, new TcpCarrier(), new TcpCarrier()), reliable: true, protection: 'aead' });

recordChannelCompliance('secure channel over tls', {
  pair: (t) => {
    const c = tls();
    return carrierChannelPair(t, c.server, c.client);
  },
  reliable: true,
  protection: 'tls-bound',
});

recordChannelCompliance('secure channel over ws', {
  pair: (t) => {
    const c = ws(false);
    return carrierChannelPair(t, c.server, c.client);
  },
  reliable: true,
  protection: 'aead',
});

recordChannelCompliance('secure channel over wss', {
  pair: (t) => {
    const c = ws(true);
    return carrierChannelPair(t, c.server, c.client);
  },
  reliable: true,
  protection: 'tls-bound',
});

recordChannelCompliance('secure channel over undeclared tcp sockets (no capabilities: the plain path)', {
  pair: (t) => undeclaredTcpChannelPair(t),
  reliable: true,
  protection: 'aead',
});

describe('the plain path', () => {
  it('sockets no carrier made declare nothing', async (t) => {
    const p = await undeclaredTcpChannelPair(t);
    for (const s of p.sockets) assert.equal(capabilitiesOf(s), NO_CAPABILITIES);
  });
});
