/**
 * What `npm run bench -- udp` (bench/udp.ts) measures, how its figures are
 * taken from the raw reports, and the lines it prints: one table per link
 * rate, the ratios issue 17's goals name, the echo and loopback figures,
 * and a goal line each.
 */

/** The paths measured side by side in every cell. */
export type Column = 'udp' | 'tcp' | 'kcptun-default' | 'kcptun-tuned' | 'tcp-cubic' | 'tcp-bbr';
export const COLUMNS: readonly Column[] = ['udp', 'tcp', 'kcptun-default', 'kcptun-tuned', 'tcp-cubic', 'tcp-bbr'];

/** A column's heading; `tcpCc` is the congestion control the polytun tcp carrier ran with. */
export function columnLabel(c: Column, tcpCc: string): string {
  return { udp: 'polytun udp', tcp: `polytun tcp (${tcpCc})`, 'kcptun-default': 'kcptun default', 'kcptun-tuned': 'kcptun fast3', 'tcp-cubic': 'TCP cubic', 'tcp-bbr': 'TCP bbr' }[c];
}

/** Random loss in percent each way, or 'ge': Gilbert-Elliott bursts (see BURST). */
export type Loss = number | 'ge';
export const RATES = [40, 100] as const;
export const LOSSES: readonly Loss[] = [0, 1, 2, 5, 10, 'ge'];
/**
 * The burst cell: Gilbert-Elliott with every packet lost in the bad state,
 * P(good→bad) 0.0625 and P(bad→good) 0.25, so 20 % of packets are lost
 * (p / (p + r)) in runs of 4 on average.
 */
export const BURST = { p: 0.0625, r: 0.25 } as const;

/** One link setting of the matrix: `key` is what BENCH_UDP_CELLS names (`40:2`, `100:ge`). */
export interface Cell {
  key: string;
  rateMbit: number;
  loss: Loss;
}

const lossText = (l: Loss): string => (l === 'ge' ? `GE ${((100 * BURST.p) / (BURST.p + BURST.r)).toFixed(0)} %` : `${l} %`);

/**
 * The cells a spec names: undefined or 'all' → the whole matrix; 'none' →
 * none; else comma-separated RATE:LOSS keys, each RATE or LOSS may be `*`.
 */
export function selectCells(spec: string | undefined): Cell[] {
  const all: Cell[] = RATES.flatMap((rateMbit) => LOSSES.map((loss) => ({ key: `${rateMbit}:${loss}`, rateMbit, loss })));
  if (spec === undefined || spec.trim() === '' || spec === 'all') return all;
  if (spec === 'none') return [];
  const wanted = spec.split(',').map((s) => s.trim().split(':'));
  const unknown = wanted.filter(([r, l]) => !all.some((c) => (r === '*' || String(c.rateMbit) === r) && (l === '*' || String(c.loss) === l)));
  if (unknown.length > 0) throw new RangeError(`BENCH_UDP_CELLS: no cell ${unknown.map((w) => w.join(':')).join(', ')} (rates ${RATES.join('/')}, losses ${LOSSES.join('/')})`);
  return all.filter((c) => wanted.some(([r, l]) => (r === '*' || String(c.rateMbit) === r) && (l === '*' || String(c.loss) === l)));
}

/** What a bulk receiver of bench/udp-traffic.mjs prints. */
export interface BulkReport {
  kind: 'bulk';
  /** 'stop' when it counted its whole time; else why it stopped early. */
  how: string;
  total: number;
  /** Monotonic ms of the first byte. */
  first: number;
  /** [ms since the first byte, bytes so far]. */
  samples: Array<[number, number]>;
}

/** The value of a piecewise linear function given by points [x, y] sorted by x, at `x` (flat beyond the ends). */
export function interpolate(points: ReadonlyArray<readonly [number, number]>, x: number): number {
  if (points.length === 0) return 0;
  const firstPoint = points[0] as readonly [number, number];
  if (x <= firstPoint[0]) return firstPoint[1];
  for (let i = 1; i < points.length; i++) {
    const [x1, y1] = points[i] as readonly [number, number];
    if (x <= x1) {
      const [x0, y0] = points[i - 1] as readonly [number, number];
      return x1 === x0 ? y1 : y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
    }
  }
  return (points[points.length - 1] as readonly [number, number])[1];
}

/** Bridge bytes so far at a monotonic instant: `sent` into it by both hosts, `forwarded` out of it. */
export interface WirePoint {
  at: number;
  sent: number;
  forwarded: number;
  /** Frames into the bridge so far from a (`ab`) and from b (`ba`), for traces. */
  frames: { ab: number; ba: number };
}

/** One column's figures in one cell. */
export interface Figures {
  goodputMbps: number;
  /** Goodput over the link rate. */
  share: number;
  /** Frame bytes both hosts sent into the bridge, per payload byte the receiver got (whole transfer). */
  wireSent: number;
  /** Frame bytes the bridge forwarded (after loss and queue drops), per payload byte (whole transfer). */
  wireForwarded: number;
  /** Payload bytes the receiver got in the goodput window. */
  usefulBytes: number;
  /** The receiver's `how` when it stopped before the window ended (a reset, a stall). */
  cutShort?: string;
  /** The raw timelines, with BENCH_UDP_TRACE=1: the receiver's [ms, bytes] and the bridge's counters. */
  trace?: { first: number; samples: Array<[number, number]>; wire: WirePoint[] | undefined };
}

/** A column's outcome: figures, or why there are none. */
export type Outcome = Figures | { error: string };

/**
 * The figures of one transfer. Goodput: payload bytes the receiver got
 * between `omitMs` and `omitMs + windowMs` after its first byte. Wire bytes
 * per useful byte: over the whole transfer, from the bridge's first point
 * (polled before the transfer began) to the receiver's last sample, against
 * every byte it got. A window would do for a steady flow, but a flow that
 * stalls delivers in the window bytes that crossed before it (held for a
 * gap to fill), and the ratio fell below 1; over the whole transfer the
 * error is at most what was in flight at the end (under 2 % here).
 * `wire` undefined: no bridge, as on loopback.
 */
export function figures(r: BulkReport, omitMs: number, windowMs: number, rateMbit: number, wire?: WirePoint[], trace = false): Figures {
  const useful = interpolate(r.samples, omitMs + windowMs) - interpolate(r.samples, omitMs);
  const goodputMbps = (useful * 8) / (windowMs / 1000) / 1e6;
  const last = r.samples.at(-1) ?? [0, 0];
  const perUseful = (get: (p: WirePoint) => number): number => {
    const start = wire?.[0];
    if (!wire || !start) return NaN;
    return (interpolate(wire.map((p) => [p.at, get(p)] as const), r.first + last[0]) - get(start)) / last[1];
  };
  return {
    goodputMbps,
    share: goodputMbps / rateMbit,
    wireSent: perUseful((p) => p.sent),
    wireForwarded: perUseful((p) => p.forwarded),
    usefulBytes: useful,
    ...(r.how !== 'stop' && last[0] < omitMs + windowMs ? { cutShort: `${r.how} after ${(last[0] / 1000).toFixed(1)} s` } : {}),
    ...(trace ? { trace: { first: r.first, samples: r.samples, wire } } : {}),
  };
}

/** Interactive echo under a concurrent bulk transfer, one column in one cell. */
export interface EchoFigures {
  key: string;
  column: Column;
  /** The link's RTT with an empty queue (both one-way delays). */
  baseRttMs: number;
  probes: number;
  /** Probes with no answer by the end (counted at their age then). */
  unanswered: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  bulkMbps: number;
}

/** What the echo client prints. */
export interface EchoReport {
  kind: 'echo';
  sentAt: number[];
  rtts: number[];
  outstanding: number[];
}

/** Round trips of the probes sent from `omitMs` on; unanswered ones count with their age at the end (a lower bound). */
export function echoFigures(e: EchoReport, omitMs: number): { probes: number; unanswered: number; p50: number; p99: number; max: number } {
  const all = [...e.rtts, ...e.outstanding];
  const kept = all.filter((_, i) => (e.sentAt[i] ?? 0) >= omitMs).sort((a, b) => a - b);
  const unanswered = e.outstanding.filter((_, i) => (e.sentAt[e.rtts.length + i] ?? 0) >= omitMs).length;
  const q = (p: number): number => kept[Math.min(kept.length - 1, Math.ceil(p * kept.length) - 1)] ?? NaN;
  return { probes: kept.length, unanswered, p50: q(0.5), p99: q(0.99), max: kept.at(-1) ?? NaN };
}

/** One loopback column: one stream, no impairment. */
export interface LoopbackFigures {
  column: Column;
  gbps: number;
  /** User + system CPU seconds of the tunnel's client and server processes per 10^9 payload bytes. */
  cpuSecondsPerGB: number;
  trace?: Figures['trace'];
}

/** Everything benchUdp measured, and what it left out and why. */
export interface UdpBenchResult {
  seconds: number;
  omitSeconds: number;
  /** 'down': b (behind the server) sends, as a download; 'up': a sends. */
  direction: 'down' | 'up';
  delayMs: number;
  queueMs: number;
  /** Congestion control of the polytun tcp carrier's connection. */
  tcpCc: string;
  cells: Array<Cell & { columns: Partial<Record<Column, Outcome>> }>;
  echo: Array<EchoFigures | { key: string; column: Column; error: string }>;
  loopback: Array<LoopbackFigures | { column: Column; error: string }>;
  /** Parts or columns left out, and why. */
  skipped: Record<string, string>;
}

const isFigures = (o: Outcome | undefined): o is Figures => o !== undefined && 'goodputMbps' in o;
const ratio = (a: Outcome | undefined, b: Outcome | undefined): number | undefined => (isFigures(a) && isFigures(b) && b.goodputMbps > 0 ? a.goodputMbps / b.goodputMbps : undefined);
const x = (v: number | undefined): string => (v === undefined ? 'n/a' : `x${v.toFixed(2)}`);
const met = (ok: boolean | undefined): string => (ok === undefined ? 'not measured' : ok ? 'met' : 'NOT met');

function cellText(o: Outcome | undefined, skipped: string | undefined): string {
  if (o === undefined) return skipped ? 'skipped' : '-';
  if (!isFigures(o)) return 'error';
  const w = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
  return `${o.goodputMbps.toFixed(1)} ${o.share.toFixed(2)} ${w(o.wireSent)}/${w(o.wireForwarded)}${o.cutShort ? '!' : ''}`;
}

/** The report lines (see the file comment). */
export function formatUdp(r: UdpBenchResult): string[] {
  const out: string[] = [];
  const cols = COLUMNS.filter((c) => r.cells.some((cell) => cell.columns[c] !== undefined) || r.skipped[c] !== undefined);
  const W = 24;
  out.push(`# udp: one ${r.direction === 'down' ? 'download (b sends to a)' : 'upload (a sends to b)'} per cell through the impair bridge (a <-> m <-> b), ${r.delayMs} ms each way, drop-tail queue ${r.queueMs} ms, loss each way; goodput over ${r.seconds} s after ${r.omitSeconds} s`);
  out.push(`# cell: goodput Mbit/s, share of the link rate, wire bytes per useful byte over the whole transfer, sent/forwarded (frames into the bridge by both hosts / out of it); ! = the transfer broke off early`);
  for (const [k, why] of Object.entries(r.skipped)) out.push(`skipped ${k}: ${why}`);
  for (const rate of new Set(r.cells.map((c) => c.rateMbit))) {
    const rows = r.cells.filter((c) => c.rateMbit === rate);
    out.push(`## ${rate} Mbit/s`);
    out.push(`${'loss'.padEnd(8)}${cols.map((c) => columnLabel(c, r.tcpCc).padEnd(W)).join('')}`);
    for (const cell of rows) out.push(`${lossText(cell.loss).padEnd(8)}${cols.map((c) => cellText(cell.columns[c], r.skipped[c]).padEnd(W)).join('')}`);
    out.push(`ratios  polytun udp / kcptun fast3, / kcptun default, / polytun tcp, / TCP bbr`);
    for (const cell of rows) {
      const u = cell.columns.udp;
      out.push(`${lossText(cell.loss).padEnd(8)}${[ratio(u, cell.columns['kcptun-tuned']), ratio(u, cell.columns['kcptun-default']), ratio(u, cell.columns.tcp), ratio(u, cell.columns['tcp-bbr'])].map((v) => x(v).padEnd(10)).join('')}`);
    }
    for (const cell of rows) {
      for (const [c, o] of Object.entries(cell.columns)) if (o && !isFigures(o)) out.push(`error ${cell.key} ${c}: ${o.error.split('\n')[0]}`);
    }
    const at = (loss: Loss): (typeof rows)[number] | undefined => rows.find((c) => c.loss === loss);
    const two = at(2);
    if (two) {
      const u = two.columns.udp;
      const f = isFigures(u) ? u : undefined;
      const t = ratio(u, two.columns['kcptun-tuned']);
      const d = ratio(u, two.columns['kcptun-default']);
      out.push(
        `goal ${rate} Mbit/s at 2 %: goodput >= 0.90 of the link (${f?.share.toFixed(2) ?? 'n/a'}) -> ${met(f && f.share >= 0.9)}; ` +
          `>= x1.0 kcptun fast3 (${x(t)}) -> ${met(t === undefined ? undefined : t >= 1)}; >= x1.5 kcptun default (${x(d)}) -> ${met(d === undefined ? undefined : d >= 1.5)}; ` +
          `wire <= 1.10 per useful byte (sent ${f?.wireSent.toFixed(2) ?? 'n/a'}, forwarded ${f?.wireForwarded.toFixed(2) ?? 'n/a'}) -> ${met(f && f.wireSent <= 1.1)}`,
      );
    }
    const ten = at(10)?.columns.udp;
    if (at(10)) out.push(`goal ${rate} Mbit/s at 10 %: goodput >= 0.75 of the link (${isFigures(ten) ? ten.share.toFixed(2) : 'n/a'}) -> ${met(isFigures(ten) ? ten.share >= 0.75 : undefined)}`);
  }
  if (r.echo.length > 0) {
    out.push(`## interactive echo under a bulk transfer: 64 bytes every 50 ms on its own connection through the same tunnel, ${r.seconds} s after ${r.omitSeconds} s (ms)`);
    for (const e of r.echo) {
      if ('error' in e) out.push(`${e.key.padEnd(8)}${columnLabel(e.column, r.tcpCc).padEnd(16)}error: ${e.error.split('\n')[0]}`);
      else {
        out.push(`${e.key.padEnd(8)}${columnLabel(e.column, r.tcpCc).padEnd(16)}p50 ${e.p50Ms.toFixed(1).padStart(7)}  p99 ${e.p99Ms.toFixed(1).padStart(7)}  max ${e.maxMs.toFixed(1).padStart(7)}  (${e.probes} probes, ${e.unanswered} unanswered; bulk ${e.bulkMbps.toFixed(1)} Mbit/s)  goal p99 <= ${e.baseRttMs} + 50 ms -> ${e.column === 'udp' ? met(e.p99Ms <= e.baseRttMs + 50) : 'reference'}`);
      }
    }
  }
  if (r.loopback.length > 0) {
    out.push(`## loopback, no impairment: one stream, ${r.seconds} s after ${r.omitSeconds} s; CPU = user + system of the tunnel's client and server processes`);
    // The tcp carrier is a reference here, with the namespace's default congestion control.
    const label = (c: Column): string => (c === 'tcp' ? 'polytun tcp (reference)' : columnLabel(c, r.tcpCc)).padEnd(24);
    for (const l of r.loopback) {
      if ('error' in l) out.push(`${label(l.column)}error: ${l.error.split('\n')[0]}`);
      else out.push(`${label(l.column)}${l.gbps.toFixed(2).padStart(6)} Gbit/s  ${l.cpuSecondsPerGB.toFixed(2).padStart(6)} CPU s/GB`);
    }
    const u = r.loopback.find((l) => l.column === 'udp');
    const k = r.loopback.find((l) => l.column === 'kcptun-tuned');
    const lr = u && k && 'gbps' in u && 'gbps' in k && k.gbps > 0 ? u.gbps / k.gbps : undefined;
    const cr = u && k && 'gbps' in u && 'gbps' in k && u.cpuSecondsPerGB > 0 ? k.cpuSecondsPerGB / u.cpuSecondsPerGB : undefined;
    out.push(`goal loopback: polytun udp >= x2 kcptun fast3 (${x(lr)}; CPU per GB kcptun / polytun ${x(cr)}) -> ${met(lr === undefined ? undefined : lr >= 2)}`);
  }
  return out;
}
