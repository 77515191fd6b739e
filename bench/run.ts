/**
 * `npm run bench [NAME]`: every benchmark prints its figures beside a baseline
 * measured in the same run, as ratios (this machine varies ±15 % between runs).
 * BENCH_BYTES sets the transfer size (default 1 GiB).
 *
 * It prints the machine first (CPU, cores, each AEAD's speed) and writes
 * what it printed and its results as JSON to bench-results/ (or to
 * $BENCH_JSON), so figures from two machines or two commits can be told
 * apart and compared later.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { format } from 'node:util';
import { formatMachine, machineInfo } from './machine.js';
import { benchSession } from './session.js';

// Keep every printed line for the JSON file (the text is the report people read).
const printed: string[] = [];
const print = console.log.bind(console);
console.log = (...args: unknown[]): void => {
  printed.push(format(...args));
  print(...args);
};
const results: Record<string, unknown> = {};
const machine = machineInfo();
for (const line of formatMachine(machine)) console.log(line);

const gbit = (mbps: number): string => `${((mbps * 8) / 1000).toFixed(2)} Gbit/s`;
const bytes = Number(process.env.BENCH_BYTES ?? 1 << 30);
const only = process.argv[2];

if (!only || only === 'session') {
  console.log(`# session over loopback TCP (${(bytes / 2 ** 20).toFixed(0)} MiB per case, server in a child process)`);
  const r = await benchSession(bytes);
  results.session = r;
  const row = (name: string, v: number): void =>
    console.log(`${name.padEnd(28)} ${v.toFixed(0).padStart(6)} MB/s  ${gbit(v).padStart(14)}  ratio to raw ${(v / r.rawMBps).toFixed(3)}`);
  row('raw loopback TCP', r.rawMBps);
  row('session, 1 stream', r.oneStreamMBps);
  row('session, 8 streams', r.eightStreamsMBps);
  console.log(`goal: 1 stream >= 3 Gbit/s -> ${(r.oneStreamMBps * 8) / 1000 >= 3 ? 'met' : 'NOT met'}`);
}

if (!only || only === 'bonding') {
  const { benchBonding, bondingBenchUnavailable, printBonding } = await import('./bonding.js');
  const why = bondingBenchUnavailable();
  console.log('# bonding: two shaped links in a namespace lab (2:1 rates, 1:4 RTTs), beside plain TCP and kernel MPTCP');
  if (why) console.log(`skipped: ${why}`);
  else {
    const r = await benchBonding();
    results.bonding = r;
    printBonding(r);
  }
}

if (!only || only === 'gateway') {
  const { benchBulk, benchScale } = await import('./gateway.js');
  // BENCH_GATEWAY_ROUNDS: more rounds for steadier ratios (this VM's speed drifts ±20 % between rounds).
  const rounds = Math.max(1, Number(process.env.BENCH_GATEWAY_ROUNDS ?? 3));
  console.log(`# gateway: one bulk stream, client -L -> server -> sink, 4 processes (${(bytes / 2 ** 20 / rounds).toFixed(0)} MiB per case in ${rounds} interleaved rounds, median)`);
  const b = await benchBulk(bytes, rounds);
  results.gatewayBulk = b;
  const row = (name: string, v: number | undefined, runs: number[] | undefined, ref = b.ssV2rayMBps, refName = 'ss+v2ray'): void =>
    console.log(
      v === undefined
        ? `${name.padEnd(32)} not installed`
        : `${name.padEnd(32)} ${v.toFixed(0).padStart(6)} MB/s  ${gbit(v).padStart(14)}${ref ? `  x${(v / ref).toFixed(2)} vs ${refName}` : ''}  [rounds: ${(runs ?? []).map((r) => r.toFixed(0)).join(' ')} MB/s]`,
    );
  row('polytun over tcp', b.tcpMBps, b.samples.tcpMBps);
  row('polytun over wss', b.wssMBps, b.samples.wssMBps);
  row('shadowsocks (chacha20)', b.ssMBps, b.samples.ssMBps);
  row('shadowsocks + v2ray-plugin wss', b.ssV2rayMBps, b.samples.ssV2rayMBps);
  row('mtt-client -> polytun (mtt mode)', b.mttMBps, b.samples.mttMBps, b.mttRefMBps, 'mtt-mu-server');
  row('mtt-client -mux -> polytun', b.mttMuxMBps, b.samples.mttMuxMBps, b.mttRefMuxMBps, 'mtt-mu-server -mux');
  row('mtt-client -> mtt-mu-server', b.mttRefMBps, b.samples.mttRefMBps);
  row('mtt-client -mux -> mtt-mu-server', b.mttRefMuxMBps, b.samples.mttRefMuxMBps);
  if (b.mttMBps !== undefined && b.mttRefMBps !== undefined && b.mttMuxMBps !== undefined && b.mttRefMuxMBps !== undefined) {
    // Each round's pair ran back to back: the median of their ratios sees less of the machine's drift than a ratio of medians.
    const paired = (a: number[] | undefined, ref: number[] | undefined): string => {
      const rs = (a ?? []).map((v, i) => v / ((ref ?? [])[i] ?? NaN)).filter(Number.isFinite).sort((x, y) => x - y);
      return rs.length === 0 ? '?' : (rs[Math.floor(rs.length / 2)] as number).toFixed(2);
    };
    console.log(`mtt mode vs mtt-mu-server: plain x${(b.mttMBps / b.mttRefMBps).toFixed(2)}, -mux x${(b.mttMuxMBps / b.mttRefMuxMBps).toFixed(2)} (goal: both >= 1.0)`);
    console.log(`  median of per-round ratios: plain x${paired(b.samples.mttMBps, b.samples.mttRefMBps)}, -mux x${paired(b.samples.mttMuxMBps, b.samples.mttRefMuxMBps)}`);
  } else console.log('mtt rows: mtt-client / mtt-mu-server not found (PATH or $MTT_BIN_DIR); build them with scripts/build-mtt.sh from a mos-tls-tunnel checkout');
  console.log(`wss/tcp ratio ${(b.wssMBps / b.tcpMBps).toFixed(3)}`);
  console.log(`goal: wss >= 2x ss+v2ray -> ${b.ssV2rayMBps === undefined ? 'not measured (ss-v2ray-plugin not installed)' : b.wssMBps >= 2 * b.ssV2rayMBps ? 'met' : 'NOT met'}`);
  console.log('# gateway: 1,000 users x 1 wss session x 10 idle streams on one server process (VmRSS of the server)');
  const s = await benchScale(1000, 10);
  results.gatewayScale = s;
  console.log(`server RSS: ${s.rssBaseMiB.toFixed(1)} MiB with 1,000 users, ${s.rssSessionsMiB.toFixed(1)} MiB with ${s.sessions} sessions, ${s.rssStreamsMiB.toFixed(1)} MiB with ${s.streams} idle streams`);
  console.log(`per session ${s.perSessionKiB.toFixed(1)} KiB, per idle stream ${s.perIdleStreamKiB.toFixed(1)} KiB (incl. its relay socket to the target); ${s.sessions} wss handshakes in ${s.connectSeconds.toFixed(1)} s`);
  console.log(`goal: < 64 KiB per idle stream -> ${s.perIdleStreamKiB < 64 ? 'met' : 'NOT met'}`);
}

if (!only || only === 'dashboard') {
  const { benchDashboard, dashboardBenchUnavailable, printDashboard } = await import('./dashboard.js');
  const why = dashboardBenchUnavailable();
  console.log(`# dashboard: the server web dashboard's cost on the server with ${process.env.BENCH_DASHBOARD_SESSIONS ?? 1000} live wss sessions (Chromium, same run)`);
  if (why) console.log(`skipped: ${why}`);
  else {
    const r = await benchDashboard();
    results.dashboard = r;
    printDashboard(r);
  }
}

if (!only || only === 'proxy') {
  const { benchProxy, formatProxyBench } = await import('./proxy.js');
  const r = await benchProxy();
  results.proxy = r;
  for (const line of formatProxyBench(r)) console.log(line);
}

if (!only || only === 'vpn') {
  const { benchVpn, printVpn } = await import('./vpn.js');
  console.log('# vpn: iperf3 between two namespaces: veth, polytun --tun (TCP carrier), OpenVPN (UDP, chacha20), same run');
  const r = await benchVpn();
  results.vpn = r;
  if (r) printVpn(r);
}

if (!only || only === 'udp') {
  const { benchUdp } = await import('./udp.js');
  const { formatUdp } = await import('./udp-report.js');
  const r = await benchUdp();
  results.udp = r;
  for (const line of formatUdp(r)) console.log(line);
}

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const out = process.env.BENCH_JSON ?? `bench-results/${stamp}-${only ?? 'all'}.json`;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify({ at: new Date().toISOString(), bench: only ?? 'all', machine, results, printed }, null, 2)}\n`);
print(`results: ${out}`);
