import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tapLanes, type LaneSlots } from '../../../src/tun/lane-tap.js';

/** A stand-in for a Session's two handler slots. */
class Slots implements LaneSlots<{ kind: number }> {
  datagram: ((flow: number, payload: Buffer) => void) | undefined;
  stream: ((s: { kind: number }) => void) | undefined;
  onDatagram(h: (flow: number, payload: Buffer) => void): void {
    this.datagram = h;
  }
  onStream(h: (s: { kind: number }) => void): void {
    this.stream = h;
  }
}

describe('tapLanes', () => {
  it('takes its flow and its streams; everything else reaches the handler set later', () => {
    const host = new Slots();
    const mine: string[] = [];
    const refused: number[] = [];
    tapLanes(host, {
      flow: 7,
      datagram: (p) => mine.push(`dg ${p.toString()}`),
      claims: (s) => s.kind === 0x10,
      stream: (s) => mine.push(`stream ${s.kind}`),
      refuse: (s) => refused.push(s.kind),
    });
    const realDatagram = host.datagram;
    const realStream = host.stream;
    assert.ok(realDatagram && realStream);
    // before anyone else registers: other flows are dropped, other streams refused
    realDatagram(1, Buffer.from('early'));
    realStream({ kind: 1 });
    assert.deepEqual(refused, [1]);
    const others: string[] = [];
    host.onDatagram((flow, p) => others.push(`dg ${flow} ${p.toString()}`));
    host.onStream((s) => others.push(`stream ${s.kind}`));
    assert.equal(host.datagram, realDatagram, 'the slot keeps the tap');
    realDatagram(7, Buffer.from('ip'));
    realDatagram(1, Buffer.from('udp'));
    realStream({ kind: 0x10 });
    realStream({ kind: 0x01 });
    assert.deepEqual(mine, ['dg ip', 'stream 16']);
    assert.deepEqual(others, ['dg 1 udp', 'stream 1']);
  });

  it('a second flow (flow2) is taken too, and the handler is told which one', () => {
    const host = new Slots();
    const mine: string[] = [];
    tapLanes(host, { flow: 7, flow2: 8, datagram: (p, flow) => mine.push(`${flow} ${p.toString()}`) });
    const others: number[] = [];
    host.onDatagram((flow) => others.push(flow));
    host.datagram?.(7, Buffer.from('plain'));
    host.datagram?.(8, Buffer.from('offloaded'));
    host.datagram?.(9, Buffer.from('other'));
    assert.deepEqual(mine, ['7 plain', '8 offloaded']);
    assert.deepEqual(others, [9]);
  });

  it('a second tap on the same host is refused; a datagram-only tap leaves streams alone', () => {
    const host = new Slots();
    assert.equal(tapLanes(host, { flow: 1, datagram: () => undefined }), true);
    assert.equal(tapLanes(host, { flow: 2, datagram: () => undefined }), false);
    assert.equal(host.stream, undefined);
    const h = (): void => undefined;
    host.onStream(h);
    assert.equal(host.stream, h);
  });
});
