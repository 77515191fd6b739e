import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CARRIER_SCHEMES,
  MemoryNetwork,
  MemoryPacketCarrier,
  MemoryStreamCarrier,
  TcpCarrier,
  TlsCarrier,
  UdpPacketCarrier,
  carrierForScheme,
} from '../../../src/carriers/index.js';
import { ConfigError } from '../../../src/core/errors.js';
import { readAll } from '../../helpers/byte-streams.js';

describe('carrierForScheme', () => {
  const network = new MemoryNetwork();
  const options = { memory: { network }, tls: { pinSha256: 'A'.repeat(43) } };

  it('builds each known scheme, and the carrier reports that scheme', () => {
    const expected = { tcp: TcpCarrier, tls: TlsCarrier, udp: UdpPacketCarrier, mem: MemoryStreamCarrier, 'mem+udp': MemoryPacketCarrier };
    for (const scheme of CARRIER_SCHEMES) {
      const c = carrierForScheme(scheme, options);
      assert.ok(c instanceof expected[scheme], scheme);
      assert.equal(c.scheme, scheme);
      assert.equal(c.kind, scheme === 'udp' || scheme === 'mem+udp' ? 'packet' : 'stream');
    }
  });

  it('two memory carriers built from one network reach each other', async (t) => {
    const server = carrierForScheme('mem', options);
    const client = carrierForScheme('mem', options);
    assert.equal(server.kind, 'stream');
    assert.equal(client.kind, 'stream');
    if (server.kind !== 'stream' || client.kind !== 'stream') return;
    const l = await server.listen({ host: 'x', port: 0 }, (conn) => conn.stream.end('hi'));
    t.after(() => l.close());
    const conn = await client.dial(l.address);
    conn.stream.end();
    assert.equal((await readAll(conn.stream)).toString(), 'hi');
  });

  it('unknown schemes and memory without a network are ConfigErrors', () => {
    assert.throws(() => carrierForScheme('carrier-pigeon'), (e: unknown) => e instanceof ConfigError && /carrier-pigeon/.test(e.message));
    assert.throws(() => carrierForScheme('mem'), ConfigError);
  });
});
