/**
 * Lab test (root only): a real TUN device inside a network namespace this
 * test creates (and, for offload, a pair of them in two namespaces). The device is opened here, moved into the namespace (the fd
 * keeps working) and configured there, so nothing touches the host's own
 * network; the namespace is deleted in after(), also on failure.
 *
 *   test process (root ns)            namespace NS
 *   ┌──────────────────┐  fd   ┌───────────────────────────────────┐
 *   │ TunDevice        │◄─────►│ ptXXXX  LOCAL/30  (PEER is routed │
 *   │ onPackets/write  │       │ into it)  + child node UDP socket │
 *   └──────────────────┘       └───────────────────────────────────┘
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { ClosedError } from '../../src/core/errors.js';
import { MemoryMetrics } from '../../src/core/metrics.js';
import { nativeAvailable, nativeUnavailableReason, TunError } from '../../src/native/addon.js';
import { TunDevice } from '../../src/tun/device.js';
import { IprouteError, linkExists, linkUp, listAddresses, runIp } from '../../src/tun/iproute.js';
import { OFF_CSUM, OFF_GSO } from '../../src/tun/vnet.js';
import { checksum, ipv4, udp } from '../helpers/ip-packets.js';

const LOCAL = '10.213.7.1';
const PEER = '10.213.7.2';

const skipReason =
  process.getuid?.() !== 0
    ? 'needs root (creates a network namespace and a TUN device)'
    : !existsSync('/dev/net/tun')
      ? '/dev/net/tun missing (modprobe tun)'
      : !nativeAvailable
        ? `native addon unavailable: ${nativeUnavailableReason} (npm run build:native)`
        : undefined;
if (skipReason !== undefined) console.log(`# tun-basic skipped: ${skipReason}`);

// ---- IPv4 packets: built by test/helpers/ip-packets.ts, parsed here -------

interface Ipv4View {
  version: number;
  protocol: number;
  src: string;
  dst: string;
  payload: Buffer;
}

function parseIpv4(p: Buffer): Ipv4View {
  const ihl = ((p[0] ?? 0) & 0x0f) * 4;
  return {
    version: (p[0] ?? 0) >> 4,
    protocol: p[9] ?? -1,
    src: [...p.subarray(12, 16)].join('.'),
    dst: [...p.subarray(16, 20)].join('.'),
    payload: p.subarray(ihl, p.readUInt16BE(2)),
  };
}

// ---- packet waiter: onPackets feeds it, tests await a matching packet -----

class PacketWaiter {
  private readonly seen: Buffer[] = [];
  private waiters: { match: (p: Buffer) => boolean; resolve: (p: Buffer) => void }[] = [];
  push(packets: Buffer[]): void {
    for (const p of packets) {
      const w = this.waiters.find((x) => x.match(p));
      if (w === undefined) this.seen.push(p);
      else {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(p);
      }
    }
  }
  wait(what: string, match: (p: Buffer) => boolean, ms = 20_000): Promise<Buffer> {
    const early = this.seen.find(match);
    if (early !== undefined) return Promise.resolve(early);
    return new Promise((resolve, reject) => {
      const entry = {
        match,
        resolve: (p: Buffer): void => {
          clearTimeout(timer);
          resolve(p);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== entry);
        reject(new Error(`no packet ${what} within ${ms} ms`));
      }, ms);
      this.waiters.push(entry);
    });
  }
}

// The UDP end inside the namespace: binds LOCAL, sends one datagram to
// PEER:5353, prints its port, then prints the first datagram it receives.
const CHILD = `
const dgram = require('node:dgram');
const [local, peer] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const t = setTimeout(() => { console.log(JSON.stringify({ timeout: true })); process.exit(2); }, 30000);
s.on('message', (m, r) => {
  console.log(JSON.stringify({ data: m.toString(), from: r.address, port: r.port }));
  clearTimeout(t);
  s.close();
});
s.bind(0, local, () => {
  console.log(JSON.stringify({ port: s.address().port }));
  s.send('hello from the namespace', 5353, peer);
});
`;

describe('TUN device (lab, network namespace)', { skip: skipReason ?? false }, () => {
  const tag = randomBytes(4).toString('hex');
  const ns = `pt-tun-${process.pid}-${tag}`;
  const waiter = new PacketWaiter();
  const metrics = new MemoryMetrics();
  let dev: TunDevice | undefined;
  const device = (): TunDevice => {
    assert.ok(dev, 'device was not created');
    return dev;
  };

  before(async () => {
    await runIp(['netns', 'add', ns]);
    await linkUp('lo', { netns: ns });
    dev = await TunDevice.create({ name: `pt${tag}`, mtu: 1400, addresses: [`${LOCAL}/30`, 'fd00:213:7::1/64'], txqueuelen: 1000, netns: ns, metrics });
    dev.onPackets((packets) => waiter.push(packets));
  });

  after(async () => {
    dev?.close();
    await runIp(['netns', 'del', ns]);
  });

  it('is configured inside the namespace only (name, MTU, addresses, up)', async () => {
    const d = device();
    assert.equal(d.name, `pt${tag}`);
    assert.equal(await linkExists(d.name), false, 'device must not remain in the root namespace');
    const link = JSON.parse(await runIp(['-j', 'link', 'show', 'dev', d.name], { netns: ns })) as { mtu: number; flags: string[]; txqlen: number }[];
    assert.equal(link[0]?.mtu, 1400);
    assert.equal(link[0]?.txqlen, 1000);
    assert.ok(link[0]?.flags.includes('UP'));
    const addrs = await listAddresses(d.name, { netns: ns });
    assert.ok(addrs.includes(`${LOCAL}/30`), addrs.join(','));
    assert.ok(addrs.includes('fd00:213:7::1/64'), addrs.join(','));
  });

  it('an ICMP echo request written into the TUN is answered by the kernel and the reply is read back', async () => {
    const id = 0x5054;
    const data = Buffer.from(`polytun-${tag}`);
    const icmp = Buffer.concat([Buffer.from([8, 0, 0, 0, id >> 8, id & 0xff, 0, 1]), data]);
    icmp.writeUInt16BE(checksum(icmp), 2);
    const reply = waiter.wait('ICMP echo reply', (p) => {
      const ip = parseIpv4(p);
      return ip.version === 4 && ip.protocol === 1 && ip.payload[0] === 0 && ip.payload.readUInt16BE(4) === id;
    });
    assert.deepEqual(device().write([ipv4(PEER, LOCAL, 1, icmp)]), { written: 1, dropped: 0, invalid: 0 });
    const ip = parseIpv4(await reply);
    assert.equal(ip.src, LOCAL);
    assert.equal(ip.dst, PEER);
    assert.deepEqual(ip.payload.subarray(8), data);
    // The device's counters as metrics: what it wrote and read, nothing dropped.
    const st = device().stats;
    assert.ok(st.txPackets >= 1 && st.rxPackets >= 1);
    assert.deepEqual([metrics.value('polytun_tun_packets_total', 'written'), metrics.value('polytun_tun_packets_total', 'read'), metrics.value('polytun_tun_read_batches_total')], [st.txPackets, st.rxPackets, st.rxBatches]);
    assert.equal(metrics.value('polytun_tun_dropped_total', 'write_full'), 0);
  });

  it('UDP both ways: a namespace socket sends into the TUN, our reply written to the TUN reaches it', async () => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', CHILD, LOCAL, PEER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    try {
      const first = JSON.parse(String((await lines.next()).value)) as { port: number };
      const incoming = parseIpv4(
        await waiter.wait('UDP to PEER:5353', (p) => {
          const ip = parseIpv4(p);
          return ip.version === 4 && ip.protocol === 17 && ip.dst === PEER && ip.payload.readUInt16BE(2) === 5353;
        }),
      );
      assert.equal(incoming.src, LOCAL);
      assert.equal(incoming.payload.readUInt16BE(0), first.port);
      assert.equal(incoming.payload.subarray(8).toString(), 'hello from the namespace');

      const res = device().write([udp(PEER, 5353, LOCAL, first.port, Buffer.from('hello from the tun'))]);
      assert.equal(res.written, 1);
      const got = JSON.parse(String((await lines.next()).value)) as { data: string; from: string; port: number };
      assert.deepEqual(got, { data: 'hello from the tun', from: PEER, port: 5353 });
      assert.equal(await exited, 0);
    } finally {
      child.kill();
    }
  });

  for (const [i, mode] of (['copy', 'batch', 'shared'] as const).entries()) {
    it(`read mode '${mode}': 100 echo replies arrive intact, in batches of at most readBatch`, async () => {
      const local = `10.213.${20 + i}.1`;
      const peer = `10.213.${20 + i}.2`;
      const d = await TunDevice.create({ name: `p${i}${tag}`, mtu: 1400, addresses: [`${local}/30`], netns: ns, readMode: mode, readBatch: 8 });
      try {
        const replies = new Map<number, Buffer>();
        let largestBatch = 0;
        const all = new Promise<void>((resolve) => {
          d.onPackets((packets) => {
            largestBatch = Math.max(largestBatch, packets.length);
            for (const p of packets) {
              const ip = parseIpv4(p);
              if (ip.protocol !== 1 || ip.payload[0] !== 0) continue;
              // 'shared' views die when the handler returns: keep a copy
              replies.set(ip.payload.readUInt16BE(6), Buffer.from(ip.payload.subarray(8)));
            }
            if (replies.size === 100) resolve();
          });
        });
        const requests = Array.from({ length: 100 }, (_, seq) => {
          const icmp = Buffer.concat([Buffer.from([8, 0, 0, 0, 0x50, 0x54, seq >> 8, seq & 0xff]), Buffer.from(`seq ${seq} `.repeat(20))]);
          icmp.writeUInt16BE(checksum(icmp), 2);
          return ipv4(peer, local, 1, icmp);
        });
        assert.equal(d.write(requests).written, 100);
        await all;
        for (let seq = 0; seq < 100; seq++) assert.equal(replies.get(seq)?.toString(), `seq ${seq} `.repeat(20), `seq ${seq}`);
        assert.ok(largestBatch <= 8, `batch of ${largestBatch} > readBatch`);
        assert.ok(d.stats.rxBatches >= 13, `100 packets in ${d.stats.rxBatches} batches of <= 8`);
        assert.equal(d.oversizeDropped, 0);
      } finally {
        d.close();
      }
    });
  }

  it('counts malformed packets as invalid instead of throwing', () => {
    const before = device().stats.txInvalid;
    // empty, and IP version 0: the kernel cannot tell the protocol (EINVAL)
    const r = device().write([Buffer.alloc(0), Buffer.alloc(40, 0)]);
    assert.deepEqual(r, { written: 0, dropped: 0, invalid: 2 });
    assert.equal(device().stats.txInvalid, before + 2);
  });

  it('reports a deleted device as a TunError (EBADFD) through onError', async () => {
    const gone = await TunDevice.create({ name: `pu${tag}`, mtu: 1280, netns: ns });
    try {
      const failed = new Promise<TunError>((resolve) => gone.onError(resolve));
      gone.onPackets(() => undefined);
      await runIp(['link', 'del', 'dev', gone.name], { netns: ns });
      const err = await failed;
      assert.ok(err instanceof TunError);
      assert.equal(err.code, 'ERR_TUN');
      assert.equal(err.errno, 'EBADFD');
      assert.throws(() => gone.write([Buffer.alloc(20, 0x45)]), (e: unknown) => e instanceof TunError && e.errno === 'EBADFD');
    } finally {
      gone.close();
    }
  });

  it('close() removes the device', async () => {
    const d = device();
    d.close();
    d.close(); // idempotent
    await assert.rejects(runIp(['link', 'show', 'dev', d.name], { netns: ns }), IprouteError);
    assert.equal(await linkExists(d.name, { netns: ns }), false);
    assert.throws(() => d.write([Buffer.alloc(20, 0x45)]), ClosedError);
    assert.throws(() => d.onPackets(() => undefined), ClosedError);
  });
});

// ---- offload: two devices in two namespaces, bridged by this process -----

// In ns B: accepts one connection, prints the byte count and SHA-256 of what arrived.
const RECEIVER = `
const net = require('node:net'), crypto = require('node:crypto');
const [ip, port] = process.argv.slice(1);
const srv = net.createServer((s) => {
  const h = crypto.createHash('sha256');
  let n = 0;
  s.on('data', (c) => { h.update(c); n += c.length; });
  s.on('end', () => { console.log(JSON.stringify({ bytes: n, sha: h.digest('hex') })); s.end(); srv.close(); });
});
srv.listen(Number(port), ip, () => console.log(JSON.stringify({ ready: true })));
`;

// In ns A: sends SIZE random bytes in one connection, prints their SHA-256.
const SENDER = `
const net = require('node:net'), crypto = require('node:crypto');
const [ip, port, size] = process.argv.slice(1);
const buf = crypto.randomBytes(Number(size));
console.log(JSON.stringify({ sha: crypto.createHash('sha256').update(buf).digest('hex') }));
const s = net.connect(Number(port), ip, () => s.end(buf));
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

/*
 *   ns A                                  this process                 ns B
 *   sender 10.213.40.1 ── TUN A (offload) ──read──▶ write ── TUN B ── receiver 10.213.41.1:7000
 *                                         ◀──write── read ◀─
 */
describe('TUN offload (lab: two namespaces bridged in userspace)', { skip: skipReason ?? false }, () => {
  const tag = randomBytes(3).toString('hex');
  const nsA = `pt-oa-${process.pid}-${tag}`;
  const nsB = `pt-ob-${process.pid}-${tag}`;
  const SIZE = 8 << 20;

  before(async () => {
    for (const ns of [nsA, nsB]) {
      await runIp(['netns', 'add', ns]);
      await linkUp('lo', { netns: ns });
    }
  });

  after(async () => {
    for (const ns of [nsA, nsB]) await runIp(['netns', 'del', ns]);
  });

  const run = (ns: string, script: string, args: string[]): { lines: AsyncIterator<string>; kill: () => void } => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    return { lines: createInterface({ input: child.stdout })[Symbol.asyncIterator](), kill: () => child.kill() };
  };
  /** The next JSON line; a stalled transfer (packets the kernel drops as bad) fails within 60 s. */
  const next = async (lines: AsyncIterator<string>): Promise<Record<string, unknown>> => {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no line within 60 s: the transfer stalled')), 60_000)));
    try {
      return JSON.parse(String((await Promise.race([lines.next(), stalled])).value)) as Record<string, unknown>;
    } finally {
      clearTimeout(timer);
    }
  };

  /** Bridges A and B, sends SIZE bytes from A to B over TCP; returns both devices' stats. */
  async function transfer(i: number, offloadB: boolean): Promise<{ a: TunDevice; b: TunDevice }> {
    const a = await TunDevice.create({ name: `poa${i}${tag}`, mtu: 1400, addresses: [`10.213.4${2 * i}.1/30`], netns: nsA, offload: true });
    const b = await TunDevice.create({ name: `pob${i}${tag}`, mtu: 1400, addresses: [`10.213.4${2 * i + 1}.1/30`], netns: nsB, offload: offloadB });
    await runIp(['route', 'add', `10.213.4${2 * i + 1}.0/30`, 'dev', a.name], { netns: nsA });
    await runIp(['route', 'add', `10.213.4${2 * i}.0/30`, 'dev', b.name], { netns: nsB });
    a.onPackets((ps, meta) => b.write(ps, meta));
    b.onPackets((ps, meta) => a.write(ps, meta));
    const receiver = run(nsB, RECEIVER, [`10.213.4${2 * i + 1}.1`, '7000']);
    let sender: ReturnType<typeof run> | undefined;
    try {
      assert.deepEqual(await next(receiver.lines), { ready: true });
      sender = run(nsA, SENDER, [`10.213.4${2 * i + 1}.1`, '7000', String(SIZE)]);
      const sent = await next(sender.lines);
      const got = await next(receiver.lines);
      assert.deepEqual(got, { bytes: SIZE, sha: sent.sha }, 'the transfer arrived intact');
    } catch (err) {
      a.close();
      b.close();
      throw new Error(`${(err as Error).message}; A ${JSON.stringify(a.stats)}, B ${JSON.stringify(b.stats)}`, { cause: err });
    } finally {
      sender?.kill();
      receiver.kill();
    }
    return { a, b };
  }

  it('offload on both: the kernel hands over TCP super-packets, takes them back whole, and the data arrives intact', async () => {
    const { a, b } = await transfer(0, true);
    try {
      assert.equal(a.offload, true);
      assert.ok(a.stats.rxSuper > 0, `no super-packet read: ${JSON.stringify(a.stats)}`);
      assert.equal(a.offloadDropped, 0);
      assert.equal(b.stats.txInvalid, 0, 'the kernel accepted every vnet header');
      // Offload devices write one packet per packet read: nothing was cut on the way.
      assert.equal(b.stats.txPackets + b.stats.txDropped, a.stats.rxPackets);
      const link = JSON.parse(await runIp(['-d', '-j', 'link', 'show', 'dev', a.name], { netns: nsA })) as { gso_max_size?: number }[];
      if (link[0]?.gso_max_size !== undefined) assert.equal(link[0].gso_max_size, 65000, 'super-packets bounded to fit one datagram');
    } finally {
      a.close();
      b.close();
    }
  });

  it('an offload device counts malformed packets, and metadata that does not fit the packet, as invalid', async () => {
    const d = await TunDevice.create({ name: `poi${tag}`, mtu: 1400, addresses: ['10.213.46.1/30'], netns: nsA, offload: true });
    try {
      const icmp = Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]), Buffer.from('x')]);
      icmp.writeUInt16BE(checksum(icmp), 2);
      // empty and version 0 (the kernel refuses them), and GSO metadata on an ICMP packet (refused here)
      const r = d.write([Buffer.alloc(0), Buffer.alloc(40, 0), ipv4('10.213.46.2', '10.213.46.1', 1, icmp)], [0, 0, OFF_GSO | OFF_CSUM | 1000]);
      assert.deepEqual(r, { written: 0, dropped: 0, invalid: 3 });
      assert.equal(d.stats.txInvalid, 3);
    } finally {
      d.close();
    }
  });

  it('into a device without offload: super-packets are cut and checksummed here, and the data still arrives intact', async () => {
    const { a, b } = await transfer(1, false);
    try {
      assert.equal(b.offload, false);
      assert.ok(a.stats.rxSuper > 0, `no super-packet read: ${JSON.stringify(a.stats)}`);
      assert.equal(b.stats.txInvalid, 0);
      assert.ok(b.stats.txPackets + b.stats.txDropped > a.stats.rxPackets, `cut into more packets: ${JSON.stringify({ a: a.stats, b: b.stats })}`);
    } finally {
      a.close();
      b.close();
    }
  });
});
