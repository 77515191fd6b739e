import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { TlsCarrier, tlsBindingOf } from '../../../src/carriers/tls.js';
import { WsCarrier } from '../../../src/carriers/ws.js';
import type { Endpoint } from '../../../src/carriers/types.js';
import { ChunkList } from '../../../src/core/chunks.js';
import { AuthError } from '../../../src/core/errors.js';
import { decodeClientHello, encodeClientHello, type ClientHello } from '../../../src/secure/hello.js';
import { RecordOpener, RecordSealer, RECORD_DATA } from '../../../src/secure/record.js';
import type { Session } from '../../../src/session/session.js';
import { otherCert, testCert } from '../../helpers/certs.js';
import { sha256 } from '../../helpers/byte-streams.js';
import { echoStreams, makePair, readAll, type Pair, type PairInit } from '../../helpers/session-pair.js';

const pairs: Pair[] = [];
const closers: (() => void)[] = [];
after(async () => {
  for (const p of pairs) await p.close();
  for (const c of closers) c();
});

const tlsPair = (): NonNullable<PairInit['carriers']> => ({
  server: new TlsCarrier({ cert: testCert().cert, key: testCert().key }),
  client: new TlsCarrier({ pinSha256: testCert().fingerprintSha256 }),
});

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => undefined;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const protection = (s: Session): string | undefined => s.stats.paths[0]?.protection;

/** Echoes 1 MiB through the pair and returns both sides' record protection. */
async function run(init: PairInit): Promise<[string | undefined, string | undefined]> {
  const p = await makePair(init);
  pairs.push(p);
  const server = await p.serverSession;
  echoStreams(server);
  const data = randomBytes(1 << 20);
  const s = p.clientSession.openStream();
  const back = readAll(s);
  s.end(data);
  assert.equal(sha256(await back), sha256(data));
  return [protection(p.clientSession), protection(server)];
}

/** A TLS-terminating front (its own certificate) that opens a new TLS connection to `to` per client. */
async function tlsFront(to: Endpoint): Promise<Endpoint> {
  const front = tls.createServer({ cert: otherCert().cert, key: otherCert().key }, (c) => {
    const up = tls.connect({ host: to.host, port: to.port, rejectUnauthorized: false });
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  closers.push(() => front.close());
  return { host: '127.0.0.1', port: (front.address() as net.AddressInfo).port };
}

describe('TLS-bound records', () => {
  it('over tls and wss straight to the server, both sides agree on tls-bound records', async () => {
    assert.deepEqual(await run({ carriers: tlsPair() }), ['tls-bound', 'tls-bound']);
    assert.deepEqual(
      await run({
        carriers: {
          server: new WsCarrier({ tls: true, path: '/b', cert: testCert().cert, key: testCert().key }),
          client: new WsCarrier({ tls: true, path: '/b', pinSha256: testCert().fingerprintSha256 }),
        },
      }),
      ['tls-bound', 'tls-bound'],
    );
  });

  it('tcp and plain ws keep their AEAD', async () => {
    assert.deepEqual(await run({}), ['aead', 'aead']);
    assert.deepEqual(await run({ carriers: { server: new WsCarrier({ tls: false, path: '/b' }), client: new WsCarrier({ tls: false, path: '/b' }) } }), ['aead', 'aead']);
  });

  it('behind a TLS-terminating front the exporters differ: records keep their AEAD', async () => {
    const carriers = { server: tlsPair().server, client: new TlsCarrier({ pinSha256: otherCert().fingerprintSha256 }) };
    assert.deepEqual(await run({ carriers, via: tlsFront }), ['aead', 'aead']);
  });

  it('tlsBound: false on either side keeps the AEAD', async () => {
    assert.deepEqual(await run({ carriers: tlsPair(), client: { tlsBound: false } }), ['aead', 'aead']);
    assert.deepEqual(await run({ carriers: tlsPair(), server: { tlsBound: false } }), ['aead', 'aead']);
  });

  it('a side that disagrees about the mode fails at the first record (zero-tag check), not with garbage', () => {
    const key = randomBytes(32);
    const pt = Buffer.concat([Buffer.from([RECORD_DATA]), Buffer.from('hello')]);
    for (const [sealBound, openBound] of [
      [false, true],
      [true, false],
    ] as const) {
      const rec = new RecordSealer(key, sealBound).seal(pt);
      const input = new ChunkList();
      input.push(rec);
      assert.throws(() => new RecordOpener(key, openBound).next(input), AuthError, `sealed ${sealBound ? 'bound' : 'aead'}, opened ${openBound ? 'bound' : 'aead'}`);
    }
    const input = new ChunkList();
    input.push(new RecordSealer(key, true).seal(pt));
    assert.deepEqual(new RecordOpener(key, true).next(input), pt);
  });

  it('tlsBindingOf: equal on both ends of one TLS 1.3 session; none over TLS 1.2 or plain TCP', async () => {
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      const serverSide = deferred<tls.TLSSocket>();
      const srv = tls.createServer({ cert: testCert().cert, key: testCert().key, minVersion: version, maxVersion: version }, (sock) => serverSide.resolve(sock));
      srv.listen(0, '127.0.0.1');
      await once(srv, 'listening');
      closers.push(() => srv.close());
      const cli = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, rejectUnauthorized: false, minVersion: version, maxVersion: version });
      cli.on('error', () => undefined);
      closers.push(() => cli.destroy());
      await once(cli, 'secureConnect');
      const srvSock = await serverSide.promise;
      const a = tlsBindingOf(cli);
      const b = tlsBindingOf(srvSock);
      if (version === 'TLSv1.3') {
        assert.equal(a?.length, 16);
        assert.deepEqual(a, b);
      } else {
        assert.equal(a, undefined);
        assert.equal(b, undefined);
      }
      srvSock.destroy();
    }
    assert.equal(tlsBindingOf(new net.Socket()), undefined);
  });

  it('the client hello carries the binding only when flagged; an old hello reads as none', () => {
    const base: ClientHello = { minVersion: 1, maxVersion: 1, caps: 3, timestampMs: Date.now(), resumeId: undefined, recvSeq: 0, streamWindow: 65536, sessionWindow: 1 << 20, padLen: 0 };
    const b = randomBytes(16);
    assert.deepEqual(decodeClientHello(encodeClientHello({ ...base, tlsBinding: b })).tlsBinding, b);
    const plain = encodeClientHello(base);
    assert.equal(decodeClientHello(plain).tlsBinding, undefined);
    plain.fill(0xaa, 48); // reserved bytes without the flag are ignored
    assert.equal(decodeClientHello(plain).tlsBinding, undefined);
  });
});
