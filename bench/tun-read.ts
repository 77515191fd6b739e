/**
 * TUN read throughput per read mode (copy / batch / shared). Root only.
 * Run: `node --import tsx bench/tun-read.ts [packets] [rounds]`.
 *
 * Inside a throwaway namespace we inject UDP packets into TUN "in" with
 * writePackets; the kernel forwards them to TUN "out", whose queue
 * (txqueuelen = 64 Ki packets) holds them while nobody reads. Then reading
 * starts and we time how long TunDevice takes to drain the queue. Filling
 * first and draining second keeps the writer off the CPU while the reader is
 * measured (this machine has 2 cores; a concurrent writer plus the kernel's
 * forwarding work would blur the figure). The kernel side is a real receive
 * + forward + transmit path.
 *
 *   writePackets ─► tunIn (10.214.1.1/30) ─► ip_forward ─► tunOut queue ─► read
 *                   src 10.214.1.2                          dst 10.214.2.2
 *
 * Printed: the reader's drain rate (median of rounds) per mode and packet
 * size, plus the write rate (inject + forward) measured while filling.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { closeFd, openTun, writePackets } from '../src/native/addon.js';
import { TunDevice } from '../src/tun/device.js';
import type { TunReadMode } from '../src/tun/device.js';
import { addAddress, linkSet, linkSetNetns, linkUp, runIp } from '../src/tun/iproute.js';

const count = Number(process.argv[2] ?? 60_000);
const rounds = Number(process.argv[3] ?? 5);
if (process.getuid?.() !== 0) {
  console.error('tun-read bench needs root (network namespace + TUN)');
  process.exit(1);
}

function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** IPv4/UDP 10.214.1.2:9 → 10.214.2.2:9, UDP checksum 0 (allowed on IPv4). */
function udpPacket(size: number): Buffer {
  const p = Buffer.alloc(size);
  p[0] = 0x45;
  p.writeUInt16BE(size, 2);
  p[8] = 64;
  p[9] = 17;
  Buffer.from([10, 214, 1, 2, 10, 214, 2, 2]).copy(p, 12);
  p.writeUInt16BE(checksum(p.subarray(0, 20)), 10);
  p.writeUInt16BE(9, 20);
  p.writeUInt16BE(9, 22);
  p.writeUInt16BE(size - 20, 24);
  return p;
}

interface Round {
  readPps: number;
  writePps: number;
  queued: number;
}

/** Fills tunOut's queue with `count` packets, then times draining it through a TunDevice. */
async function round(ns: string, inFd: number, mode: TunReadMode, size: number, count: number): Promise<Round> {
  const out = await TunDevice.create({ name: `pto${randomBytes(3).toString('hex')}`, mtu: 1500, addresses: ['10.214.2.1/30'], netns: ns, txqueuelen: 65536, readMode: mode });
  try {
    const batch = Array.from({ length: 64 }, () => udpPacket(size));
    const w0 = performance.now();
    let written = 0;
    while (written < count) written += writePackets(inFd, batch.slice(0, Math.min(64, count - written))).written;
    const writePps = written / ((performance.now() - w0) / 1000);
    const dropped = await txDropped(ns, out.name);
    const queued = written - dropped;
    let rx = 0;
    let sink = 0;
    const t0 = performance.now();
    let tLast = t0;
    const readPps = await new Promise<number>((resolve) => {
      // Guard against a count we got wrong (a drop the stats missed): stop when reads stall.
      let seen = -1;
      const stall = setInterval(() => {
        if (rx === seen) done();
        seen = rx;
      }, 500);
      const done = (): void => {
        clearInterval(stall);
        resolve(rx / ((tLast - t0) / 1000));
      };
      out.onPackets((packets) => {
        rx += packets.length;
        tLast = performance.now();
        for (const p of packets) sink ^= p[p.length - 1] ?? 0; // touch the data, as a consumer would
        if (rx >= queued) done();
      });
    });
    if (sink < 0) console.log(sink);
    return { readPps, writePps, queued: rx };
  } finally {
    out.close();
  }
}

async function txDropped(ns: string, dev: string): Promise<number> {
  const j = JSON.parse(await runIp(['-j', '-s', 'link', 'show', 'dev', dev], { netns: ns })) as { stats64?: { tx?: { dropped?: number } } }[];
  return j[0]?.stats64?.tx?.dropped ?? 0;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const ns = `pt-bench-${process.pid}`;
await runIp(['netns', 'add', ns]);
try {
  await linkUp('lo', { netns: ns });
  await runIp(['netns', 'exec', ns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']);
  // The injecting side uses the low-level API directly: its raw fd is all we need.
  const tunIn = openTun(`pti${randomBytes(3).toString('hex')}`);
  const inFd = tunIn.fd;
  try {
    await linkSetNetns(tunIn.name, ns);
    await linkSet(tunIn.name, { mtu: 1500, up: true }, { netns: ns });
    await addAddress(tunIn.name, '10.214.1.1/30', { netns: ns });
    console.log(`# TUN drain rate: ${count} queued packets per round, median of ${rounds} rounds, batch 64`);
    console.log('mode    size   read pps   read MB/s   (write pps while filling)');
    for (const size of [100, 1400]) {
      await round(ns, inFd, 'batch', size, count); // warm-up (JIT)
      for (const mode of ['copy', 'batch', 'shared'] as const) {
        const rs: Round[] = [];
        for (let i = 0; i < rounds; i++) rs.push(await round(ns, inFd, mode, size, count));
        const pps = median(rs.map((r) => r.readPps));
        const wpps = median(rs.map((r) => r.writePps));
        console.log(`${mode.padEnd(7)} ${String(size).padStart(4)} ${pps.toFixed(0).padStart(10)} ${((pps * size) / 1e6).toFixed(0).padStart(11)}   (${wpps.toFixed(0)}; queued ${median(rs.map((r) => r.queued))})`);
      }
    }
  } finally {
    closeFd(inFd);
  }
} finally {
  await runIp(['netns', 'del', ns]);
}
