import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { describe, it } from 'node:test';
import { TimeoutError } from '../../../src/core/errors.js';
import { MemoryMetrics } from '../../../src/core/metrics.js';
import type { PacketStats } from '../../../src/carriers/packet-base.js';
import type { PacketConn } from '../../../src/carriers/types.js';
import { UdpPacketCarrier } from '../../../src/carriers/udp.js';
import { delay, within } from '../../helpers/byte-streams.js';
import { packetCarrierCompliance } from './packet-compliance.js';

packetCarrierCompliance('udp', async () => {
  const carrier = new UdpPacketCarrier();
  return { server: carrier, client: carrier, listenAt: { host: '127.0.0.1', port: 0 }, maxPacketSize: 1452 };
});

packetCarrierCompliance('udp (IPv6, maxPacketSize 1200)', async () => {
  const carrier = new UdpPacketCarrier({ maxPacketSize: 1200 });
  return { server: carrier, client: carrier, listenAt: { host: '::1', port: 0 }, maxPacketSize: 1200 };
});

const stats = (c: PacketConn): PacketStats => (c as PacketConn & { stats: PacketStats }).stats;

describe('UdpPacketCarrier', () => {
  it('an idle association ends with TimeoutError; the next packet starts a new one', async (t) => {
    const carrier = new UdpPacketCarrier({ idleTimeoutMs: 100 });
    const conns: PacketConn[] = [];
    const closes: (Error | undefined)[] = [];
    const l = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => {
      conns.push(c);
      c.onPackets(() => undefined);
      c.onClose((err) => closes.push(err));
    });
    t.after(() => {
      for (const c of conns) c.close();
      return l.close();
    });
    const client = await carrier.dial(l.address);
    t.after(() => client.close());
    client.send([Buffer.from('hi')]);
    await within(
      (async () => {
        while (closes.length === 0) await delay(10);
      })(),
      20_000,
      'idle association closed',
    );
    assert.ok(closes[0] instanceof TimeoutError);
    client.send([Buffer.from('again')]);
    await within(
      (async () => {
        while (conns.length < 2) await delay(5);
      })(),
      20_000,
      'new association',
    );
    assert.equal(conns[0]?.remote, conns[1]?.remote);
  });

  it('datagrams over maxPacketSize are dropped on receive and counted', async (t) => {
    const carrier = new UdpPacketCarrier({ maxPacketSize: 100 });
    const got: Buffer[] = [];
    let server: PacketConn | undefined;
    const l = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => {
      server = c;
      c.onPackets((batch) => got.push(...batch));
    });
    t.after(() => l.close());
    // a raw socket, so the sender's own limit does not stop the big one
    const raw = dgram.createSocket('udp4');
    t.after(() => raw.close());
    raw.send(Buffer.alloc(101), l.address.port, '127.0.0.1');
    raw.send(Buffer.from('small'), l.address.port, '127.0.0.1');
    await within(
      (async () => {
        while (got.length === 0) await delay(5);
      })(),
      20_000,
      'small datagram',
    );
    assert.deepEqual(got.map(String), ['small']);
    assert.ok(server);
    assert.equal(stats(server).droppedRecv, 1);
    server.close();
  });

  it('metrics: packets and drops of dialed and accepted conns summed, closed ones kept', async (t) => {
    const metrics = new MemoryMetrics();
    const carrier = new UdpPacketCarrier({ maxPacketSize: 100, metrics });
    const got: Buffer[] = [];
    const accepted: PacketConn[] = [];
    const l = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => {
      accepted.push(c);
      c.onPackets((batch) => got.push(...batch));
    });
    t.after(() => {
      for (const c of accepted) c.close();
      return l.close();
    });
    const client = await carrier.dial(l.address);
    assert.equal(metrics.value('polytun_carrier_packet_conns'), 1);
    client.send([Buffer.from('a'), Buffer.from('b')]);
    const raw = dgram.createSocket('udp4'); // a stranger to the client, a new association to the listener
    t.after(() => raw.close());
    raw.send(Buffer.alloc(101), l.address.port, '127.0.0.1');
    await within(
      (async () => {
        while (got.length < 2 || metrics.value('polytun_carrier_packets_dropped_total', 'receive') !== 1) await delay(5);
      })(),
      20_000,
      'two datagrams and a drop',
    );
    assert.equal(metrics.value('polytun_carrier_packet_conns'), 3, 'the dialed conn and two associations');
    const read = () => [metrics.value('polytun_carrier_packets_total', 'sent'), metrics.value('polytun_carrier_packets_total', 'received')];
    assert.deepEqual(read(), [2, 2]);
    client.close();
    accepted[0]?.close();
    assert.deepEqual(read(), [2, 2], 'closed conns still count');
    assert.equal(metrics.value('polytun_carrier_packet_conns'), 1, "the stranger's association is still open");
  });

  it('a dialled socket ignores datagrams from strangers (connected socket)', async (t) => {
    const carrier = new UdpPacketCarrier();
    const served: PacketConn[] = [];
    const l = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => {
      served.push(c);
      c.onPackets((b) => c.send(b));
    });
    // the listener's socket lives until its last association ends
    t.after(() => {
      for (const c of served) c.close();
      return l.close();
    });
    const conn = await carrier.dial(l.address);
    t.after(() => conn.close());
    const got: string[] = [];
    conn.onPackets((b) => got.push(...b.map(String)));
    const [host, port] = [conn.local.slice(0, conn.local.lastIndexOf(':')), Number(conn.local.slice(conn.local.lastIndexOf(':') + 1))];
    const stranger = dgram.createSocket('udp4');
    t.after(() => stranger.close());
    stranger.send(Buffer.from('stranger'), port, host);
    conn.send([Buffer.from('echo')]);
    await within(
      (async () => {
        while (got.length === 0) await delay(5);
      })(),
      20_000,
      'echo',
    );
    await delay(20);
    assert.deepEqual(got, ['echo']);
  });

  it('ICMP port unreachable does not end a dialled conn', async (t) => {
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
    const port = probe.address().port;
    probe.close(); // nobody listens there now
    const conn = await new UdpPacketCarrier().dial({ host: '127.0.0.1', port });
    t.after(() => conn.close());
    let closedWith: unknown = 'open';
    conn.onClose((err) => (closedWith = err));
    for (let i = 0; i < 3; i++) {
      conn.send([Buffer.from('ping')]);
      await delay(10);
    }
    assert.equal(closedWith, 'open');
    assert.equal(stats(conn).sent, 3);
  });

  it('binds a dial to localAddress', async (t) => {
    const carrier = new UdpPacketCarrier();
    const remotes: string[] = [];
    const served: PacketConn[] = [];
    const l = await carrier.listen({ host: '127.0.0.1', port: 0 }, (c) => {
      served.push(c);
      remotes.push(c.remote);
    });
    t.after(() => {
      for (const c of served) c.close();
      return l.close();
    });
    const conn = await new UdpPacketCarrier({ localAddress: '127.0.0.2' }).dial(l.address);
    t.after(() => conn.close());
    assert.match(conn.local, /^127\.0\.0\.2:/);
    conn.send([Buffer.from('x')]);
    await within(
      (async () => {
        while (remotes.length === 0) await delay(5);
      })(),
      20_000,
      'packet from 127.0.0.2',
    );
    assert.match(remotes[0] ?? '', /^127\.0\.0\.2:/);
  });
});
