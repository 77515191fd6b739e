/**
 * `npm run bench -- udp` (root only; issue 17): the udp carrier on a lossy,
 * rate-limited, long link, beside the tcp carrier, kcptun and plain TCP,
 * all measured in the same run.
 *
 *   ns a                          ns m                           ns b
 *   receiver (udp-traffic down)                                  target (udp-traffic serve)
 *   polytun client -L ─┐                                   ┌─ polytun server udp:// | tcp://
 *   kcptun-client      ├══ 10.78.0.1 ── impair bridge ── 10.78.0.2 ══┤ kcptun-server (default | fast3)
 *   plain TCP ─────────┘   rate, 25 ms, loss each way     └─ (plain TCP: straight to the target)
 *
 * The matrix: link rates 40 and 100 Mbit/s, 25 ms each way, random loss
 * 0/1/2/5/10 % each way and a Gilbert-Elliott cell (20 %, bursts of 4).
 * Per cell and column one transfer (a download by default: b sends), the
 * tunnel's processes started afresh, so no column inherits another's
 * congestion state or leftover packets. Goodput is the payload the
 * receiver got in a window (BENCH_UDP_OMIT s after its first byte,
 * BENCH_UDP_SECONDS long); wire bytes per useful byte are the bridge's
 * frame counters (polled every 100 ms, lined up with the receiver on the
 * shared monotonic clock) over the whole transfer, both what the hosts sent
 * into the bridge and what it forwarded, against every byte received (see
 * figures() in udp-report.ts for why not the window). The receiver stops
 * at the window's end: buffers are not drained (a plain TCP sender's 4 MiB
 * at 10 % loss would take minutes). TCP congestion control is set per column with a route metric
 * (`ip route … congctl`, on both hosts): the machine default here is BBR,
 * and a namespace may not pick CUBIC as its default (not in
 * tcp_allowed_congestion_control); the tcp carrier runs BENCH_UDP_TCP_CC
 * (default cubic, what most Linux hosts run), plain TCP both cubic and bbr.
 *
 * Then an interactive echo (64 bytes every 50 ms, its own connection
 * through the same tunnel) under a concurrent bulk transfer, for polytun
 * udp and kcptun fast3, in BENCH_UDP_ECHO_CELLS; and one stream on
 * loopback without impairment (in a namespace of its own), with the CPU
 * time of the tunnel's two processes per GB.
 *
 * Env: BENCH_UDP_SECONDS (10), BENCH_UDP_OMIT (1), BENCH_UDP_CELLS (all;
 * e.g. `40:2` or `40:*,100:ge`; `none`), BENCH_UDP_COLUMNS (all of
 * udp,tcp,kcptun-default,kcptun-tuned,tcp-cubic,tcp-bbr),
 * BENCH_UDP_ECHO_CELLS (40:2,100:2; `none`; only cells also selected),
 * BENCH_UDP_LOOPBACK (1; 0 = skip), BENCH_UDP_QUEUE_MS (100),
 * BENCH_UDP_TCP_CC (cubic), BENCH_UDP_DIRECTION (down | up),
 * BENCH_UDP_TRACE=1 (keep each transfer's timelines in the JSON),
 * BENCH_UDP_CLIENT_ARGS and BENCH_SERVER_ARGS (extra polytun flags).
 */
import { randomBytes } from 'node:crypto';
import { ensureImpairBuilt, ImpairLab, impairLabUnavailableReason, type ImpairInit } from '../test/helpers/impair-lab.js';
import { Lab, type LabProc } from '../test/lab/netns.js';
import { processCpuMs } from './peers.js';
import { buildDist } from './proxy.js';
import { BURST, COLUMNS, echoFigures, figures, selectCells, type BulkReport, type Cell, type Column, type EchoReport, type Outcome, type UdpBenchResult, type WirePoint } from './udp-report.js';
import { kcptunMissing, startKcptunClient, startKcptunServer, startPolytunClient, startPolytunServer, startTarget, TRAFFIC, waitForLog, type KcptunProfile } from './udp-peers.js';

const DELAY_MS = 25;
const PORT = { target: 5300, udp: 4433, tcp: 4434, kcptun: 29900, entry: 6000 } as const;
const KCPTUN: Partial<Record<Column, KcptunProfile>> = { 'kcptun-default': 'default', 'kcptun-tuned': 'tuned' };

/** The run's settings (see the file comment). */
interface Options {
  seconds: number;
  omit: number;
  cells: Cell[];
  columns: Column[];
  echoCells: string[];
  loopback: boolean;
  queueMs: number;
  tcpCc: string;
  direction: 'down' | 'up';
  trace: boolean;
}

function options(env = process.env): Options {
  const num = (name: string, dflt: number): number => {
    const v = Number(env[name] ?? dflt);
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name}: ${env[name]} is not a number >= 0`);
    return v;
  };
  const columns = (env.BENCH_UDP_COLUMNS ?? COLUMNS.join(',')).split(',').map((c) => c.trim()) as Column[];
  const bad = columns.filter((c) => !COLUMNS.includes(c));
  if (bad.length > 0) throw new RangeError(`BENCH_UDP_COLUMNS: unknown ${bad.join(', ')} (known: ${COLUMNS.join(', ')})`);
  const direction = env.BENCH_UDP_DIRECTION ?? 'down';
  if (direction !== 'down' && direction !== 'up') throw new RangeError(`BENCH_UDP_DIRECTION: ${direction} is not down or up`);
  const echo = env.BENCH_UDP_ECHO_CELLS ?? '40:2,100:2';
  return {
    seconds: num('BENCH_UDP_SECONDS', 10) || 10,
    omit: num('BENCH_UDP_OMIT', 1),
    cells: selectCells(env.BENCH_UDP_CELLS),
    columns,
    echoCells: echo === 'none' ? [] : echo.split(',').map((s) => s.trim()),
    loopback: env.BENCH_UDP_LOOPBACK !== '0',
    queueMs: num('BENCH_UDP_QUEUE_MS', 100),
    tcpCc: env.BENCH_UDP_TCP_CC ?? 'cubic',
    direction,
    trace: env.BENCH_UDP_TRACE === '1',
  };
}

const monotonicMs = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Where a column's traffic enters: a tunnel's -L port in a, or the target itself. */
interface Entry {
  host: string;
  port: number;
  /** The tunnel's processes (client first), stopped after the transfer. */
  procs: LabProc[];
}

/** One namespace pair to run columns in: the impair lab, or a lone namespace for loopback (a = b). */
interface Place {
  lab: Lab;
  a: string;
  b: string;
  /** Address of b as a seen from a. */
  bAddr: string;
  target: LabProc;
  /** The bridge, when there is one. */
  il?: ImpairLab;
}

/** Starts column `col`'s tunnel (server side in b, client side in a); plain TCP columns need none. */
async function startColumn(p: Place, col: Column, index: number): Promise<Entry> {
  const target = `127.0.0.1:${PORT.target}`;
  const entry = PORT.entry + index;
  const procs: LabProc[] = [];
  const kcp = KCPTUN[col];
  try {
    if (col === 'udp' || col === 'tcp') {
      const listen = col === 'udp' ? `udp://${p.bAddr}:${PORT.udp}` : `tcp://${p.bAddr}:${PORT.tcp}`;
      const server = await startPolytunServer(p.lab, p.b, [listen], target);
      procs.push(server.proc);
      server.proc.child.once('exit', server.cleanup);
      procs.unshift(await startPolytunClient(p.lab, p.a, server.links[0] as string, entry, target));
    } else if (kcp) {
      const port = PORT.kcptun + index;
      procs.push(await startKcptunServer(p.lab, p.b, kcp, `${p.bAddr}:${port}`, target));
      procs.unshift(await startKcptunClient(p.lab, p.a, kcp, entry, `${p.bAddr}:${port}`));
    } else return { host: p.bAddr, port: PORT.target, procs };
    return { host: '127.0.0.1', port: entry, procs };
  } catch (err) {
    for (const proc of procs) await proc.stop();
    throw err;
  }
}

async function stopColumn(e: Entry): Promise<void> {
  for (const p of e.procs) await p.stop(3000);
}

/**
 * Sets the congestion control of every TCP connection between a and b
 * (both ends: the sender's decides) with a route metric on the link's
 * subnet route, which connect() and accept() both read.
 */
async function setCongestion(p: Place, cc: string): Promise<void> {
  for (const ns of [p.a, p.b]) {
    const route = (await p.lab.run(ns, 'ip', ['-o', '-4', 'route', 'show', 'proto', 'kernel', 'scope', 'link'])).trim().split('\n')[0] ?? '';
    const m = /^(\S+) dev (\S+)(?: .*)? src (\S+)/.exec(route);
    if (!m) throw new RangeError(`no link route to set congctl on in ${ns}: '${route}'`);
    await p.lab.run(ns, 'ip', ['route', 'replace', m[1] as string, 'dev', m[2] as string, 'proto', 'kernel', 'scope', 'link', 'src', m[3] as string, 'congctl', cc]);
  }
}

/** Polls the bridge's counters every 100 ms until stopped. */
function pollWire(il: ImpairLab | undefined): { stop(): Promise<WirePoint[]> } {
  const points: WirePoint[] = [];
  let on = il !== undefined;
  const loop = (async () => {
    while (on && il) {
      const t0 = monotonicMs();
      const c = await il.counters();
      points.push({ at: (t0 + monotonicMs()) / 2, sent: c.ab.rx_bytes + c.ba.rx_bytes, forwarded: c.ab.tx_bytes + c.ba.tx_bytes, frames: { ab: c.ab.rx, ba: c.ba.rx } });
      await sleep(100);
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return points;
    },
  };
}

/** Waits until the bridge has carried under 20 kB in 300 ms (the last column's packets are gone), at most 10 s. */
async function quiet(il: ImpairLab | undefined): Promise<void> {
  if (!il) return;
  const moved = (c: Awaited<ReturnType<ImpairLab['counters']>>): number => c.ab.rx_bytes + c.ba.rx_bytes;
  let before = moved(await il.counters());
  for (const end = performance.now() + 10_000; performance.now() < end; ) {
    await sleep(300);
    const now = moved(await il.counters());
    if (now - before < 20_000) return;
    before = now;
  }
}

function lastJson<T>(out: string, kind: string): T {
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith(`{"kind":"${kind}"`));
  if (!line) throw new RangeError(`no ${kind} report in: ${out.slice(-500)}`);
  return JSON.parse(line) as T;
}

/**
 * One bulk transfer into `e`, its receiver stopping `omit + seconds` (and a
 * little) after its first byte; the bridge's counters polled meanwhile.
 */
async function bulk(p: Place, e: Entry, o: Options): Promise<{ report: BulkReport; wire: WirePoint[] }> {
  const stopMs = (o.omit + o.seconds) * 1000 + 300;
  const sendMs = stopMs + 5000;
  const timeoutMs = sendMs + stopMs + 20_000;
  const wire = pollWire(p.il);
  try {
    if (o.direction === 'down') {
      const out = await p.lab.run(p.a, process.execPath, [TRAFFIC, 'down', e.host, String(e.port), String(sendMs), String(stopMs)], { timeoutMs });
      return { report: lastJson<BulkReport>(out, 'bulk'), wire: await wire.stop() };
    }
    const tag = randomBytes(4).toString('hex');
    const sender = p.lab.run(p.a, process.execPath, [TRAFFIC, 'up', e.host, String(e.port), String(sendMs), String(stopMs), tag], { timeoutMs });
    const m = await waitForLog(p.target, new RegExp(`^\\{"kind":"bulk".*"tag":"${tag}"\\}$`, 'm'), timeoutMs);
    await sender.catch(() => undefined); // it ends when the target closes; its own figure is not needed
    return { report: JSON.parse(m[0]) as BulkReport, wire: await wire.stop() };
  } finally {
    await wire.stop();
  }
}

/** Runs one column in the current cell: its own tunnel, one transfer, the tunnel stopped again. */
async function runColumn(p: Place, col: Column, o: Options, rateMbit: number): Promise<Outcome> {
  const index = COLUMNS.indexOf(col);
  try {
    await setCongestion(p, col === 'tcp-cubic' ? 'cubic' : col === 'tcp-bbr' ? 'bbr' : o.tcpCc);
    const e = await startColumn(p, col, index);
    try {
      const { report, wire } = await bulk(p, e, o);
      return figures(report, o.omit * 1000, o.seconds * 1000, rateMbit, wire, o.trace);
    } finally {
      await stopColumn(e);
      await quiet(p.il);
    }
  } catch (err) {
    return { error: message(err) };
  }
}

function impairment(cell: Cell, queueMs: number): ImpairInit {
  return { delayMs: DELAY_MS, rateMbit: cell.rateMbit, queueMs, ...(cell.loss === 'ge' ? { burst: { p: BURST.p, r: BURST.r } } : { loss: cell.loss / 100 }) };
}

/** The matrix and the echo cells, in one impair lab. */
async function runLab(o: Options, columns: Column[], r: UdpBenchResult): Promise<void> {
  const il = await ImpairLab.create('udpbench', {}, { net: 78 });
  try {
    const target = await startTarget(il.lab, il.b, '0.0.0.0', PORT.target);
    const p: Place = { lab: il.lab, a: il.a, b: il.b, bAddr: il.bAddr, target, il };
    for (const cell of o.cells) {
      await il.set(impairment(cell, o.queueMs));
      const row: UdpBenchResult['cells'][number] = { ...cell, columns: {} };
      r.cells.push(row);
      for (const col of columns) {
        process.stderr.write(`udp bench: ${cell.key} ${col}…\n`);
        row.columns[col] = await runColumn(p, col, o, cell.rateMbit);
      }
    }
    for (const cell of o.cells.filter((c) => o.echoCells.includes(c.key))) {
      await il.set(impairment(cell, o.queueMs));
      for (const col of columns.filter((c) => c === 'udp' || c === 'kcptun-tuned')) {
        process.stderr.write(`udp bench: echo ${cell.key} ${col}…\n`);
        r.echo.push(await runEcho(p, cell, col, o));
      }
    }
  } finally {
    await il.destroy();
  }
}

/** Echo probes and a bulk transfer at once through one tunnel. */
async function runEcho(p: Place, cell: Cell, col: Column, o: Options): Promise<UdpBenchResult['echo'][number]> {
  try {
    await setCongestion(p, o.tcpCc);
    const e = await startColumn(p, col, COLUMNS.indexOf(col));
    try {
      const echoMs = (o.omit + o.seconds) * 1000;
      const [b, out] = await Promise.all([
        bulk(p, e, o),
        p.lab.run(p.a, process.execPath, [TRAFFIC, 'echo', e.host, String(e.port), String(echoMs), '50'], { timeoutMs: echoMs + 30_000 }),
      ]);
      const f = echoFigures(lastJson<EchoReport>(out, 'echo'), o.omit * 1000);
      const g = figures(b.report, o.omit * 1000, o.seconds * 1000, cell.rateMbit, b.wire);
      return { key: cell.key, column: col, baseRttMs: 2 * DELAY_MS, probes: f.probes, unanswered: f.unanswered, p50Ms: f.p50, p99Ms: f.p99, maxMs: f.max, bulkMbps: g.goodputMbps };
    } finally {
      await stopColumn(e);
      await quiet(p.il);
    }
  } catch (err) {
    return { key: cell.key, column: col, error: message(err) };
  }
}

/** One stream on a namespace's loopback, no bridge: Gbit/s and the tunnel's CPU per GB. */
async function runLoopback(o: Options, columns: Column[], r: UdpBenchResult): Promise<void> {
  const lab = new Lab('udplo');
  try {
    const ns = await lab.host('lo');
    const target = await startTarget(lab, ns, '127.0.0.1', PORT.target);
    const p: Place = { lab, a: ns, b: ns, bAddr: '127.0.0.1', target };
    for (const col of columns.filter((c) => c === 'udp' || c === 'kcptun-tuned' || c === 'tcp')) {
      process.stderr.write(`udp bench: loopback ${col}…\n`);
      try {
        const e = await startColumn(p, col, COLUMNS.indexOf(col));
        try {
          const cpu = (): number => e.procs.reduce((sum, q) => sum + (processCpuMs(q.child.pid ?? -1) ?? NaN), 0);
          const cpu0 = cpu();
          const { report } = await bulk(p, e, o);
          const cpuMs = cpu() - cpu0;
          const f = figures(report, o.omit * 1000, o.seconds * 1000, 1000, undefined, o.trace);
          r.loopback.push({ column: col, gbps: f.goodputMbps / 1000, cpuSecondsPerGB: cpuMs / 1000 / (report.total / 1e9), ...(f.trace ? { trace: f.trace } : {}) });
        } finally {
          await stopColumn(e);
        }
      } catch (err) {
        r.loopback.push({ column: col, error: message(err) });
      }
    }
  } finally {
    await lab.cleanup();
  }
}

/** Runs the benchmark (see the file comment); parts that cannot run here are listed in `skipped`. */
export async function benchUdp(): Promise<UdpBenchResult> {
  const o = options();
  const r: UdpBenchResult = { seconds: o.seconds, omitSeconds: o.omit, direction: o.direction, delayMs: DELAY_MS, queueMs: o.queueMs, tcpCc: o.tcpCc, cells: [], echo: [], loopback: [], skipped: {} };
  const noLab = impairLabUnavailableReason();
  if (noLab !== undefined) {
    r.skipped.all = noLab;
    return r;
  }
  ensureImpairBuilt();
  buildDist();
  const noKcptun = kcptunMissing();
  const columns = o.columns.filter((c) => {
    if (noKcptun && KCPTUN[c]) r.skipped[c] = noKcptun;
    return !(noKcptun && KCPTUN[c]);
  });
  if (o.cells.length > 0) await runLab(o, columns, r);
  if (o.loopback) await runLoopback(o, columns, r);
  return r;
}
