/**
 * The soak: real `polytun server` and `polytun client` processes (one client
 * per carrier, tcp and wss), each behind a TcpRelay that cuts its carrier at
 * random, ~1,000 concurrent streams of mixed users through -L forwards, and
 * one server outage longer than the resume grace period (server killed, back
 * on the same data dir and ports). Used by test/e2e/soak.test.ts (3 minutes)
 * and scripts/soak.ts (30 minutes by hand).
 *
 * What it checks, and hands back as figures:
 * - no byte lost, duplicated or corrupted on any stream (every byte checked);
 * - no stream breaks except during the outage (carrier cuts must be resumed);
 * - the clients come back by themselves after the outage;
 * - RSS of every polytun process after warm-up, and fds back to baseline.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import net from 'node:net';
import { TcpRelay } from '../tools/relay.js';
import { freePort, polytun, startServer, waitForPort, type Proc, type Server } from '../helpers/cli.js';
import { drive, startTarget, type Kind, type StreamResult } from './workload.js';

export interface SoakInit {
  /** Total length of the run. */
  seconds: number;
  /** Concurrent streams per client. @default 500 */
  streamsPerClient?: number;
  /** When the server is killed, as a fraction of the run; null: no outage (cuts only). @default 0.3 */
  outageAt?: number | null;
  /** How long the server stays down. @default 75 */
  outageSeconds?: number;
  /** Mean seconds between carrier cuts, per client. @default 20 */
  cutEverySeconds?: number;
  /** Per-direction rate limit of each client's carrier (bytes/s), to keep 2 cores sane. @default 6 MB/s */
  rateBps?: number;
  /** --log-level of every polytun process (debug logs each stream reset with its code). @default $SOAK_LOG_LEVEL or info */
  logLevel?: string;
  log?: (line: string) => void;
}

export interface ProcFigures {
  /** perMinute: the last sample of each minute, to tell a leak (steady growth) from buffers filling up once. */
  rssMiB: { warm: number; peakAfterWarm: number; end: number; perMinute: number[] };
  fds: { baseline: number; end: number };
}

/** A stream's result, with which client carried it and when it started. */
export type SoakStream = StreamResult & { client: string; startedAt: number; log?: string[] };

export interface SoakReport {
  seconds: number;
  streams: { started: number; done: number; closed: number; broken: number; brokenOutsideOutage: SoakStream[]; corrupt: SoakStream[] };
  byKind: Record<Kind, { started: number; done: number; bytes: number }>;
  bytes: number;
  cuts: number;
  /** When each cut happened, on which client's carrier, and how. */
  cutLog: { t: number; client: string; mode: string }[];
  /**
   * backAt: when a probe stream first worked again; sessionLines: what each
   * client logged about its session from the kill until then (to tell a
   * slow reconnect from a slow first stream).
   */
  outage: { killedAt: number; restartedAt: number; backAt: Record<string, number>; sessionLines: Record<string, string[]> };
  clients: Record<string, ProcFigures & { status: unknown }>;
  server: ProcFigures;
}

const KINDS: [Kind, number][] = [
  ['interactive', 0.4],
  ['bulk-down', 0.12],
  ['bulk-up', 0.08],
  ['paused', 0.2],
  ['slow', 0.2],
];

function pick(r: number): Kind {
  let acc = 0;
  for (const [k, w] of KINDS) {
    acc += w;
    if (r < acc) return k;
  }
  return 'interactive';
}

function sizeFor(kind: Kind, r: number): number {
  if (kind === 'bulk-down' || kind === 'bulk-up') return (256 << 10) + Math.floor(r * (4 << 20));
  if (kind === 'interactive') return 0;
  return 8 << 20; // paused and slow readers never finish in a soak
}

/** RSS in MiB, or NaN once the process is gone (the outage kills the server between samples). */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function statusOf(port: number): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${port}/status`);
  return res.json();
}

async function probe(port: number): Promise<boolean> {
  const r = await drive({ kind: 'bulk-down', port, seed: 7, size: 1024, signal: AbortSignal.timeout(10_000), now: Date.now });
  return r.outcome === 'done';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runSoak(init: SoakInit): Promise<SoakReport> {
  const log = init.log ?? (() => undefined);
  const perClient = init.streamsPerClient ?? 500;
  const outageSeconds = init.outageSeconds ?? 75;
  const cutEvery = (init.cutEverySeconds ?? 20) * 1000;
  const rateBps = init.rateBps ?? 6_000_000;
  const t0 = Date.now();
  const now = (): number => Date.now() - t0;
  const endAt = init.seconds * 1000;
  const noOutage = init.outageAt === null;
  const killAt = noOutage ? Infinity : Math.floor((init.outageAt ?? 0.3) * endAt);
  const warmAt = Math.min(killAt, 20_000);
  const results: SoakStream[] = [];

  const target = await startTarget();
  const tcpPort = await freePort();
  const wssPort = await freePort();
  const listen = [`tcp://127.0.0.1:${tcpPort}`, `wss://127.0.0.1:${wssPort}`];
  // SOAK_LOG_LEVEL=debug: every stream reset is logged with its code (with POLYTUN_LOG_DIR to keep the logs).
  const level = init.logLevel ?? process.env.SOAK_LOG_LEVEL;
  const logLevel = level ? ['--log-level', level] : [];
  const extra = ['--allow', '127.0.0.1', ...logLevel];
  let server: Server | Proc = await startServer(extra, listen);
  /** The logs of every server process so far (the one killed for the outage, then its successor). */
  const serverLogs: (() => string)[] = [];
  const serverArgs = ['server', ...listen.flatMap((l) => ['--listen', l]), '--data-dir', (server as Server).dataDir, ...extra];
  const dataDir = (server as Server).dataDir;

  const carriers = [
    { name: 'tcp', port: tcpPort, link: (server as Server).links[0] as string },
    { name: 'wss', port: wssPort, link: (server as Server).links[1] as string },
  ];
  const clients: { name: string; relay: TcpRelay; proc: Proc; fwd: number; status: number }[] = [];
  for (const c of carriers) {
    const relay = new TcpRelay({
      listen: { host: '127.0.0.1', port: 0 },
      target: { host: '127.0.0.1', port: c.port },
      up: { rateBps },
      down: { rateBps },
    });
    await relay.start();
    const link = c.link.replace(`:${c.port}?`, `:${relay.address.port}?`).replace(`:${c.port}/`, `:${relay.address.port}/`);
    const fwd = await freePort();
    const status = await freePort();
    const proc = polytun(['client', link, '-L', `127.0.0.1:${fwd}:127.0.0.1:${target.port}`, '--status', `127.0.0.1:${status}`, '--no-socks', ...logLevel]);
    await waitForPort(fwd, '127.0.0.1', proc);
    await waitForPort(status, '127.0.0.1', proc);
    if (!(await probe(fwd))) throw new Error(`soak: the ${c.name} client does not carry a probe; log:\n${proc.log()}`);
    clients.push({ name: c.name, relay, proc, fwd, status });
  }
  const baselineFds = Object.fromEntries(clients.map((c) => [c.name, fdCount(c.proc.child.pid as number)]));
  const serverBaselineFds = fdCount(server.child.pid as number);
  log(`soak: up; fds ${JSON.stringify(baselineFds)} server ${serverBaselineFds}`);

  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per live stream, by design
  const byKind = Object.fromEntries(KINDS.map(([k]) => [k, { started: 0, done: 0, bytes: 0 }])) as SoakReport['byKind'];
  let started = 0;
  let seed = 1;
  const live = new Set<Promise<void>>();
  const keepUp = async (c: (typeof clients)[number]): Promise<void> => {
    let open = 0;
    while (!stop.signal.aborted) {
      // During the outage new streams fail at once; keep trying, slowly.
      const outage = now() >= killAt && now() < killAt + outageSeconds * 1000;
      if (open >= perClient || (outage && open >= perClient / 2)) {
        await sleep(outage ? 1000 : 50);
        continue;
      }
      const kind = pick(Math.random());
      const s = seed++;
      open++;
      started++;
      byKind[kind].started++;
      const startedAt = now();
      const p = drive({ kind, port: c.fwd, seed: s, size: sizeFor(kind, Math.random()), signal: stop.signal, now }).then((r) => {
        open--;
        results.push({ ...r, client: c.name, startedAt });
        byKind[kind].bytes += r.bytes;
        if (r.outcome === 'done') byKind[kind].done++;
        live.delete(p);
      });
      live.add(p);
      if (open % 20 === 0) await sleep(10); // ramp up, not 1,000 SYNs at once
    }
  };
  const loops = clients.map((c) => keepUp(c));

  // Carrier cuts at random, except around the outage.
  let cuts = 0;
  const cutLog: SoakReport['cutLog'] = [];
  const cutter = (async () => {
    while (!stop.signal.aborted) {
      await sleep(cutEvery / 2 + Math.random() * cutEvery);
      if (stop.signal.aborted) break;
      const t = now();
      if (t > killAt - 5000 && t < killAt + outageSeconds * 1000 + 15_000) continue;
      const c = clients[Math.floor(Math.random() * clients.length)] as (typeof clients)[number];
      const mode = Math.random() < 0.5 ? 'reset' : 'close';
      if (c.relay.cutAll({ mode }) > 0) {
        cuts++;
        cutLog.push({ t, client: c.name, mode });
      }
    }
  })();

  // RSS samples.
  const rss: Record<string, { t: number; mib: number }[]> = { server: [] };
  for (const c of clients) rss[c.name] = [];
  const sampler = setInterval(() => {
    for (const c of clients) rss[c.name]?.push({ t: now(), mib: rssMiB(c.proc.child.pid as number) });
    if (server.child.exitCode === null && server.child.pid) rss.server?.push({ t: now(), mib: rssMiB(server.child.pid) });
  }, 2000);

  // The outage.
  let killedAt = NaN;
  let restartedAt = NaN;
  const backAt: Record<string, number> = {};
  const sessionLines: Record<string, string[]> = {};
  if (!noOutage) {
    await sleep(killAt);
    log(`soak: t=${now()} ms: killing the server (${started} streams started)`);
    server.child.kill('SIGKILL');
    await new Promise((r) => (server.child.exitCode !== null ? r(null) : server.child.once('exit', r)));
    killedAt = now();
    await sleep(outageSeconds * 1000);
    serverLogs.push(server.log);
    server = polytun(serverArgs);
    await waitForPort(tcpPort, '127.0.0.1', server, 30_000);
    await waitForPort(wssPort, '127.0.0.1', server, 30_000);
    restartedAt = now();
    log(`soak: t=${restartedAt} ms: server back`);
    await Promise.all(
      clients.map(async (c) => {
        const deadline = Date.now() + 120_000;
        while (Date.now() < deadline) {
          if (await probe(c.fwd)) {
            backAt[c.name] = now();
            return;
          }
          await sleep(500);
        }
      }),
    );
    log(`soak: clients back at ${JSON.stringify(backAt)}`);
    const since = new Date(Date.now() - (now() - killedAt)).toISOString();
    for (const c of clients) {
      sessionLines[c.name] = c.proc
        .log()
        .split('\n')
        .filter((l) => l >= since && !/ DEBUG /.test(l) && /connected|reconnecting in|resume|session|refused/.test(l))
        .slice(0, 40);
    }
  }

  const rest = endAt - now();
  if (rest > 0) await sleep(rest);
  stop.abort();
  await Promise.all(loops);
  await cutter;
  await Promise.all([...live]);
  clearInterval(sampler);

  // fds back to baseline: allow the status and carrier sockets to settle.
  const settleFds = async (pid: number, baseline: number): Promise<number> => {
    const deadline = Date.now() + 30_000;
    let n = fdCount(pid);
    while (n > baseline + 2 && Date.now() < deadline) {
      await sleep(250);
      n = fdCount(pid);
    }
    return n;
  };
  const figures = (samples: { t: number; mib: number }[], fds: { baseline: number; end: number }): ProcFigures => {
    const warm = samples.filter((s) => s.t >= warmAt && !Number.isNaN(s.mib));
    const first = warm[0]?.mib ?? NaN;
    const perMinute: number[] = [];
    for (const x of samples) if (!Number.isNaN(x.mib)) perMinute[Math.floor(x.t / 60_000)] = Math.round(x.mib);
    return { rssMiB: { warm: first, peakAfterWarm: Math.max(...warm.map((s) => s.mib)), end: warm.at(-1)?.mib ?? NaN, perMinute: [...perMinute].map((v) => v ?? NaN) }, fds };
  };
  const report: SoakReport = {
    seconds: init.seconds,
    streams: {
      started,
      done: results.filter((r) => r.outcome === 'done').length,
      closed: results.filter((r) => r.outcome === 'closed').length,
      broken: results.filter((r) => r.outcome === 'broken').length,
      brokenOutsideOutage: [],
      corrupt: results.filter((r) => r.corrupt !== undefined),
    },
    byKind,
    bytes: results.reduce((a, r) => a + r.bytes, 0),
    cuts,
    cutLog,
    outage: { killedAt, restartedAt, backAt, sessionLines },
    clients: {},
    server: figures(rss.server?.filter((s) => s.t > (noOutage ? warmAt : restartedAt + 10_000)) ?? [], { baseline: serverBaselineFds, end: await settleFds(server.child.pid as number, serverBaselineFds) }),
  };
  const lastBack = noOutage ? -Infinity : Math.max(restartedAt, ...Object.values(backAt));
  // A stream open when the server died is lost with its session, however
  // late its reader notices: a paused or slow reader first reads what its
  // kernel still holds (Linux reports an RST only on an empty queue).
  const openAtOutage = (r: SoakStream): boolean => r.startedAt <= lastBack + 10_000 && r.endedAt >= killAt - 1000;
  report.streams.brokenOutsideOutage = results.filter((r) => r.outcome === 'broken' && !openAtOutage(r));
  // What the processes logged while each of the first few broken streams lived (its reset, a cut, a resume).
  serverLogs.push(server.log);
  const logOf = (name: string): string => [clients.find((c) => c.name === name)?.proc.log() ?? '', ...serverLogs.map((l) => l())].join('\n');
  for (const r of report.streams.brokenOutsideOutage.slice(0, 5)) {
    const from = new Date(t0 + r.startedAt - 2000).toISOString();
    const to = new Date(t0 + r.endedAt + 2000).toISOString();
    const lines = logOf(r.client)
      .split('\n')
      .filter((l) => l >= from && l <= to && /stream|reset|path|carrier|resum|detach|session|refus|timeout|connect|dial/i.test(l))
      .sort();
    // A batch of streams breaking together logs one reset line each: keep a few of those, and every
    // other line of the window (cuts, resumes, dials, timeouts), which say why.
    const resets = lines.filter((l) => /resetting stream|forwarded connection ended/.test(l));
    const rest = lines.filter((l) => !/resetting stream|forwarded connection ended/.test(l));
    r.log = [...rest.slice(0, 40), ...resets.slice(0, 3), ...resets.slice(-3)].sort();
  }
  for (const c of clients) {
    const pid = c.proc.child.pid as number;
    report.clients[c.name] = {
      ...figures(rss[c.name] ?? [], { baseline: baselineFds[c.name] as number, end: await settleFds(pid, baselineFds[c.name] as number) }),
      status: await statusOf(c.status).catch((e: Error) => e.message),
    };
  }
  for (const c of clients) {
    await c.proc.stop();
    await c.relay.close();
  }
  await server.stop();
  await target.close();
  const { rmSync } = await import('node:fs');
  rmSync(dataDir, { recursive: true, force: true });
  return report;
}

/** Unused-port guard for callers that want to check nothing is left listening. */
export function listening(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => (s.destroy(), r(true)));
    s.on('error', () => r(false));
  });
}
