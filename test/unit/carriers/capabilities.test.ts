/**
 * Each stream carrier declares what its streams can do (core/stream-caps.ts)
 * where it makes them, on both ends; the secure layer reads only that.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { MemoryStreamCarrier } from '../../../src/carriers/memory.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import { TcpCarrier } from '../../../src/carriers/tcp.js';
import { TlsCarrier } from '../../../src/carriers/tls.js';
import type { StreamCarrier, StreamConn } from '../../../src/carriers/types.js';
import { WsCarrier } from '../../../src/carriers/ws.js';
import { NO_CAPABILITIES, capabilitiesOf, type StreamCapabilities } from '../../../src/core/stream-caps.js';
import { testCert } from '../../helpers/certs.js';

/** Both ends of one connection over `server`/`client`, destroyed after the test. */
async function connect(t: TestContext, server: StreamCarrier, client: StreamCarrier): Promise<[StreamConn, StreamConn]> {
  let onConn: (conn: StreamConn) => void = () => undefined;
  const accepted = new Promise<StreamConn>((resolve) => (onConn = resolve));
  const listener = await server.listen({ host: '127.0.0.1', port: 0 }, (conn) => onConn(conn));
  const ends = await Promise.all([client.dial(listener.address), accepted]);
  t.after(async () => {
    for (const e of ends) e.stream.destroy();
    await listener.close();
  });
  return ends;
}

/** The shape of a declaration: which capabilities are there. */
const shape = (c: StreamCapabilities): Record<string, unknown> => ({
  buffersFreeOnWriteCallback: c.buffersFreeOnWriteCallback === true,
  slabReads: typeof c.slabReads,
  tlsBinding: typeof c.tlsBinding,
  singleWrites: typeof c.singleWrites,
});

const tlsInit = { server: { cert: testCert().cert, key: testCert().key }, client: { pinSha256: testCert().fingerprintSha256 } };

describe('stream capabilities declared by each carrier', () => {
  it('tcp: buffer reuse and slab reads, no TLS', async (t) => {
    for (const end of await connect(t, new TcpCarrier(), new TcpCarrier())) {
      assert.deepEqual(shape(capabilitiesOf(end.stream)), { buffersFreeOnWriteCallback: true, slabReads: 'function', tlsBinding: 'undefined', singleWrites: 'undefined' });
    }
  });

  it('tls: as tcp, plus single writes and a TLS binding both ends agree on', async (t) => {
    const ends = await connect(t, new TlsCarrier(tlsInit.server), new TlsCarrier(tlsInit.client));
    const bindings = ends.map((end) => {
      const caps = capabilitiesOf(end.stream);
      assert.deepEqual(shape(caps), { buffersFreeOnWriteCallback: true, slabReads: 'function', tlsBinding: 'function', singleWrites: 'function' });
      return caps.tlsBinding?.();
    });
    assert.equal(bindings[0]?.length, 16);
    assert.deepEqual(bindings[0], bindings[1]);
  });

  it('ws: buffer reuse and slab reads through the WebSocket stream, no TLS', async (t) => {
    for (const end of await connect(t, new WsCarrier({ tls: false, path: '/c' }), new WsCarrier({ tls: false, path: '/c' }))) {
      assert.deepEqual(shape(capabilitiesOf(end.stream)), { buffersFreeOnWriteCallback: true, slabReads: 'function', tlsBinding: 'undefined', singleWrites: 'undefined' });
    }
  });

  it('wss: as ws, plus the TLS binding of the TLS underneath', async (t) => {
    const ends = await connect(
      t,
      new WsCarrier({ tls: true, path: '/c', ...tlsInit.server }),
      new WsCarrier({ tls: true, path: '/c', ...tlsInit.client }),
    );
    const bindings = ends.map((end) => {
      const caps = capabilitiesOf(end.stream);
      assert.deepEqual(shape(caps), { buffersFreeOnWriteCallback: true, slabReads: 'function', tlsBinding: 'function', singleWrites: 'undefined' });
      return caps.tlsBinding?.();
    });
    assert.equal(bindings[0]?.length, 16);
    assert.deepEqual(bindings[0], bindings[1]);
  });

  it('memory: nothing (the plain path)', async (t) => {
    const net = new MemoryNetwork();
    for (const end of await connect(t, new MemoryStreamCarrier(net), new MemoryStreamCarrier(net))) assert.equal(capabilitiesOf(end.stream), NO_CAPABILITIES);
  });
});
