import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../../src/core/errors.js';
import {
  F_DATA, F_FIN, F_OPEN, F_PING, F_PONG, F_RST, parseFrames, writeAck, writeClose, writeDatagram, writeGoaway,
  writePingPong, writeSeqFrame, writeWindow, type FrameVisitor,
} from '../../../src/session/frames.js';

type Ev = unknown[];
function collect(buf: Buffer): Ev[] {
  const out: Ev[] = [];
  const v: FrameVisitor = {
    seq: (t, seq, sid, p, code) => out.push(['seq', t, seq, sid, p?.toString('hex'), code]),
    window: (sid, max) => out.push(['window', sid, max]),
    ack: (seq) => out.push(['ack', seq]),
    ping: (id) => out.push(['ping', id]),
    pong: (id) => out.push(['pong', id]),
    datagram: (flow, p) => out.push(['dgram', flow, p.toString('hex')]),
    goaway: (code) => out.push(['goaway', code]),
    close: (code, reason) => out.push(['close', code, reason]),
  };
  parseFrames(buf, 0, v);
  return out;
}

function enc(fn: (b: Buffer) => number): Buffer {
  const b = Buffer.alloc(1024);
  return b.subarray(0, fn(b));
}

describe('frame codec', () => {
  it('encodes every frame type to its documented layout', () => {
    assert.equal(enc((b) => writeSeqFrame(b, 0, { type: F_DATA, seq: 1, sid: 3, payload: Buffer.from('hi'), code: 0 })).toString('hex'), '01' + '000000000001' + '00000003' + '0002' + '6869');
    assert.equal(enc((b) => writeSeqFrame(b, 0, { type: F_OPEN, seq: 0x010203040506, sid: 1, payload: Buffer.alloc(0), code: 0 })).toString('hex'), '02' + '010203040506' + '00000001' + '0000');
    assert.equal(enc((b) => writeSeqFrame(b, 0, { type: F_FIN, seq: 9, sid: 2, payload: undefined, code: 0 })).toString('hex'), '03' + '000000000009' + '00000002');
    assert.equal(enc((b) => writeSeqFrame(b, 0, { type: F_RST, seq: 10, sid: 5, payload: undefined, code: 0x1234 })).toString('hex'), '04' + '00000000000a' + '00000005' + '00001234');
    assert.equal(enc((b) => writeWindow(b, 0, 7, 2 ** 40)).toString('hex'), '10' + '00000007' + '010000000000');
    assert.equal(enc((b) => writeAck(b, 0, 300)).toString('hex'), '11' + '00000000012c');
    assert.equal(enc((b) => writePingPong(b, 0, F_PING, 1)).toString('hex'), '12' + '00000001');
    assert.equal(enc((b) => writePingPong(b, 0, F_PONG, 2)).toString('hex'), '13' + '00000002');
    assert.equal(enc((b) => writeDatagram(b, 0, 4, Buffer.from('ab', 'hex'))).toString('hex'), '14' + '00000004' + '0001' + 'ab');
    assert.equal(enc((b) => writeGoaway(b, 0, 3)).toString('hex'), '15' + '00000003');
    assert.equal(enc((b) => writeClose(b, 0, 1, Buffer.from('x'))).toString('hex'), '16' + '00000001' + '01' + '78');
  });

  it('parses a record holding many frames back to the same values', () => {
    const b = Buffer.alloc(512);
    let off = writeAck(b, 0, 5);
    off = writeSeqFrame(b, off, { type: F_DATA, seq: 6, sid: 1, payload: Buffer.from('abc'), code: 0 });
    off = writeWindow(b, off, 0, 1 << 24);
    off = writeDatagram(b, off, 9, Buffer.from('dd', 'hex'));
    off = writeClose(b, off, 2, Buffer.from('bye'));
    off = b.writeUInt8(0x17, off); // PAD of 2 bytes
    off = b.writeUInt16BE(2, off) + 2;
    assert.deepEqual(collect(b.subarray(0, off)), [
      ['ack', 5],
      ['seq', F_DATA, 6, 1, '616263', 0],
      ['window', 0, 1 << 24],
      ['dgram', 9, 'dd'],
      ['close', 2, 'bye'],
    ]);
  });

  it('truncated or unknown frames throw ProtocolError, never anything else', () => {
    assert.throws(() => collect(Buffer.from('01000000000001000000030005', 'hex')), ProtocolError);
    assert.throws(() => collect(Buffer.from('ff', 'hex')), ProtocolError);
    assert.throws(() => collect(Buffer.from('11000000', 'hex')), ProtocolError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          collect(Buffer.from(bytes));
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }),
      { numRuns: 5000 },
    );
  });
});
