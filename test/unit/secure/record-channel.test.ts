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
import { pooledRecordsReceived } from '../../../src/secure/channel.js';
import { RECORD_DATA } from '../../../src/secure/record.js';
import { waitUntil } from '../../helpers/eventually.js';
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

  it('bulk over undeclared sockets: no slab reads, so no record lands in a pool buffer', async (t) => {
    const p = await undeclaredTcpChannelPair(t);
    const before = pooledRecordsReceived();
    let got = 0;
    let pooled = 0;
    p.b.onRecord((_pt, buf) => {
      got++;
      if (buf) pooled++;
    });
    let drained = 0;
    p.a.onDrain(() => drained++);
    p.a.start();
    p.b.start();
    // 4 MiB: well past the 1 MiB after which a declared carrier switches to slab reads.
    const rec = Buffer.alloc(p.a.maxRecord, 7);
    rec[0] = RECORD_DATA;
    for (let i = 0; i < 64; i++) {
      if (!p.a.writable) {
        const at = drained;
        await waitUntil(() => drained > at || p.a.writable, 'drain');
      }
      p.a.write(rec, rec.length);
    }
    await waitUntil(() => got === 64, 'every record');
    assert.equal(pooled, 0);
    assert.equal(pooledRecordsReceived(), before);
  });
});
