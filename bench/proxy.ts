/**
 * The proxy path, whole: the real `polytun server` and `polytun client`
 * processes (built dist/), measured with iperf3 beside raw loopback and
 * shadowsocks-libev in the same run:
 *
 * ```
 *   raw:         iperf3 -c ──────────────────────────────────────────────▶ iperf3 -s
 *   polytun:     iperf3 -c ─▶ client -L ══ session over TCP ══▶ server ──▶ iperf3 -s
 *   shadowsocks: iperf3 -c ─▶ ss-tunnel ══ chacha20-ietf-poly1305 ══▶ ss-server ─▶ iperf3 -s
 * ```
 *
 * Throughput: single stream, BENCH_SECONDS (default 5) per run, BENCH_RUNS
 * (default 3) runs per path and direction, interleaved, median. Latency:
 * BENCH_CONNS (default 1000) sequential fresh TCP connections, each a 64-byte
 * echo, through each path, and through bench/floor-relay.ts (Node's floor for
 * this design); each relaying path also reports its two processes' CPU per
 * connection, which bounds the sequential loop on a small machine.
 * BENCH_CPU_PROF=1 (or =DIR) writes .cpuprofile files of the two polytun
 * processes to .scratch/prof (or DIR).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../test/helpers/cli.js';
import { BenchPeerError, haveShadowsocks, processCpuMs, runIperf, SS_METHOD, startIperfServer, startPeer, startShadowsocks, which, type Peer } from './peers.js';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin/polytun.js');

/** Extra `polytun server` flags from BENCH_SERVER_ARGS, e.g. `--cipher chacha20-poly1305` to compare commits across the cipher negotiation. */
export function benchServerArgs(): string[] {
  return (process.env.BENCH_SERVER_ARGS ?? '').split(' ').filter((a) => a !== '');
}

/** The three ways from the iperf3 client to the iperf3 server. */
export type ProxyPath = 'raw' | 'polytun' | 'shadowsocks';
const PATHS: readonly ProxyPath[] = ['raw', 'polytun', 'shadowsocks'];
const LABEL: Record<ProxyPath, string> = { raw: 'raw loopback (direct)', polytun: 'polytun -L (tcp carrier)', shadowsocks: `shadowsocks-libev ${SS_METHOD}` };
/** Latency is also measured through bench/floor-relay.ts: Node's floor for polytun's design (plaintext, one carrier). */
export type LatencyPath = ProxyPath | 'floor';
const LATENCY_PATHS: readonly LatencyPath[] = [...PATHS, 'floor'];
const LATENCY_LABEL: Record<LatencyPath, string> = { ...LABEL, raw: 'direct (no proxy)', floor: 'floor: minimal Node mux relay, plaintext' };

/** Options of {@link benchProxy}. */
export interface ProxyBenchInit {
  /** iperf3 -t. @default BENCH_SECONDS or 5 */
  seconds?: number;
  /** Runs per path and direction. @default BENCH_RUNS or 3 */
  runs?: number;
  /** Fresh connections per path for the latency figures. @default BENCH_CONNS or 1000 */
  connections?: number;
  /** Profile the polytun processes into this folder (`node --cpu-prof`). @default BENCH_CPU_PROF=1 → .scratch/prof, =DIR → DIR, unset → none */
  cpuProfDir?: string;
}

/** Latency percentiles of one path, in milliseconds. */
export interface LatencyFigures {
  p50: number;
  p90: number;
  p99: number;
  /**
   * CPU time (user + system) the path's two relay processes spent per
   * connection, in milliseconds, or undefined where /proc is not readable.
   * The loop is sequential on a small machine, so this sum (plus the
   * measuring and echo processes' share) bounds how fast it can go.
   */
  relayCpuMs?: number;
}

/** What {@link benchProxy} measured; a path is missing when its peer is not installed. */
export interface ProxyBenchResult {
  seconds: number;
  runs: number;
  connections: number;
  /** Per path: received Gbit/s of every run, client → server ('up') and server → client ('down', iperf3 -R). */
  gbps: Partial<Record<ProxyPath, { up: number[]; down: number[] }>>;
  latency: Partial<Record<LatencyPath, LatencyFigures>>;
  /** Why a path was left out. */
  missing: Partial<Record<LatencyPath, string>>;
}

const envNumber = (name: string, dflt: number): number => {
  const v = Number(process.env[name] ?? dflt);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

/** Compiles src/ into dist/. tsc emits even when files being edited elsewhere have type errors; we need only the output. */
export function buildDist(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { encoding: 'utf8' });
  if (!existsSync(join(ROOT, 'dist/cli/entry.js'))) throw new BenchPeerError(`build failed:\n${r.stdout}${r.stderr}`);
}

/** The 64-byte echo target, in its own process so serving it costs the measuring loop nothing. */
const ECHO_SRC = `
const net = require('node:net');
const srv = net.createServer({ noDelay: true }, (s) => { s.on('error', () => s.destroy()); s.pipe(s); });
srv.listen(0, '127.0.0.1', () => console.log('echo ' + srv.address().port));
process.on('SIGTERM', () => process.exit(0));`;

/** Fresh connection, 64 bytes out, 64 bytes back; milliseconds from connect() to the last byte. */
function echoOnce(port: number, msg: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let got = 0;
    s.once('connect', () => s.write(msg));
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got < msg.length) return;
      const ms = performance.now() - t0;
      s.destroy();
      resolve(ms);
    });
    s.once('error', reject);
    s.once('close', () => reject(new BenchPeerError(`echo via port ${port}: closed after ${got} of ${msg.length} bytes`)));
  });
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** Sum of {@link processCpuMs} over `pids`, or undefined if any is unknown or unreadable. */
function cpuSum(pids: readonly (number | undefined)[]): number | undefined {
  let sum = 0;
  for (const pid of pids) {
    const ms = pid === undefined ? undefined : processCpuMs(pid);
    if (ms === undefined) return undefined;
    sum += ms;
  }
  return sum;
}

/**
 * Sequential fresh-connection echoes through each port, interleaved in
 * blocks of 100 so drift hits every path alike; `relayPids` are the
 * processes whose CPU is charged to a path.
 */
async function measureLatency(ports: Partial<Record<LatencyPath, number>>, relayPids: Partial<Record<LatencyPath, (number | undefined)[]>>, n: number): Promise<Partial<Record<LatencyPath, LatencyFigures>>> {
  const msg = Buffer.alloc(64, 0x61);
  const samples: Partial<Record<LatencyPath, number[]>> = {};
  const cpu: Partial<Record<LatencyPath, number>> = {};
  const paths = LATENCY_PATHS.filter((p) => ports[p] !== undefined);
  for (const p of paths) for (let i = 0; i < 20; i++) await echoOnce(ports[p] as number, msg); // warm-up
  for (let done = 0; done < n; done += 100) {
    for (const p of paths) {
      const list = (samples[p] ??= []);
      const pids = relayPids[p] ?? [];
      const before = cpuSum(pids);
      for (let i = 0; i < Math.min(100, n - done); i++) list.push(await echoOnce(ports[p] as number, msg));
      const after = cpuSum(pids);
      if (pids.length > 0 && before !== undefined && after !== undefined) cpu[p] = (cpu[p] ?? 0) + after - before;
      else cpu[p] = NaN;
    }
  }
  const out: Partial<Record<LatencyPath, LatencyFigures>> = {};
  for (const p of paths) {
    const s = (samples[p] ?? []).sort((a, b) => a - b);
    const c = cpu[p];
    out[p] = { p50: percentile(s, 0.5), p90: percentile(s, 0.9), p99: percentile(s, 0.99), ...(c !== undefined && Number.isFinite(c) ? { relayCpuMs: c / s.length } : {}) };
  }
  return out;
}

/** Starts bench/floor-relay.ts as a client/server pair forwarding to `targetPort`; resolves with its entry port. */
async function startFloor(targetPort: number): Promise<{ peers: Peer[]; entry: number }> {
  const script = join(ROOT, 'bench/floor-relay.ts');
  const peers: Peer[] = [];
  try {
    const server = await startPeer('floor relay server', process.execPath, ['--import', 'tsx', script, 'server', '0', String(targetPort)], /^floor \d+$/);
    peers.push(server);
    const client = await startPeer('floor relay client', process.execPath, ['--import', 'tsx', script, 'client', '0', server.readyLine.split(' ')[1] as string], /^floor \d+$/);
    peers.push(client);
    return { peers, entry: Number(client.readyLine.split(' ')[1]) };
  } catch (err) {
    await Promise.all(peers.map((p) => p.stop()));
    throw err;
  }
}

/** Starts the polytun server and a client with -L forwards to `iperfPort` and `echoPort`. */
async function startPolytun(iperfPort: number, echoPort: number, profDir: string | undefined): Promise<{ peers: Peer[]; iperfEntry: number; echoEntry: number; dataDir: string }> {
  const node = [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), BIN];
  const dataDir = mkdtempSync(join(tmpdir(), 'polytun-bench-'));
  const peers: Peer[] = [];
  try {
    const server = await startPeer('polytun server', process.execPath, [...node, 'server', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dataDir, '--allow', '127.0.0.1', ...benchServerArgs()], /^polytun:\/\//);
    peers.push(server);
    const [iperfEntry, echoEntry] = [await freePort(), await freePort()];
    // The client logs "… ready" lines once every front listens; the echo forward is the last one.
    const client = await startPeer('polytun client', process.execPath, [
      ...node, 'client', server.readyLine, '--no-socks', '--no-status',
      '-L', `127.0.0.1:${iperfEntry}:127.0.0.1:${iperfPort}`,
      '-L', `127.0.0.1:${echoEntry}:127.0.0.1:${echoPort}`,
    ], new RegExp(`forward ready listen="127\\.0\\.0\\.1:${echoEntry} `));
    peers.push(client);
    return { peers, iperfEntry, echoEntry, dataDir };
  } catch (err) {
    await Promise.all(peers.map((p) => p.stop()));
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** Runs the whole benchmark (see the file comment). */
export async function benchProxy(init: ProxyBenchInit = {}): Promise<ProxyBenchResult> {
  const seconds = init.seconds ?? envNumber('BENCH_SECONDS', 5);
  const runs = init.runs ?? envNumber('BENCH_RUNS', 3);
  const connections = init.connections ?? envNumber('BENCH_CONNS', 1000);
  const prof = process.env.BENCH_CPU_PROF;
  const profDir = init.cpuProfDir ?? (prof ? (prof === '1' ? join(ROOT, '.scratch/prof') : resolve(prof)) : undefined);
  const result: ProxyBenchResult = { seconds, runs, connections, gbps: {}, latency: {}, missing: {} };
  if (!which('iperf3')) {
    for (const p of PATHS) result.missing[p] = 'iperf3 not installed (bash scripts/install-bench-deps.sh)';
    return result;
  }
  buildDist();
  const peers: Peer[] = [];
  let dataDir: string | undefined;
  try {
    // One iperf3 server per path: a relay that is slow to close its side of
    // the last test keeps only its own server busy.
    const iperf = { raw: await freePort(), polytun: await freePort(), shadowsocks: await freePort() };
    for (const port of Object.values(iperf)) peers.push(await startIperfServer(port));
    const echo = await startPeer('echo server', process.execPath, ['-e', ECHO_SRC], /^echo \d+$/);
    peers.push(echo);
    const echoPort = Number(echo.readyLine.split(' ')[1]);
    const pt = await startPolytun(iperf.polytun, echoPort, profDir);
    peers.push(...pt.peers);
    dataDir = pt.dataDir;
    const iperfPorts: Partial<Record<ProxyPath, number>> = { raw: iperf.raw, polytun: pt.iperfEntry };
    const echoPorts: Partial<Record<LatencyPath, number>> = { raw: echoPort, polytun: pt.echoEntry };
    const relayPids: Partial<Record<LatencyPath, (number | undefined)[]>> = { polytun: pt.peers.map((p) => p.child.pid) };
    const floor = await startFloor(echoPort);
    peers.push(...floor.peers);
    echoPorts.floor = floor.entry;
    relayPids.floor = floor.peers.map((p) => p.child.pid);
    if (haveShadowsocks()) {
      const [ssPort, ssIperf, ssEcho] = [await freePort(), await freePort(), await freePort()];
      const ss = await startShadowsocks(ssPort, [{ listen: ssIperf, target: iperf.shadowsocks }, { listen: ssEcho, target: echoPort }]);
      peers.push(...ss);
      iperfPorts.shadowsocks = ssIperf;
      echoPorts.shadowsocks = ssEcho;
      // ss-server and the echo forward's ss-tunnel (the iperf3 one idles).
      relayPids.shadowsocks = [ss[0]?.child.pid, ss[2]?.child.pid];
    } else {
      result.missing.shadowsocks = 'not installed (bash scripts/install-bench-deps.sh)';
    }

    const paths = PATHS.filter((p) => iperfPorts[p] !== undefined);
    for (let run = 1; run <= runs; run++) {
      for (const dir of ['up', 'down'] as const) {
        for (const p of paths) {
          process.stderr.write(`proxy bench: run ${run}/${runs}, ${p} ${dir}…\n`);
          const r = await runIperf(iperfPorts[p] as number, seconds, dir === 'down');
          const row = (result.gbps[p] ??= { up: [], down: [] });
          row[dir].push(r.bitsPerSecond / 1e9);
        }
      }
    }
    process.stderr.write(`proxy bench: ${connections} fresh connections per path…\n`);
    result.latency = await measureLatency(echoPorts, relayPids, connections);
  } finally {
    // Reverse order: clients before their servers (a clean polytun exit also writes its CPU profile).
    for (const p of peers.reverse()) await p.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
  return result;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

/** The report lines `npm run bench -- proxy` prints. */
export function formatProxyBench(r: ProxyBenchResult): string[] {
  const out: string[] = [];
  const med = (p: ProxyPath, d: 'up' | 'down'): number | undefined => (r.gbps[p] ? median(r.gbps[p][d]) : undefined);
  const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
  out.push(`# proxy: iperf3 through each path, 1 stream, ${r.seconds} s, median of ${r.runs} (Gbit/s; runs in brackets)`);
  out.push(`${'path'.padEnd(44)} ${'up (client->server)'.padEnd(30)} down (iperf3 -R)`);
  for (const p of PATHS) {
    const g = r.gbps[p];
    if (!g) {
      out.push(`${LABEL[p].padEnd(44)} ${r.missing[p] ?? 'not measured'}`);
      continue;
    }
    const cell = (xs: number[]): string => `${median(xs).toFixed(2).padStart(6)} [${xs.map((x) => x.toFixed(2)).join(' ')}]`;
    out.push(`${LABEL[p].padEnd(44)} ${cell(g.up).padEnd(30)} ${cell(g.down)}`);
  }
  for (const d of ['up', 'down'] as const) {
    out.push(`${d.padEnd(4)} polytun / raw ${ratio(med('polytun', d), med('raw', d))}, polytun / shadowsocks ${ratio(med('polytun', d), med('shadowsocks', d))}, shadowsocks / raw ${ratio(med('shadowsocks', d), med('raw', d))}`);
  }
  const goal = (d: 'up' | 'down'): string => {
    const pt = med('polytun', d);
    const ss = med('shadowsocks', d);
    if (pt === undefined || ss === undefined) return `${d}: n/a (shadowsocks ${r.missing.shadowsocks ?? 'missing'})`;
    return `${d}: ${(pt / ss).toFixed(2)} -> ${pt / ss >= 1.3 ? 'met' : 'NOT met'}`;
  };
  out.push(`goal: polytun / shadowsocks >= 1.3 -> ${goal('up')}; ${goal('down')}`);
  out.push(`# new-connection latency: ${r.connections} sequential fresh TCP connections per path, 64-byte echo each (ms)`);
  out.push(`${'path'.padEnd(44)} ${'p50'.padStart(7)} ${'p90'.padStart(7)} ${'p99'.padStart(7)}  relay CPU ms/conn (both processes)`);
  for (const p of LATENCY_PATHS) {
    const l = r.latency[p];
    const label = LATENCY_LABEL[p];
    if (!l) out.push(`${label.padEnd(44)} ${r.missing[p] ?? 'not measured'}`);
    else out.push(`${label.padEnd(44)} ${l.p50.toFixed(3).padStart(7)} ${l.p90.toFixed(3).padStart(7)} ${l.p99.toFixed(3).padStart(7)}  ${l.relayCpuMs === undefined ? (p === 'raw' ? '-' : 'n/a') : l.relayCpuMs.toFixed(3)}`);
  }
  const lp = r.latency.polytun;
  const ls = r.latency.shadowsocks;
  out.push(`latency polytun / shadowsocks: p50 ${ratio(lp?.p50, ls?.p50)}, p90 ${ratio(lp?.p90, ls?.p90)}, p99 ${ratio(lp?.p99, ls?.p99)} (lower is better)`);
  const lf = r.latency.floor;
  out.push(`latency floor / shadowsocks: p50 ${ratio(lf?.p50, ls?.p50)}; relay CPU per connection polytun / shadowsocks ${ratio(lp?.relayCpuMs, ls?.relayCpuMs)}, floor / shadowsocks ${ratio(lf?.relayCpuMs, ls?.relayCpuMs)}`);
  return out;
}
