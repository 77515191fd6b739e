import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../../src/core/errors.js';
import {
  MSG_CONFIG, OPEN_OFFLOAD, OPEN_VPN, STREAM_RECORD_OVERHEAD, VPN_FLOW, VPN_GSO_FLOW, VpnMessageDecoder, vpnMtuFor, decodeVpnOpen, encodeConfig, encodeRefuse, encodeVpnOpen, isVpnOpen,
  type VpnConfig, type VpnMessage,
} from '../../../src/tun/vpn-wire.js';

const dual: VpnConfig = {
  addr4: { ip: '10.8.0.2', prefix: 24 },
  addr6: { ip: 'fd00:8::2', prefix: 64 },
  gw4: '10.8.0.1',
  gw6: 'fd00:8::1',
  mtu: 1400,
  routes: ['10.20.0.0/16', 'fd00:20::/48'],
  dns: ['10.20.0.53', 'fd00:20::53'],
};

function mtuBelowMinimum(): Buffer {
  const b = encodeConfig({ addr4: { ip: '10.8.0.2', prefix: 24 }, gw4: '10.8.0.1', mtu: 1400, routes: [], dns: [] });
  b.writeUInt16BE(500, b.length - 2); // the MTU item is last
  return b;
}

function decodeAll(bytes: Buffer, cuts: number[] = []): VpnMessage[] {
  const d = new VpnMessageDecoder();
  const out: VpnMessage[] = [];
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
    out.push(...d.push(bytes.subarray(at, c)));
    at = c;
  }
  assert.equal(d.buffered, 0);
  return out;
}

describe('VPN wire: open payload and constants', () => {
  it('OPEN payload is | 0x10 | version | flags |', () => {
    assert.deepEqual(encodeVpnOpen(), Buffer.from([0x10, 1, 0]));
    assert.equal(OPEN_VPN, 0x10);
    assert.equal(isVpnOpen(encodeVpnOpen()), true);
    assert.equal(isVpnOpen(Buffer.from([0x01, 4, 1, 2, 3, 4, 0, 80])), false); // a proxy CONNECT
    assert.equal(isVpnOpen(Buffer.alloc(0)), false);
    assert.deepEqual(decodeVpnOpen(encodeVpnOpen(7)), { version: 7, flags: 0, routes: [] });
    assert.throws(() => decodeVpnOpen(Buffer.from([0x10, 1])), ProtocolError);
  });

  it("OPEN carries the client's routes as ROUTE4 / ROUTE6 items after the flags; unknown items are skipped", () => {
    const open = encodeVpnOpen(1, OPEN_OFFLOAD, ['10.99.0.0/24', 'fd00:99::/64']);
    assert.deepEqual(open.subarray(0, 10), Buffer.from([0x10, 1, 1, 0x06, 5, 10, 99, 0, 0, 24]));
    assert.deepEqual(decodeVpnOpen(open), { version: 1, flags: OPEN_OFFLOAD, routes: ['10.99.0.0/24', 'fd00:99::/64'] });
    assert.deepEqual(decodeVpnOpen(Buffer.concat([open, Buffer.from([0x7f, 2, 0, 0])])).routes, ['10.99.0.0/24', 'fd00:99::/64']);
    assert.throws(() => decodeVpnOpen(Buffer.from([0x10, 1, 0, 0x06, 5, 10, 0])), ProtocolError, 'truncated');
    assert.throws(() => decodeVpnOpen(Buffer.from([0x10, 1, 0, 0x06, 5, 10, 0, 0, 0, 33])), ProtocolError, 'prefix too long');
  });

  it('offload: OPEN flag 0x01, the OFFLOAD config item (tag 0x0A), its own datagram flow', () => {
    assert.deepEqual(encodeVpnOpen(1, OPEN_OFFLOAD), Buffer.from([0x10, 1, 0x01]));
    assert.deepEqual(decodeVpnOpen(encodeVpnOpen(1, OPEN_OFFLOAD)), { version: 1, flags: OPEN_OFFLOAD, routes: [] });
    assert.equal(VPN_GSO_FLOW, 0xffff0001);
    const base: VpnConfig = { addr4: { ip: '10.8.0.2', prefix: 24 }, gw4: '10.8.0.1', mtu: 1400, routes: [], dns: [] };
    const plain = encodeConfig(base);
    const withOffload = encodeConfig({ ...base, offload: true });
    // Appended as the last item: | 0x0A | 1 | 0x01 |, and nothing else changes.
    assert.deepEqual(withOffload.subarray(plain.length), Buffer.from([0x0a, 1, 0x01]));
    assert.deepEqual(withOffload.subarray(3, plain.length), plain.subarray(3));
    assert.deepEqual(decodeAll(withOffload), [{ type: 'config', config: { ...base, offload: true } }]);
    assert.deepEqual(decodeAll(plain), [{ type: 'config', config: base }], 'no item: the server takes no offloaded packets');
  });

  it('the datagram flow, the per-record overhead and the MTU per carrier kind are what the docs say', () => {
    assert.equal(VPN_FLOW, 0xffff0000);
    assert.equal(STREAM_RECORD_OVERHEAD, 26);
    assert.equal(vpnMtuFor('stream'), 1400);
    assert.equal(vpnMtuFor('stream', 576), 1400, 'a TCP carrier is segmented by the kernel');
    assert.equal(vpnMtuFor('packet', 1500, 30), 1500 - 48 - 26 - 30);
    assert.equal(vpnMtuFor('packet', 9000), 1400);
  });
});

describe('VPN wire: messages', () => {
  it('CONFIG with IPv4 only, exact bytes', () => {
    const c: VpnConfig = { addr4: { ip: '10.8.0.2', prefix: 24 }, gw4: '10.8.0.1', mtu: 1400, routes: [], dns: [] };
    const bytes = encodeConfig(c);
    assert.equal(bytes.toString('hex'), ['01', '0011', '0105', '0a080002', '18', '0304', '0a080001', '0502', '0578'].join(''));
    assert.deepEqual(decodeAll(bytes), [{ type: 'config', config: c }]);
  });

  it('CONFIG dual stack with routes and DNS round-trips through any chunking', () => {
    const bytes = Buffer.concat([encodeConfig(dual), encodeRefuse(2, 'pool exhausted')]);
    fc.assert(
      fc.property(fc.array(fc.nat(bytes.length), { maxLength: 8 }), (cuts) => {
        assert.deepEqual(decodeAll(bytes, cuts), [
          { type: 'config', config: dual },
          { type: 'refuse', code: 2, reason: 'pool exhausted' },
        ]);
      }),
    );
  });

  it('skips unknown CONFIG items (a newer server may add some)', () => {
    const base = encodeConfig({ ...dual, routes: [], dns: [] });
    const extra = Buffer.from([0x7f, 3, 1, 2, 3]);
    const body = Buffer.concat([base.subarray(3), extra]);
    const msg = Buffer.concat([Buffer.from([MSG_CONFIG, body.length >> 8, body.length & 0xff]), body]);
    assert.deepEqual(decodeAll(msg), [{ type: 'config', config: { ...dual, routes: [], dns: [] } }]);
  });

  const bad: [string, Buffer][] = [
    ['unknown message type', Buffer.from([0x09, 0, 0])],
    ['body over 4096 bytes', Buffer.from([MSG_CONFIG, 0x10, 0x01])],
    ['truncated item', Buffer.from([MSG_CONFIG, 0, 3, 0x01, 5, 10])],
    ['item with the wrong length', Buffer.from([MSG_CONFIG, 0, 5, 0x05, 3, 1, 2, 3])],
    ['missing address/gateway/MTU', Buffer.from([MSG_CONFIG, 0, 4, 0x05, 2, 0x05, 0x78])],
    ['prefix too long', Buffer.from([MSG_CONFIG, 0, 7, 0x01, 5, 10, 8, 0, 2, 33])],
    ['MTU below 576', mtuBelowMinimum()],
    ['empty REFUSE', Buffer.from([0x02, 0, 0])],
  ];
  for (const [name, bytes] of bad) {
    it(`refuses: ${name}`, () => assert.throws(() => new VpnMessageDecoder().push(bytes), ProtocolError));
  }

  it('encodeConfig refuses addresses of the wrong family', () => {
    assert.throws(() => encodeConfig({ ...dual, gw4: 'fd00::1' }), ProtocolError);
  });

  it('fuzz: arbitrary bytes either decode or throw ProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.constantFrom(0x01, 0x02, 0x33), (arr, type) => {
        const b = Buffer.from(arr);
        if (b.length >= 3) {
          b[0] = type;
          b.writeUInt16BE(Math.min(b.length - 3, 0xffff), 1);
        }
        try {
          new VpnMessageDecoder().push(b);
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
        }
      }),
      { numRuns: 3000 },
    );
  });
});
