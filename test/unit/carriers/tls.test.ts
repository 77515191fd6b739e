import assert from 'node:assert/strict';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { AuthError } from '../../../src/core/errors.js';
import { CertificateError } from '../../../src/carriers/errors.js';
import { TlsCarrier, type TlsCarrierInit } from '../../../src/carriers/tls.js';
import type { Listener, StreamConn } from '../../../src/carriers/types.js';
import { closed, readAll, within } from '../../helpers/byte-streams.js';
import { otherCert, testCert } from '../../helpers/certs.js';
import { deadTcpEndpoint, silentTcpServer, tcpKernelBufferBytes } from '../../helpers/net-fixtures.js';
import { streamCarrierCompliance } from './stream-compliance.js';

const serverInit = (): TlsCarrierInit => ({ cert: testCert().cert, key: testCert().key });

streamCarrierCompliance('tls (pinned)', async () => ({
  server: new TlsCarrier(serverInit()),
  client: new TlsCarrier({ pinSha256: testCert().fingerprintSha256 }),
  listenAt: { host: '127.0.0.1', port: 0 },
  deadEndpoint: () => deadTcpEndpoint(),
  outOfProcessBufferBytes: tcpKernelBufferBytes(),
  stalledEndpoint: () => silentTcpServer(),
}));

/** Starts a TLS listener that echoes and records server-side conns. */
async function echoServer(t: { after(fn: () => Promise<void>): void }, init: TlsCarrierInit): Promise<{ l: Listener; conns: StreamConn[] }> {
  const conns: StreamConn[] = [];
  const l = await new TlsCarrier(init).listen({ host: '127.0.0.1', port: 0 }, (conn) => {
    conns.push(conn);
    conn.stream.on('error', (err: Error) => assert.fail(`server stream error: ${err.message}`));
    conn.stream.pipe(conn.stream);
  });
  t.after(async () => {
    for (const c of conns) c.stream.destroy();
    await l.close();
  });
  return { l, conns };
}

describe('TlsCarrier', () => {
  it('pin match: connects, meta carries fingerprint, ALPN and SNI reach the server', async (t) => {
    const { l, conns } = await echoServer(t, { ...serverInit(), alpn: ['polytun/1'] });
    const client = new TlsCarrier({ pinSha256: testCert().fingerprintSha256, alpn: ['h2', 'polytun/1'], servername: 'front.example' });
    const conn = await client.dial(l.address);
    t.after(() => conn.stream.destroy());
    assert.equal(conn.meta.fingerprint, testCert().fingerprintSha256);
    assert.equal(conn.meta.alpn, 'polytun/1');
    assert.equal(conn.meta.tlsVersion, 'TLSv1.3');
    assert.equal((conn.stream as tls.TLSSocket).getCipher().name, 'TLS_AES_128_GCM_SHA256', 'browser order: AES-128-GCM first');
    conn.stream.end('hi');
    assert.equal((await readAll(conn.stream)).toString(), 'hi');
    assert.equal(conns[0]?.meta.sni, 'front.example');
    assert.equal(conns[0]?.meta.alpn, 'polytun/1');
  });

  it('accepts any of several pins (rotation)', async (t) => {
    const { l } = await echoServer(t, serverInit());
    const conn = await new TlsCarrier({ pinSha256: [otherCert().fingerprintSha256, testCert().fingerprintSha256] }).dial(l.address);
    conn.stream.destroy();
  });

  it('pin mismatch: CertificateError "certificate fingerprint mismatch", and the server never gets a conn', async (t) => {
    const { l, conns } = await echoServer(t, serverInit());
    const err = await new TlsCarrier({ pinSha256: otherCert().fingerprintSha256 }).dial(l.address).catch((e: unknown) => e);
    assert.ok(err instanceof CertificateError, `got ${String(err)}`);
    assert.ok(err instanceof AuthError);
    assert.equal(err.reason, 'pin-mismatch');
    assert.match(err.message, /certificate fingerprint mismatch/);
    // The TLS handshake completed server-side, so a conn may exist: it must be closed by the client.
    await within(Promise.all(conns.map((c) => closed(c.stream))), 20_000, 'rejected conn closed');
  });

  it('rejects a malformed pin at construction', () => {
    assert.throws(() => new TlsCarrier({ pinSha256: 'abc' }), /pinSha256/);
  });

  it('CA mode: verifies against `ca` and the name; fails typed without the CA or with the wrong name', async (t) => {
    const { l } = await echoServer(t, serverInit());
    const ok = await new TlsCarrier({ ca: testCert().cert, servername: 'localhost' }).dial(l.address);
    assert.equal(ok.meta.fingerprint, testCert().fingerprintSha256);
    ok.stream.destroy();
    const byIp = await new TlsCarrier({ ca: testCert().cert }).dial(l.address); // IP SAN 127.0.0.1
    byIp.stream.destroy();
    const noCa = await new TlsCarrier({ servername: 'localhost' }).dial(l.address).catch((e: unknown) => e);
    assert.ok(noCa instanceof CertificateError, `got ${String(noCa)}`);
    assert.match(noCa.reason, /SELF_SIGNED/);
    const wrongName = await new TlsCarrier({ ca: testCert().cert, servername: 'elsewhere.example' }).dial(l.address).catch((e: unknown) => e);
    assert.ok(wrongName instanceof CertificateError, `got ${String(wrongName)}`);
    assert.equal(wrongName.reason, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('refuses TLS 1.2 by default', async (t) => {
    const { l } = await echoServer(t, serverInit());
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: l.address.port, maxVersion: 'TLSv1.2', rejectUnauthorized: false });
      s.on('secureConnect', () => reject(new Error('TLS 1.2 handshake succeeded')));
      s.on('error', (err: NodeJS.ErrnoException) => {
        s.destroy();
        assert.match(String(err.code), /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|ALERT/);
        resolve();
      });
    });
  });

  it('a listener without cert/key is a ConfigError', async () => {
    await assert.rejects(new TlsCarrier({}).listen({ host: '127.0.0.1', port: 0 }, () => undefined), { code: 'ERR_CONFIG' });
  });

  it('a dial timeout during the handshake closes the TCP connection', async (t) => {
    const silent = await silentTcpServer();
    t.after(() => silent.close());
    await assert.rejects(new TlsCarrier({ pinSha256: testCert().fingerprintSha256 }).dial(silent.at, { timeoutMs: 150 }), { code: 'ERR_TIMEOUT' });
    const sock = silent.sockets[0];
    assert.ok(sock, 'the TCP connection was made');
    await within(closed(sock), 20_000, 'server side of the timed-out dial closed');
  });
});
