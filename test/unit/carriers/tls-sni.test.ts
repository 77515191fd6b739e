import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TlsCarrier } from '../../../src/carriers/tls.js';
import { testCert } from '../../helpers/certs.js';
import { eventually } from '../../helpers/eventually.js';

// Its own file (its own process): Node prints a deprecation warning once per process.
describe('TLS SNI', () => {
  it('no IP literal in SNI: dialling tls://127.0.0.1 with the link host as servername prints no DeprecationWarning', async (t) => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const seen: (string | false | undefined)[] = [];
    const l = await new TlsCarrier({ cert: testCert().cert, key: testCert().key }).listen({ host: '127.0.0.1', port: 0 }, (c) => {
      seen.push(c.meta.sni);
      c.stream.destroy();
    });
    t.after(() => l.close());
    // As dial-link does for a link: servername = link.sni ?? link.host.
    const conn = await new TlsCarrier({ pinSha256: testCert().fingerprintSha256, servername: '127.0.0.1' }).dial(l.address);
    await eventually(async () => assert.equal(seen.length, 1, 'the handshake reached the server'));
    conn.stream.destroy();
    const v6 = await new TlsCarrier({ pinSha256: testCert().fingerprintSha256, servername: '::1' }).dial(l.address);
    await eventually(async () => assert.equal(seen.length, 2, 'the handshake reached the server'));
    v6.stream.destroy();
    assert.deepEqual(warnings.filter((w) => w.name === 'DeprecationWarning').map((w) => w.message), []);
    assert.deepEqual(seen, [undefined, undefined], 'no SNI sent');
  });
});
