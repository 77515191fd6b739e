/**
 * `npm run bench -- bonding` (root only): aggregation efficiency and failover
 * stall of a bonded session, in the namespace lab of test/lab/bonding-lab.ts.
 *
 * Two links with a 2:1 rate ratio (tbf 200 and 100 Mbit/s on both ends) and a
 * 1:4 RTT ratio (relay delay 5 and 20 ms one-way). Every figure is iperf3 -R
 * (the far end sends, as in a download), and every ratio is taken against
 * figures measured in the same run:
 *
 * - efficiency = bonded goodput ÷ (goodput of plain TCP over link A alone +
 *   over link B alone), each through the same relays;
 * - the same on tbf-only links (no relays, so equal RTTs) beside kernel MPTCP
 *   (iperf3 under `mptcpize run`, one subflow per link): a relay would
 *   terminate MPTCP's subflows, so MPTCP cannot be measured through it;
 * - failover stall: a bonded download through SOCKS5 while one link is set
 *   down at a known instant; the time until bytes flow again, with the
 *   liveness tuned (FAST_LIVENESS).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BondingLab, FAST_LIVENESS, PORTS } from '../test/lab/bonding-lab.js';
import { LabError, labUnavailableReason, type LabProc } from '../test/lab/netns.js';
import { processCpuMs } from './peers.js';

const RATES = ['200mbit', '100mbit'] as const;
const DELAYS = [5, 20] as const;
const IPERF_DIRECT_RELAY = 7002;
const MPTCP_IPERF = 5202;
const FWD = 5301;
/**
 * A check row: the client's stream window at its auto-tuning maximum (8 MiB)
 * from the start. It matches the default row when the window is not what
 * limits the bonded stream (auto-tuning reaches 8 MiB within a second).
 */
const BIG_WINDOW = ['--set', `limits.streamWindow=${8 << 20}`];

/** One goodput figure and how the bytes split over the links (S-side tx counters). */
export interface Goodput {
  mbps: number;
  shares: number[];
  /** CPU seconds per second of the client and server processes (polytun runs only). */
  cpu?: { client: number; server: number };
}

/** Everything benchBonding measured. */
export interface BondingBenchResult {
  seconds: number;
  relayed: { directA: Goodput; directB: Goodput; pathA: Goodput; pathB: Goodput; bonded: Goodput; bondedBigWindow: Goodput };
  tbfOnly: { directA: Goodput; directB: Goodput; mptcp: Goodput | string; bonded: Goodput };
  /** Link index → ms from link down to bytes flowing again, and the longest gap. */
  failover: { link: number; resumedAfterMs: number; maxGapMs: number }[];
  liveness: string;
}

/** Why the benchmark cannot run here, or undefined. */
export function bondingBenchUnavailable(): string | undefined {
  const lab = labUnavailableReason();
  if (lab) return lab;
  for (const cmd of ['iperf3', 'curl']) {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    } catch {
      return `${cmd} is not installed (apt-get install -y ${cmd})`;
    }
  }
  return undefined;
}

function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const ms = processCpuMs(pid);
  if (ms === undefined) throw new LabError(`cannot read the CPU time of process ${pid} from /proc`);
  return ms / 1000;
}

export async function benchBonding(seconds = Number(process.env.BENCH_BONDING_SECONDS ?? 8)): Promise<BondingBenchResult> {
  const bl = new BondingLab('bench');
  try {
    await bl.build({
      links: RATES.map((rate, i) => ({ rate, delayMs: DELAYS[i] as number, burst: '128kb' })),
      net: 231,
      fileSize: 16 << 20,
      serverArgs: FAST_LIVENESS,
    });
    const { lab, cli, srv } = bl;
    lab.spawn(srv, 'iperf3', ['-s', '-p', String(PORTS.iperf)], { name: 'iperf3 -s' });
    const haveMptcp = mptcpAvailable();
    if (haveMptcp === true) {
      await setupMptcp(bl);
      lab.spawn(srv, 'mptcpize', ['run', 'iperf3', '-s', '-p', String(MPTCP_IPERF)], { name: 'iperf3 -s (mptcp)' });
    }
    // Plain TCP through each link's relay, same delays as polytun's relays.
    for (const l of bl.links) await bl.startRelay(l.veth.bAddr, IPERF_DIRECT_RELAY, PORTS.iperf, l.delayMs ?? 0, 9200 + l.index, `iperf relay ${l.index}`);
    await new Promise((r) => setTimeout(r, 300)); // iperf3 -s has no readiness line on stdout

    const tx = async (): Promise<number[]> => Promise.all(bl.links.map(async (l) => (await lab.counters(srv, l.veth.bIf)).txBytes));
    const iperf = async (argv: string[], procs?: { client: LabProc; server: LabProc }): Promise<Goodput> => {
      const t0 = await tx();
      const cpu0 = procs ? [cpuSeconds(procs.client.child.pid), cpuSeconds(procs.server.child.pid)] : [];
      const out = await lab.run(cli, argv[0] as string, [...argv.slice(1), '-R', '-t', String(seconds), '-O', '2', '-J'], { timeoutMs: (seconds + 30) * 1000 });
      const t1 = await tx();
      const j = JSON.parse(out) as { error?: string; end: { sum_received?: { bits_per_second: number } } };
      if (j.end.sum_received === undefined) throw new LabError(`${argv.join(' ')}: ${j.error ?? 'no result'}${procs ? `; client log:\n${procs.client.log().slice(-3000)}` : ''}`);
      const moved = t1.map((b, i) => b - (t0[i] ?? 0));
      const total = moved.reduce((a, b) => a + b, 0) || 1;
      const g: Goodput = { mbps: j.end.sum_received.bits_per_second / 1e6, shares: moved.map((b) => b / total) };
      if (procs) {
        const wall = seconds + 2;
        g.cpu = { client: (cpuSeconds(procs.client.child.pid) - (cpu0[0] ?? 0)) / wall, server: (cpuSeconds(procs.server.child.pid) - (cpu0[1] ?? 0)) / wall };
      }
      return g;
    };
    const viaTunnel = async (first: number, more: number[], direct: boolean, flags: string[] = []): Promise<Goodput> => {
      const client = await bl.startClient({
        first,
        paths: more.map((link) => ({ link })),
        direct,
        extra: [...FAST_LIVENESS, '-L', `127.0.0.1:${FWD}:127.0.0.1:${PORTS.iperf}`, ...flags],
        nodeOptions: process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.cwd()}/.scratch/prof`] : [],
      });
      try {
        const g = await iperf(['iperf3', '-c', '127.0.0.1', '-p', String(FWD)], { client, server: bl.server as LabProc });
        if (more.length > 0) console.log(`#   per-path stats after the run: ${JSON.stringify((await bl.status()).paths.map((p) => ({ label: p.label, rttMs: Math.round(p.rttMs ?? -1), rateMBps: +(p.rateBytesPerSec / 1e6).toFixed(1), rxMiB: +(p.bytesReceived / 2 ** 20).toFixed(1) })))}`);
        return g;
      } finally {
        await client.stop();
      }
    };
    const a = bl.linkAt(0).veth.bAddr;
    const b = bl.linkAt(1).veth.bAddr;

    const relayed = {
      directA: await iperf(['iperf3', '-c', a, '-p', String(IPERF_DIRECT_RELAY)]),
      directB: await iperf(['iperf3', '-c', b, '-p', String(IPERF_DIRECT_RELAY)]),
      pathA: await viaTunnel(0, [], false),
      pathB: await viaTunnel(1, [], false),
      bonded: await viaTunnel(0, [1], false),
      bondedBigWindow: await viaTunnel(0, [1], false, BIG_WINDOW),
    };
    const tbfOnly = {
      directA: await iperf(['iperf3', '-c', a, '-p', String(PORTS.iperf)]),
      directB: await iperf(['iperf3', '-c', b, '-p', String(PORTS.iperf)]),
      mptcp: haveMptcp === true ? await iperf(['mptcpize', 'run', 'iperf3', '-c', a, '-p', String(MPTCP_IPERF)]) : haveMptcp,
      bonded: await viaTunnel(0, [1], true),
    };
    const failover = [];
    for (const link of [1, 0]) failover.push(await measureFailover(bl, link));
    return { seconds, relayed, tbfOnly, failover, liveness: FAST_LIVENESS.filter((x) => x !== '--set').join(' ') };
  } finally {
    await bl.cleanup();
  }
}

/** true, or why kernel MPTCP cannot be measured here. */
function mptcpAvailable(): true | string {
  try {
    execFileSync('sh', ['-c', 'command -v mptcpize'], { stdio: 'ignore' });
  } catch {
    return 'mptcpize not installed (apt-get install -y mptcpize)';
  }
  try {
    if (readFileSync('/proc/sys/net/mptcp/enabled', 'utf8').trim() !== '1') return 'net.mptcp.enabled is 0';
  } catch {
    return 'kernel without MPTCP';
  }
  return true;
}

/**
 * PEER-BENCH.md's recipe: MPTCP on in both namespaces, two subflows allowed,
 * the client's second address announced as a subflow endpoint and the
 * server's second address signalled (ADD_ADDR).
 */
async function setupMptcp(bl: BondingLab): Promise<void> {
  const { lab, cli, srv } = bl;
  const l1 = bl.linkAt(1).veth;
  for (const ns of [cli, srv]) {
    await lab.run(ns, 'sysctl', ['-qw', 'net.mptcp.enabled=1']);
    await lab.run(ns, 'ip', ['mptcp', 'limits', 'set', 'subflow', '2', 'add_addr_accepted', '2']);
  }
  await lab.run(cli, 'ip', ['mptcp', 'endpoint', 'add', l1.aAddr, 'dev', l1.aIf, 'subflow']);
  await lab.run(srv, 'ip', ['mptcp', 'endpoint', 'add', l1.bAddr, 'dev', l1.bIf, 'signal']);
}

/**
 * A bonded download (relayed links) with link `link` set down 3 s in; the
 * stall is the longest gap between received chunks after that instant, and
 * "resumed after" the time from the instant to the end of that gap.
 */
async function measureFailover(bl: BondingLab, link: number): Promise<{ link: number; resumedAfterMs: number; maxGapMs: number }> {
  const client = await bl.startClient({ first: 0, paths: [{ link: 1 }], extra: FAST_LIVENESS });
  const ac = new AbortController();
  let downAt = 0;
  try {
    const dl = bl.download(`/stream?bytes=${8 * 2 ** 30}`, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 3000));
    downAt = performance.now();
    await bl.lab.setLink(bl.cli, bl.linkAt(link).veth.aIf, false);
    await new Promise((r) => setTimeout(r, 4000));
    ac.abort();
    const r = await dl;
    let maxGapMs = 0;
    let resumedAfterMs = 0;
    for (let i = 1; i < r.times.length; i++) {
      const at = r.startedAt + (r.times[i] as number);
      if (at < downAt) continue;
      const gap = (r.times[i] as number) - (r.times[i - 1] as number);
      if (gap > maxGapMs) {
        maxGapMs = gap;
        resumedAfterMs = at - downAt;
      }
    }
    return { link, resumedAfterMs, maxGapMs };
  } finally {
    ac.abort();
    await client.stop();
    await bl.lab.setLink(bl.cli, bl.linkAt(link).veth.aIf, true);
  }
}

const f1 = (n: number): string => n.toFixed(1).padStart(7);
const f3 = (n: number): string => n.toFixed(3);

/** Prints the table `npm run bench -- bonding` shows. */
export function printBonding(r: BondingBenchResult): void {
  const row = (name: string, g: Goodput, extra = ''): void => {
    const cpu = g.cpu ? `  cpu client ${g.cpu.client.toFixed(2)} server ${g.cpu.server.toFixed(2)}` : '';
    console.log(`${name.padEnd(34)} ${f1(g.mbps)} Mbit/s  shares ${g.shares.map((s) => s.toFixed(2)).join('/')}${extra}${cpu}`);
  };
  const { relayed: rl, tbfOnly: t } = r;
  const sumR = rl.directA.mbps + rl.directB.mbps;
  const sumT = t.directA.mbps + t.directB.mbps;
  console.log(`## relayed links: tbf ${RATES.join(' + ')}, delay ${DELAYS.map((d) => `${d} ms`).join(' + ')} one-way (iperf3 -R, ${r.seconds} s)`);
  row('plain TCP, link A alone', rl.directA);
  row('plain TCP, link B alone', rl.directB);
  console.log(`${'sum of the links alone'.padEnd(34)} ${f1(sumR)} Mbit/s`);
  row('polytun, path A only', rl.pathA, `  ratio to plain A ${f3(rl.pathA.mbps / rl.directA.mbps)}`);
  row('polytun, path B only', rl.pathB, `  ratio to plain B ${f3(rl.pathB.mbps / rl.directB.mbps)}`);
  row('polytun bonded A+B', rl.bonded, `  efficiency ${f3(rl.bonded.mbps / sumR)}`);
  console.log(`goal: bonded efficiency >= 0.92 -> ${rl.bonded.mbps / sumR >= 0.92 ? 'met' : 'NOT met'}`);
  row('bonded, client streamWindow 8 MiB', rl.bondedBigWindow, `  efficiency ${f3(rl.bondedBigWindow.mbps / sumR)}  (check: well above the default row would mean the window limits)`);
  console.log(`## tbf-only links (no relays: equal RTTs; MPTCP subflows cannot cross a userspace relay)`);
  row('plain TCP, link A alone', t.directA);
  row('plain TCP, link B alone', t.directB);
  console.log(`${'sum of the links alone'.padEnd(34)} ${f1(sumT)} Mbit/s`);
  if (typeof t.mptcp === 'string') console.log(`${'kernel MPTCP (mptcpize iperf3)'.padEnd(34)} skipped: ${t.mptcp}`);
  else row('kernel MPTCP (mptcpize iperf3)', t.mptcp, `  efficiency ${f3(t.mptcp.mbps / sumT)}`);
  row('polytun bonded A+B', t.bonded, `  efficiency ${f3(t.bonded.mbps / sumT)}${typeof t.mptcp === 'string' ? '' : `  ratio to MPTCP ${f3(t.bonded.mbps / t.mptcp.mbps)}`}`);
  console.log(`## failover stall, relayed links, bonded download; liveness ${r.liveness} (client and server)`);
  for (const f of r.failover) {
    console.log(`link ${f.link === 0 ? 'A' : 'B'} set down: bytes flow again after ${f.resumedAfterMs.toFixed(0).padStart(5)} ms (longest gap ${f.maxGapMs.toFixed(0)} ms)`);
  }
  const worst = Math.max(...r.failover.map((f) => f.resumedAfterMs));
  console.log(`goal: failover stall < 1 s -> ${worst < 1000 ? 'met' : 'NOT met'} (worst ${worst.toFixed(0)} ms)`);
}
