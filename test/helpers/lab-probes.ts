/**
 * Measurements between two lab namespaces: one iperf3 TCP run, ping round
 * trips, and a numbered UDP flood whose arrivals tell loss, duplicates,
 * reordering and one-way delay. Used by test/lab/impair.test.ts to check
 * the impair link emulator; any lab built on test/lab/netns.ts can use them.
 *
 * One-way delays are exact: both ends stamp with process.hrtime (the
 * machine's CLOCK_MONOTONIC, which network namespaces share).
 */
import { LabError, type Lab } from '../lab/netns.js';

/** What one iperf3 run measured. */
export interface IperfResult {
  /** Goodput at the receiver, bit/s. */
  receivedBps: number;
  /** Segments the sender retransmitted. */
  retransmits: number;
}

/**
 * Runs `iperf3 -c` in `client` against a one-off `iperf3 -s` started in
 * `server` at `addr`; `congestion` picks the TCP algorithm (the lab
 * namespaces inherit the machine's default, which may be BBR, which barely
 * reacts to random loss), `omit` drops the first seconds (slow start).
 */
export async function iperf3(lab: Lab, client: string, server: string, addr: string, opts: { seconds: number; omit?: number; congestion?: string; port?: number }): Promise<IperfResult> {
  const port = String(opts.port ?? 5201);
  const srv = lab.spawn(server, 'iperf3', ['-s', '-1', '--forceflush', '-B', addr, '-p', port], { name: 'iperf3 -s' });
  try {
    await srv.waitForLine(/Server listening/);
    const args = ['-c', addr, '-p', port, '-J', '-t', String(opts.seconds), '-O', String(opts.omit ?? 0)];
    if (opts.congestion !== undefined) args.push('-C', opts.congestion);
    const out = await lab.run(client, 'iperf3', args, { timeoutMs: (opts.seconds + (opts.omit ?? 0) + 20) * 1000 });
    const j = JSON.parse(out) as { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
    const bps = j.end?.sum_received?.bits_per_second;
    if (j.error !== undefined || bps === undefined) throw new LabError(`iperf3: ${j.error ?? 'no result'}`);
    return { receivedBps: bps, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
  } finally {
    await srv.stop(2000);
  }
}

/** Round-trip times (ms) of `count` pings from `from` to `addr`, `intervalS` apart. */
export async function pingRtts(lab: Lab, from: string, addr: string, count: number, intervalS = 0.2): Promise<number[]> {
  const out = await lab.run(from, 'ping', ['-n', '-c', String(count), '-i', String(intervalS), '-W', '2', addr], { timeoutMs: (count * intervalS + 10) * 1000 }).catch((err: unknown) => {
    // ping exits 1 when some replies were lost: keep what came back.
    const m = /failed: ([\s\S]*)$/.exec(String(err));
    return m?.[1] ?? '';
  });
  return [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

// Receiver: records every datagram's number and one-way delay; prints them
// as one JSON line once nothing came for IDLE ms (or after MAX ms).
const RECEIVER = `
const dgram = require('node:dgram');
const [host, port, idleMs, maxMs] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const seqs = [], owdUs = [];
let bytes = 0, first = 0n, last = 0n, timer;
const done = () => process.stdout.write(JSON.stringify({ seqs, owdUs, bytes, spanNs: Number(last - first) }) + '\\n', () => process.exit(0));
s.on('message', (m) => {
  const now = process.hrtime.bigint();
  if (first === 0n) first = now;
  last = now;
  seqs.push(m.readUInt32BE(0));
  owdUs.push(Number((now - m.readBigUInt64BE(4)) / 1000n));
  bytes += m.length;
  clearTimeout(timer);
  timer = setTimeout(done, Number(idleMs));
});
s.bind(Number(port), host, () => console.log('receiver ready'));
setTimeout(done, Number(maxMs));
`;

// Sender: COUNT datagrams of SIZE bytes, PER_TICK of them every millisecond or so.
const SENDER = `
const dgram = require('node:dgram');
const [host, port, count, size, perTick] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const s = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
let seq = 0, errors = 0;
s.on('error', () => errors++);
const tick = () => {
  for (let i = 0; i < perTick && seq < count; i++) {
    const b = Buffer.alloc(size);
    b.writeUInt32BE(seq++, 0);
    b.writeBigUInt64BE(process.hrtime.bigint(), 4);
    s.send(b, port, host, (err) => { if (err) errors++; });
  }
  if (seq < count) setTimeout(tick, 1);
  else setTimeout(() => s.close(() => console.log(JSON.stringify({ sent: seq, errors }))), 50);
};
tick();
`;

/** What the receiver of a UDP flood saw. */
export interface FloodResult {
  sent: number;
  /** Datagram numbers in arrival order. */
  seqs: number[];
  /** One-way delay of each arrival, µs. */
  owdUs: number[];
  /** Payload bytes received. */
  bytes: number;
  /** Time from the first arrival to the last, ns. */
  spanNs: number;
  /** UDP datagrams the receiving namespace dropped for a full socket buffer meanwhile. */
  rcvbufErrors: number;
}

async function udpRcvbufErrors(lab: Lab, ns: string): Promise<number> {
  const snmp = await lab.run(ns, 'cat', ['/proc/net/snmp']);
  const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Udp:'));
  const i = names?.split(/\s+/).indexOf('RcvbufErrors') ?? -1;
  return i < 0 ? 0 : Number(values?.split(/\s+/)[i] ?? 0);
}

/**
 * Sends `count` numbered, timestamped datagrams of `size` bytes (≥ 12) from
 * `from` to `to`:`port`, `perTick` every millisecond or so, and returns
 * what arrived.
 */
export async function udpFlood(lab: Lab, from: string, to: string, addr: string, opts: { count: number; size: number; perTick: number; port?: number; idleMs?: number }): Promise<FloodResult> {
  const port = String(opts.port ?? 9000);
  const before = await udpRcvbufErrors(lab, to);
  const rx = lab.spawn(to, process.execPath, ['-e', RECEIVER, addr, port, String(opts.idleMs ?? 500), '60000'], { name: 'udp receiver' });
  try {
    await rx.waitForLine(/receiver ready/);
    const sent = JSON.parse(await lab.run(from, process.execPath, ['-e', SENDER, addr, port, String(opts.count), String(opts.size), String(opts.perTick)])) as { sent: number; errors: number };
    if (sent.errors > 0) throw new LabError(`udp sender: ${sent.errors} send errors`);
    const line = (await rx.waitForLine(/^\{"seqs"/, 70_000)).input ?? '';
    const got = JSON.parse(line) as Omit<FloodResult, 'sent' | 'rcvbufErrors'>;
    return { ...got, sent: sent.sent, rcvbufErrors: (await udpRcvbufErrors(lab, to)) - before };
  } finally {
    await rx.stop(2000);
  }
}

/** Loss, duplicates and reordering of a flood of `sent` datagrams numbered from 0. */
export interface FlowStats {
  /** Distinct datagrams that arrived. */
  unique: number;
  /** Arrivals of a number already seen. */
  dups: number;
  /** First arrivals of a number lower than one already seen (overtaken). */
  late: number;
  /** Datagrams that never arrived. */
  lost: number;
  /** Lengths of the runs of consecutive lost numbers. */
  lossRuns: number[];
}

export function flowStats(seqs: readonly number[], sent: number): FlowStats {
  const seen = new Uint8Array(sent);
  let unique = 0;
  let dups = 0;
  let late = 0;
  let max = -1;
  for (const s of seqs) {
    if (s >= sent) continue;
    if (seen[s]) {
      dups++;
      continue;
    }
    seen[s] = 1;
    unique++;
    if (s < max) late++;
    else max = s;
  }
  const lossRuns: number[] = [];
  let run = 0;
  for (let i = 0; i <= sent; i++) {
    if (i < sent && !seen[i]) run++;
    else if (run > 0) {
      lossRuns.push(run);
      run = 0;
    }
  }
  return { unique, dups, late, lost: sent - unique, lossRuns };
}
