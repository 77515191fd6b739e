import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../../src/core/errors.js';
import { makeDestination } from '../../../src/core/address.js';
import { decodeAddresses, decodeOpen, decodeUdp, encodeAddresses, encodeBindReply, encodeOpen, encodeUdp, MAX_OBSERVED_ADDRESSES, MAX_SPEED_TEST_BYTES } from '../../../src/proxy/wire.js';

describe('proxy wire', () => {
  it('encodes CONNECT to a fixed layout', () => {
    assert.equal(encodeOpen({ kind: 'connect', dest: makeDestination('127.0.0.1', 8080) }).toString('hex'), '01017f0000011f90');
    assert.equal(encodeOpen({ kind: 'connect', dest: makeDestination('example.com', 443) }).toString('hex'), '01030b6578616d706c652e636f6d01bb');
    assert.equal(encodeOpen({ kind: 'accepted', bindId: 7, peer: makeDestination('::1', 22) }).toString('hex'), '0300000007' + '04' + '00000000000000000000000000000001' + '0016');
    assert.equal(encodeOpen({ kind: 'speed', direction: 'down', bytes: 0x01000000 }).toString('hex'), '040101000000');
    assert.equal(encodeOpen({ kind: 'speed', direction: 'up', bytes: 5 }).toString('hex'), '040200000005');
    assert.equal(encodeBindReply(5, makeDestination('0.0.0.0', 9000)).toString('hex'), '00' + '00000005' + '01' + '00000000' + '2328');
  });

  it('round-trips open requests and udp payloads', () => {
    for (const req of [
      { kind: 'connect', dest: makeDestination('example.com', 80) },
      { kind: 'bind', dest: makeDestination('0.0.0.0', 2222) },
      { kind: 'accepted', bindId: 0xfffffffe, peer: makeDestination('2001:db8::5', 65535) },
      { kind: 'speed', direction: 'up', bytes: MAX_SPEED_TEST_BYTES },
      { kind: 'speed', direction: 'down', bytes: 1 },
      { kind: 'address' },
    ] as const) {
      assert.deepEqual(decodeOpen(encodeOpen(req)), req);
    }
    const u = decodeUdp(encodeUdp(makeDestination('10.1.2.3', 53), Buffer.from('dns')));
    assert.equal(u.addr.host, '10.1.2.3');
    assert.equal(u.data.toString(), 'dns');
  });

  it('rejects malformed open payloads with ProtocolError only', () => {
    assert.throws(() => decodeOpen(Buffer.alloc(0)), ProtocolError);
    assert.throws(() => decodeOpen(Buffer.from('09', 'hex')), ProtocolError);
    assert.throws(() => decodeOpen(Buffer.from('01017f000001', 'hex')), ProtocolError); // no port
    assert.throws(() => decodeOpen(Buffer.from('01017f0000011f9000', 'hex')), ProtocolError); // trailing
    assert.throws(() => decodeOpen(Buffer.from('0501', 'hex')), /1 expected/); // ADDRESS takes nothing
    assert.throws(() => decodeOpen(Buffer.from('0401000000', 'hex')), /6 expected/); // short speed test
    assert.throws(() => decodeOpen(Buffer.from('040300000010', 'hex')), /direction 3/);
    assert.throws(() => decodeOpen(Buffer.from('040100000000', 'hex')), /speed test of 0 bytes/);
    assert.throws(() => decodeOpen(Buffer.from('040104000001', 'hex')), /speed test of 67108865 bytes/); // over the maximum
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeOpen(Buffer.from(bytes));
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('ADDRESS answers: a count and that many addresses, round-trip; malformed ones are ProtocolError only', () => {
    const list = [makeDestination('203.0.113.7', 61234), makeDestination('2001:db8::1', 443)];
    const enc = encodeAddresses(list);
    assert.equal(enc.toString('hex'), '02' + '01cb007107ef32' + '0420010db8000000000000000000000001' + '01bb');
    assert.deepEqual(decodeAddresses(enc), list);
    assert.deepEqual(decodeAddresses(encodeAddresses([])), []);
    assert.equal(decodeAddresses(encodeAddresses(Array.from({ length: 40 }, (_, i) => makeDestination('10.0.0.1', i + 1)))).length, MAX_OBSERVED_ADDRESSES, 'at most 32 are sent');
    assert.throws(() => decodeAddresses(Buffer.alloc(0)), ProtocolError);
    assert.throws(() => decodeAddresses(Buffer.from('21', 'hex')), /at most 32/);
    assert.throws(() => decodeAddresses(Buffer.concat([enc, Buffer.from([0])])), /trailing/);
    assert.throws(() => decodeAddresses(enc.subarray(0, enc.length - 1)), ProtocolError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeAddresses(Buffer.from(bytes));
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
