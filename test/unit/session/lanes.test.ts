/**
 * Lanes: several applications on one session, each taking its open kinds
 * and flow ranges (src/session/lanes.ts); a stream nobody takes is reset
 * with ResetCode.noHandler.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { ConfigError, type StreamResetError } from '../../../src/core/errors.js';
import { LaneRegistry } from '../../../src/session/lanes.js';
import { Session } from '../../../src/session/session.js';
import { ResetCode, type PolyStream } from '../../../src/session/stream.js';
import { fakeChannelPair } from '../../helpers/fake-channel.js';

function pair(): { client: Session; server: Session } {
  const id = Buffer.alloc(16, 3);
  const client = new Session({ role: 'client', id });
  const server = new Session({ role: 'server', id });
  const { a, b } = fakeChannelPair();
  server.attach(b.asChannel(), 0);
  client.attach(a.asChannel(), 0);
  return { client, server };
}

async function resetCode(s: PolyStream): Promise<number> {
  const [err] = (await once(s, 'error')) as [StreamResetError];
  return err.resetCode;
}

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

describe('lanes', () => {
  it('two applications share one session: each gets its own open kinds and flow range, whatever the order they registered in', async () => {
    const { client, server } = pair();
    const got: string[] = [];
    // "proxy": kinds 1-3, flows 1..0xfffeffff; "vpn": kind 0x10, flows 0xffff0000-1.
    server.lanes.streams([0x10], (s) => got.push(`vpn stream ${s.openPayload.toString('hex')}`));
    server.lanes.datagrams(0xffff0000, 0xffff0001, (flow, p) => got.push(`vpn dg ${flow.toString(16)} ${p.toString()}`));
    server.lanes.streams([0x01, 0x02, 0x03], (s) => got.push(`proxy stream ${s.openPayload.toString('hex')}`));
    server.lanes.datagrams(1, 0xfffeffff, (flow, p) => got.push(`proxy dg ${flow} ${p.toString()}`));
    client.openStream(Buffer.from([0x10, 1]));
    client.openStream(Buffer.from([0x01, 9]));
    client.openStream(Buffer.from([0x03]));
    client.sendDatagram(0xffff0001, Buffer.from('pkt'));
    client.sendDatagram(7, Buffer.from('udp'));
    client.sendDatagram(0, Buffer.from('nobody')); // no lane and no catch-all: dropped
    await until(() => got.length === 5);
    assert.deepEqual(got.sort(), ['proxy dg 7 udp', 'proxy stream 0109', 'proxy stream 03', 'vpn dg ffff0001 pkt', 'vpn stream 1001']);
    client.close();
    server.close();
  });

  it('resets a stream of an open kind nobody registered with ResetCode.noHandler, and the session goes on', async () => {
    const { client, server } = pair();
    const taken: PolyStream[] = [];
    server.lanes.streams([0x01], (s) => taken.push(s));
    const stray = client.openStream(Buffer.from([0x42, 0]));
    const empty = client.openStream(); // no kind at all
    assert.deepEqual(await Promise.all([resetCode(stray), resetCode(empty)]), [ResetCode.noHandler, ResetCode.noHandler]);
    client.openStream(Buffer.from([0x01]));
    await until(() => taken.length === 1);
    assert.equal(server.state, 'open');
    client.close();
    server.close();
  });

  it('onStream/onDatagram are the catch-all for what no lane claims; a session with no handler at all refuses', async () => {
    const { client, server } = pair();
    const refused = client.openStream(Buffer.from([0x01]));
    assert.equal(await resetCode(refused), ResetCode.refused, 'nothing takes streams: refused, as before lanes');
    const got: string[] = [];
    server.lanes.streams([0x10], () => got.push('vpn'));
    server.onStream((s) => got.push(`any ${s.openPayload.length}`));
    server.onDatagram((flow) => got.push(`any dg ${flow}`));
    server.lanes.datagrams(100, 200, (flow) => got.push(`lane dg ${flow}`));
    client.openStream(Buffer.from([0x10]));
    client.openStream();
    client.sendDatagram(150, Buffer.from('x'));
    client.sendDatagram(5, Buffer.from('x'));
    await until(() => got.length === 4);
    assert.deepEqual(got.sort(), ['any 0', 'any dg 5', 'lane dg 150', 'vpn']);
    client.close();
    server.close();
  });
});

describe('LaneRegistry', () => {
  it('refuses overlapping registrations, and a closed lane is free again', () => {
    const r = new LaneRegistry();
    const vpn = r.streams([0x10], () => undefined);
    assert.throws(() => r.streams([0x01, 0x10], () => undefined), ConfigError);
    assert.throws(() => r.streams([256], () => undefined), ConfigError);
    const flows = r.datagrams(10, 20, () => undefined);
    assert.throws(() => r.datagrams(20, 30, () => undefined), ConfigError);
    assert.throws(() => r.datagrams(5, 4, () => undefined), ConfigError);
    r.datagrams(21, 30, () => undefined);
    vpn.close();
    flows.close();
    r.streams([0x10], () => undefined);
    r.datagrams(0, 20, () => undefined);
    assert.equal(r.deliverDatagram(31, Buffer.alloc(0)), false);
  });
});
