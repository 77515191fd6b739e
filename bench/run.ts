/**
 * `npm run bench`: every benchmark prints its figures beside a baseline
 * measured in the same run, as ratios (this machine varies ±15 % between runs).
 * BENCH_BYTES sets the transfer size (default 1 GiB).
 */
import { benchSession } from './session.js';

const gbit = (mbps: number): string => `${((mbps * 8) / 1000).toFixed(2)} Gbit/s`;
const bytes = Number(process.env.BENCH_BYTES ?? 1 << 30);
const only = process.argv[2];

if (!only || only === 'session') {
  console.log(`# session over loopback TCP (${(bytes / 2 ** 20).toFixed(0)} MiB per case, server in a child process)`);
  const r = await benchSession(bytes);
  const row = (name: string, v: number): void =>
    console.log(`${name.padEnd(28)} ${v.toFixed(0).padStart(6)} MB/s  ${gbit(v).padStart(14)}  ratio to raw ${(v / r.rawMBps).toFixed(3)}`);
  row('raw loopback TCP', r.rawMBps);
  row('session, 1 stream', r.oneStreamMBps);
  row('session, 8 streams', r.eightStreamsMBps);
  console.log(`goal: 1 stream >= 3 Gbit/s -> ${(r.oneStreamMBps * 8) / 1000 >= 3 ? 'met' : 'NOT met'}`);
}
