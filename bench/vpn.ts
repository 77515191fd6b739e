/**
 * VPN mode throughput (root only): iperf3 between two network namespaces
 *
 *   ns A (client) ── veth 10.241.1.2 ↔ 10.241.1.1 ── ns B (server)
 *
 * measured three ways in the same run, interleaved round by round:
 * - veth:    iperf3 straight over the veth (the physical limit of this box);
 * - polytun: `polytun client --tun` ↔ `polytun server --tun` (TCP carrier),
 *            iperf3 to the server's TUN address; checksum and TCP
 *            segmentation offload on both TUNs (the default, src/tun/vnet.ts);
 * - openvpn: OpenVPN 2.6 userspace, UDP, CHACHA20-POLY1305 (PEER-BENCH.md).
 * Each: TCP one stream, both directions, median of the rounds; and the rate
 * of 64-byte UDP datagrams (payload) that arrive, in packets per second.
 *
 * Env: BENCH_SECONDS (per measurement, default 5), BENCH_ROUNDS (default 3),
 * BENCH_VPN_MTU (polytun's TUN MTU, default 1400).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ensureBuilt, have } from '../test/helpers/cli.js';
import { SERVER_IP, VpnLab, type LabProc } from '../test/helpers/vpn-lab.js';
import { ensureOpenvpn, OVPN_SERVER_TUN, startOpenvpn } from './openvpn.js';

/** Figures of one path. */
export interface PathFigures {
  upMbps: number;
  downMbps: number;
  /** 64-byte UDP datagrams received per second. */
  smallPps: number;
}

/** What benchVpn measured; `openvpn` is undefined when it is not installed. */
export interface VpnBenchResult {
  veth: PathFigures;
  polytun: PathFigures;
  openvpn: PathFigures | undefined;
  mtu: number;
}

interface Target {
  name: keyof Omit<VpnBenchResult, 'mtu'>;
  host: string;
  port: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

async function iperf(lab: VpnLab, t: Target, seconds: number, args: string[]): Promise<Record<string, unknown>> {
  const out = await lab.exec(lab.c, 'iperf3', ['-c', t.host, '-p', String(t.port), '-t', String(seconds), '-J', ...args]);
  return JSON.parse(out) as Record<string, unknown>;
}

async function tcpMbps(lab: VpnLab, t: Target, seconds: number, reverse: boolean): Promise<number> {
  const j = await iperf(lab, t, seconds, ['-O', '1', ...(reverse ? ['-R'] : [])]);
  const end = j.end as { sum_received: { bits_per_second: number } };
  return end.sum_received.bits_per_second / 1e6;
}

async function udpSmallPps(lab: VpnLab, t: Target, seconds: number): Promise<number> {
  const j = await iperf(lab, t, seconds, ['-u', '-l', '64', '-b', '0']);
  const sum = (j.end as { sum: { packets: number; lost_packets: number; seconds: number } }).sum;
  return (sum.packets - sum.lost_packets) / sum.seconds;
}

/** Runs the benchmark; `log` receives progress lines. */
export async function benchVpn(log: (line: string) => void = console.log): Promise<VpnBenchResult | undefined> {
  if (process.getuid?.() !== 0) {
    log('vpn bench skipped: needs root (network namespaces, TUN devices)');
    return undefined;
  }
  if (!have('iperf3')) {
    log('vpn bench skipped: iperf3 not installed (apt-get install -y iperf3)');
    return undefined;
  }
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const mtu = Number(process.env.BENCH_VPN_MTU ?? 1400);
  ensureBuilt();
  const withOpenvpn = await ensureOpenvpn(log);
  if (!withOpenvpn) log('openvpn: not installed (the comparison is left out)');
  const dir = mkdtempSync(join(tmpdir(), 'polytun-bench-vpn-'));
  const lab = await VpnLab.create(randomBytes(3).toString('hex'), false);
  try {
    const server = lab.polytun(lab.s, 'polytun-server', [
      'server', '--listen', `tcp://${SERVER_IP}:4433`, '--data-dir', join(dir, 'data'), '--tun', '10.250.0.0/24', '--mtu', String(mtu),
      '--allow', '10.250.0.1', '--tun-name', 'ptb', '--log-level', 'warn',
    ]);
    const link = await server.waitFor('link', (l) => l.startsWith('polytun://'));
    const client = lab.polytun(lab.c, 'polytun-client', [
      'client', link, '--tun', '--tun-name', 'pta', '--no-socks', '--no-status', '--set', `vpn.stateDir=${join(dir, 'state')}`, '--log-format', 'json',
    ]);
    await client.waitLog('vpn up');
    const targets: Target[] = [{ name: 'veth', host: SERVER_IP, port: 5201 }, { name: 'polytun', host: '10.250.0.1', port: 5202 }];
    if (withOpenvpn) {
      await startOpenvpn(lab, dir, SERVER_IP);
      targets.push({ name: 'openvpn', host: OVPN_SERVER_TUN, port: 5203 });
    }
    const iperfServers: LabProc[] = targets.map((t) => lab.spawn(lab.s, `iperf3-${t.name}`, 'iperf3', ['-s', '--forceflush', '-B', t.host, '-p', String(t.port)]));
    await Promise.all(iperfServers.map((p) => p.waitFor('iperf3 listening', (l) => l.includes('Server listening'))));

    const samples = new Map<string, { up: number[]; down: number[]; pps: number[] }>(targets.map((t) => [t.name, { up: [], down: [], pps: [] }]));
    for (let r = 0; r < rounds; r++) {
      for (const t of targets) {
        const s = samples.get(t.name) as { up: number[]; down: number[]; pps: number[] };
        s.up.push(await tcpMbps(lab, t, seconds, false));
        s.down.push(await tcpMbps(lab, t, seconds, true));
        s.pps.push(await udpSmallPps(lab, t, seconds));
        log(`# round ${r + 1}/${rounds} ${t.name}: up ${s.up.at(-1)?.toFixed(0)} Mbit/s, down ${s.down.at(-1)?.toFixed(0)} Mbit/s, 64 B UDP ${s.pps.at(-1)?.toFixed(0)} pkt/s`);
      }
    }
    const fig = (name: string): PathFigures | undefined => {
      const s = samples.get(name);
      return s ? { upMbps: median(s.up), downMbps: median(s.down), smallPps: median(s.pps) } : undefined;
    };
    const stats = await client.stop('SIGTERM').then(() => client.logs().find((l) => l.msg === 'vpn closed; routing restored'));
    if (stats) log(`# polytun client counters: ${JSON.stringify({ sent: stats.sent, received: stats.received, dropped: stats.dropped, superPackets: stats.superPackets })}`);
    return { veth: fig('veth') as PathFigures, polytun: fig('polytun') as PathFigures, openvpn: fig('openvpn'), mtu };
  } finally {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints the figures as bench/run.ts does for the other benchmarks. */
export function printVpn(r: VpnBenchResult, log: (line: string) => void = console.log): void {
  const g = (mbps: number): string => `${(mbps / 1000).toFixed(2)} Gbit/s`.padStart(12);
  const row = (name: string, f: PathFigures | undefined): void => {
    if (!f) return log(`${name.padEnd(28)} not installed`);
    const o = r.openvpn;
    const vs = o ? `  vs openvpn: up x${(f.upMbps / o.upMbps).toFixed(2)} down x${(f.downMbps / o.downMbps).toFixed(2)} 64B x${(f.smallPps / o.smallPps).toFixed(2)}` : '';
    log(`${name.padEnd(28)} up ${g(f.upMbps)}  down ${g(f.downMbps)}  64 B UDP ${f.smallPps.toFixed(0).padStart(7)} pkt/s  up/veth ${(f.upMbps / r.veth.upMbps).toFixed(3)}${vs}`);
  };
  row('veth, no VPN', r.veth);
  row(`polytun VPN (TCP, MTU ${r.mtu})`, r.polytun);
  row('OpenVPN (UDP, chacha20)', r.openvpn);
  if (r.openvpn) {
    const ratio = Math.min(r.polytun.upMbps / r.openvpn.upMbps, r.polytun.downMbps / r.openvpn.downMbps);
    log(`goal: polytun >= 2x OpenVPN TCP throughput in both directions (worse direction x${ratio.toFixed(2)}) -> ${ratio >= 2 ? 'met' : 'NOT met'}`);
  } else log('goal: polytun >= 2x OpenVPN -> not measured (openvpn not installed)');
}
