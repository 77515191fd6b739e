/**
 * The multi-user gateway under load, with real processes on loopback:
 *
 * 1. Bulk: one stream through `polytun client -L` → `polytun server` → sink,
 *    over wss and over tcp in the same run, beside shadowsocks-libev
 *    (ss-tunnel → ss-server) over ss-v2ray-plugin's wss, and plain ss, in
 *    the same 4-process shape (bench → entry → server → sink child).
 *
 *      bench ──▶ entry (polytun client | ss-tunnel) ══ wss/tcp ══▶ (polytun server | ss-server) ──▶ sink child
 *      the sink answers "ok" after the announced number of bytes: the time is delivery, not buffering.
 *
 *    mtt rows (issue 19), when mtt-client and mtt-mu-server are on PATH (or
 *    in $MTT_BIN_DIR; built from mos-tls-tunnel's source by
 *    scripts/build-mtt.sh, never shipped): a
 *    stock mtt-client, plain and -mux, against this polytun server (a user
 *    added with its mtt controller) and against the real mtt-mu-server.
 *
 *      bench ──▶ mtt-client ══ wss (smux_off | smux_on) ══▶ (polytun server | mtt-mu-server) ──▶ sink child
 *
 * 2. Scale: 1,000 users, one wss session each, then 10 idle proxied streams
 *    per session (10,000 relays to an idle target child), against one
 *    `polytun server` child; its resident memory (VmRSS) before and after.
 *
 * Children that hold many sockets run under `ulimit -n <hard limit>`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { generateSelfSigned } from '../src/carriers/cert.js';
import { makeDestination } from '../src/core/address.js';
import { ProxyClient } from '../src/client/proxy-client.js';
import type { SessionClient } from '../src/paths/session-client.js';
import { clientForLink } from '../src/config/dial-link.js';
import { decodeLink } from '../src/config/link.js';
import { ensureBuilt, freePort, have, polytun, ROOT, waitForPort, type Proc } from '../test/helpers/cli.js';
import { benchServerArgs } from './proxy.js';

const BIN = join(ROOT, 'bin/polytun.js');
const KiB = 1024;

/** A child node process running `script` (CommonJS, via -e) with the fd limit raised to the hard limit. */
function nodeChild(script: string, args: string[] = []): ChildProcess {
  return spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"', process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function firstLine(child: ChildProcess): Promise<string> {
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await once(rl, 'line')) as [string];
  rl.close();
  return line;
}

/** Sink: reads an 8-byte length, swallows that many bytes, answers "ok". */
const SINK = `
const net = require('net');
net.createServer((c) => {
  let need = -1, got = 0, head = Buffer.alloc(0);
  c.on('error', () => c.destroy());
  c.on('data', (d) => {
    if (need < 0) {
      head = Buffer.concat([head, d]);
      if (head.length < 8) return;
      need = Number(head.readBigUInt64BE(0));
      d = head.subarray(8);
    }
    got += d.length;
    if (got >= need && need >= 0) { need = Infinity; c.end('ok\\n'); }
  });
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

/** Idle target: accepts and holds connections, never sends. */
const IDLE = `
const net = require('net');
const held = [];
net.createServer((c) => { held.push(c); c.on('error', () => c.destroy()); }).listen(0, '127.0.0.1', 4096, function () { console.log(this.address().port); });`;

/** Sends `total` bytes through `port` to the sink; MB/s of delivered bytes. */
async function pump(port: number, total: number): Promise<number> {
  const s = net.connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.setNoDelay(true);
  const done = once(s, 'data');
  const chunk = Buffer.alloc(256 * KiB, 0x5a);
  const head = Buffer.alloc(8);
  head.writeBigUInt64BE(BigInt(total));
  const t0 = performance.now();
  s.write(head);
  for (let sent = 0; sent < total; ) {
    const n = Math.min(chunk.length, total - sent);
    sent += n;
    if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await once(s, 'drain');
  }
  await done;
  const mbps = total / 1e6 / ((performance.now() - t0) / 1000);
  s.destroy();
  return mbps;
}

/** A polytun server child; resolves with its links (tcp first, then wss). */
async function server(dataDir: string, extra: string[]): Promise<{ proc: Proc; links: string[] }> {
  const proc = polytun(['server', '--listen', 'tcp://127.0.0.1:0', '--listen', 'wss://127.0.0.1:0', '--data-dir', dataDir, '--allow', '127.0.0.1', '--log-level', 'warn', ...benchServerArgs(), ...extra]);
  const rl = createInterface({ input: proc.child.stdout as NodeJS.ReadableStream });
  const links: string[] = [];
  for await (const line of rl) {
    if (line.startsWith('polytun://')) links.push(line);
    if (links.length === 2) break;
  }
  if (links.length < 2) throw new Error(`server printed no links:\n${proc.log()}`);
  return { proc, links };
}

/** A shadowsocks pair (optionally over ss-v2ray-plugin wss) forwarding an entry port to `target`. */
async function ssPair(target: number, plugin: boolean, dir: string): Promise<{ entry: number; stop(): Promise<void> }> {
  const [ssPort, entry] = [await freePort(), await freePort()];
  const common = ['-k', 'benchpass', '-m', 'chacha20-ietf-poly1305'];
  let env: NodeJS.ProcessEnv = process.env;
  const srvArgs = ['-s', '127.0.0.1', '-p', String(ssPort), ...common];
  const tunArgs = ['-s', '127.0.0.1', '-p', String(ssPort), '-b', '127.0.0.1', '-l', String(entry), '-L', `127.0.0.1:${target}`, ...common];
  if (plugin) {
    const c = generateSelfSigned({ commonName: 'bench.local', altNames: ['bench.local'] });
    writeFileSync(join(dir, 'ss-cert.pem'), c.cert);
    writeFileSync(join(dir, 'ss-key.pem'), c.key);
    srvArgs.push('--plugin', 'ss-v2ray-plugin', '--plugin-opts', `server;tls;host=bench.local;cert=${join(dir, 'ss-cert.pem')};key=${join(dir, 'ss-key.pem')}`);
    tunArgs.push('--plugin', 'ss-v2ray-plugin', '--plugin-opts', 'tls;host=bench.local');
    // The Go plugin trusts our self-signed certificate through SSL_CERT_FILE.
    env = { ...process.env, SSL_CERT_FILE: join(dir, 'ss-cert.pem') };
  }
  const srv = spawn('ss-server', srvArgs, { stdio: 'ignore' });
  const tun = spawn('ss-tunnel', tunArgs, { stdio: 'ignore', env });
  await waitForPort(entry);
  await new Promise((r) => setTimeout(r, 500)); // the plugins start after the ports open
  return {
    entry,
    async stop() {
      for (const c of [tun, srv]) {
        c.kill('SIGTERM');
        if (c.exitCode === null) await once(c, 'exit');
      }
    },
  };
}

/** Bulk throughput figures, MB/s (median of the rounds); undefined when the peer is not installed. */
export interface BulkResult {
  tcpMBps: number;
  wssMBps: number;
  ssMBps: number | undefined;
  ssV2rayMBps: number | undefined;
  /** mtt-client (plain / -mux) → polytun server in mtt mode. */
  mttMBps: number | undefined;
  mttMuxMBps: number | undefined;
  /** mtt-client (plain / -mux) → the real mtt-mu-server. */
  mttRefMBps: number | undefined;
  mttRefMuxMBps: number | undefined;
  rounds: number;
  /** Every round of every case, MB/s, in the order run: the spread the median hides. */
  samples: Partial<Record<BulkCase, number[]>>;
}

type BulkCase = 'tcpMBps' | 'wssMBps' | 'ssMBps' | 'ssV2rayMBps' | 'mttMBps' | 'mttMuxMBps' | 'mttRefMBps' | 'mttRefMuxMBps';

/** An mtt binary: $MTT_BIN_DIR/NAME, else NAME on PATH; undefined when neither. */
function mttBin(name: string): string | undefined {
  const dir = process.env.MTT_BIN_DIR;
  if (dir !== undefined) return join(dir, name);
  return have(name) ? name : undefined;
}

/** Adds path → dst on an mtt controller. */
async function mttAdd(controllerPort: number, path: string, dst: string): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${controllerPort}/`, { method: 'POST', body: JSON.stringify({ opt: 1, args_bunch: [{ path, dst }] }) });
  const text = await r.text();
  if (text !== '{"res":1}') throw new Error(`mtt controller answered ${JSON.stringify(text)}`);
}

/** A stock mtt-client forwarding a local port to `wssPort` (self-signed server: -sv); resolves with the local port. */
async function mttClient(bin: string, wssPort: number, path: string, mux: boolean, stops: (() => Promise<unknown>)[]): Promise<number> {
  const port = await freePort();
  const c = spawn(bin, ['-b', `127.0.0.1:${port}`, '-s', `127.0.0.1:${wssPort}`, '-wss', '-wss-path', path, '-sv', '-n', 'bench.local', ...(mux ? ['-mux'] : [])], { stdio: 'ignore' });
  stops.push(async () => {
    c.kill('SIGTERM');
    if (c.exitCode === null) await once(c, 'exit');
  });
  await waitForPort(port);
  return port;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/**
 * Figure 1: one bulk stream over polytun wss, polytun tcp, ss and ss +
 * v2ray-plugin (wss). Every pipeline is set up first, then the cases take
 * turns for `rounds` rounds of `total / rounds` bytes each, so that a change
 * in the machine's load (it is shared) hits all of them alike.
 */
export async function benchBulk(total: number, rounds = 3): Promise<BulkResult> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'polytun-bench-gw-'));
  const sink = nodeChild(SINK);
  const sinkPort = Number(await firstLine(sink));
  const client = mttBin('mtt-client');
  const muServer = mttBin('mtt-mu-server');
  const controller = client === undefined ? undefined : await freePort();
  const { proc: srv, links } = await server(join(dir, 'data'), controller === undefined ? [] : ['--controller', `127.0.0.1:${controller}`]);
  const stops: (() => Promise<unknown>)[] = [];
  const entry = async (link: string): Promise<number> => {
    const port = await freePort();
    const client = polytun(['client', link, '-L', `127.0.0.1:${port}:127.0.0.1:${sinkPort}`, '--no-socks', '--no-status', '--log-level', 'warn']);
    stops.push(() => client.stop());
    await waitForPort(port, '127.0.0.1', client);
    return port;
  };
  try {
    const cases: { name: keyof Omit<BulkResult, 'rounds' | 'samples'>; port: number; runs: number[] }[] = [
      { name: 'tcpMBps', port: await entry(links[0] as string), runs: [] },
      { name: 'wssMBps', port: await entry(links[1] as string), runs: [] },
    ];
    if (have('ss-server') && have('ss-tunnel')) {
      const plain = await ssPair(sinkPort, false, dir);
      stops.push(() => plain.stop());
      cases.push({ name: 'ssMBps', port: plain.entry, runs: [] });
      if (have('ss-v2ray-plugin')) {
        const v2 = await ssPair(sinkPort, true, dir);
        stops.push(() => v2.stop());
        cases.push({ name: 'ssV2rayMBps', port: v2.entry, runs: [] });
      }
    }
    if (client !== undefined && controller !== undefined) {
      await mttAdd(controller, '/bench', `127.0.0.1:${sinkPort}`);
      const wssPort = decodeLink(links[1] as string).port;
      cases.push({ name: 'mttMBps', port: await mttClient(client, wssPort, '/bench', false, stops), runs: [] });
      cases.push({ name: 'mttMuxMBps', port: await mttClient(client, wssPort, '/bench', true, stops), runs: [] });
      if (muServer !== undefined) {
        const [muPort, muCtl] = [await freePort(), await freePort()];
        const mu = spawn(muServer, ['-b', `127.0.0.1:${muPort}`, '-c', `127.0.0.1:${muCtl}`], { stdio: 'ignore' });
        stops.push(async () => {
          mu.kill('SIGTERM');
          if (mu.exitCode === null) await once(mu, 'exit');
        });
        await waitForPort(muCtl);
        await waitForPort(muPort);
        await mttAdd(muCtl, '/bench', `127.0.0.1:${sinkPort}`);
        cases.push({ name: 'mttRefMBps', port: await mttClient(client, muPort, '/bench', false, stops), runs: [] });
        cases.push({ name: 'mttRefMuxMBps', port: await mttClient(client, muPort, '/bench', true, stops), runs: [] });
      }
    }
    for (const c of cases) await pump(c.port, Math.min(64 << 20, total)); // warm-up
    const each = Math.max(1 << 20, Math.floor(total / rounds));
    for (let r = 0; r < rounds; r++) for (const c of cases) c.runs.push(await pump(c.port, each));
    const out: BulkResult = { tcpMBps: 0, wssMBps: 0, ssMBps: undefined, ssV2rayMBps: undefined, mttMBps: undefined, mttMuxMBps: undefined, mttRefMBps: undefined, mttRefMuxMBps: undefined, rounds, samples: {} };
    for (const c of cases) {
      out[c.name] = median(c.runs);
      out.samples[c.name] = c.runs;
    }
    return out;
  } finally {
    for (const stop of stops.reverse()) await stop();
    await srv.stop();
    sink.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Memory figures of the scale run. */
export interface ScaleResult {
  sessions: number;
  streams: number;
  rssBaseMiB: number;
  rssSessionsMiB: number;
  rssStreamsMiB: number;
  perSessionKiB: number;
  perIdleStreamKiB: number;
  connectSeconds: number;
}

export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * KiB;
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function inBatches<T>(items: readonly T[], size: number, fn: (t: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

/** What {@link benchScale}'s `during` gets: the loaded server. */
export interface ScaleServer {
  readonly pid: number;
  /** http://127.0.0.1:PORT of its admin listener. */
  readonly admin: string;
  readonly token: string;
}

/**
 * Figure 2: `sessions` wss sessions (one user each) × `perSession` idle
 * streams on one server child; `during` runs with all of them open (the
 * dashboard bench measures the page's cost there).
 */
export async function benchScale(sessions = 1000, perSession = 10, during?: (srv: ScaleServer) => Promise<void>): Promise<ScaleResult> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'polytun-bench-scale-'));
  const idle = nodeChild(IDLE);
  const idlePort = Number(await firstLine(idle));
  const adminPort = await freePort();
  const args = ['server', '--listen', 'wss://127.0.0.1:0', '--data-dir', join(dir, 'data'), '--admin', `127.0.0.1:${adminPort}`, '--log-level', 'warn', '--set', `limits.maxSessions=${sessions + 100}`];
  const srv = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"', process.execPath, BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const clients: SessionClient[] = [];
  try {
    for await (const line of createInterface({ input: srv.stdout as NodeJS.ReadableStream })) if (line.startsWith('polytun://')) break;
    await waitForPort(adminPort);
    const token = readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim();
    const links: string[] = [];
    await inBatches(
      Array.from({ length: sessions }, (_, i) => i),
      20,
      async (i) => {
        const r = await fetch(`http://127.0.0.1:${adminPort}/api/users`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: `bench-${i}`, kind: 'token', wssPath: 'auto', dst: `127.0.0.1:${idlePort}` }),
        });
        const body = (await r.json()) as { links?: string[] };
        const link = body.links?.find((l) => decodeLink(l).carrier === 'wss');
        if (link === undefined) throw new Error(`user ${i}: no wss link (${r.status})`);
        links[i] = link;
      },
    );
    await settle(2000);
    const pid = srv.pid as number;
    const rssBase = rssOf(pid);

    const t0 = performance.now();
    await inBatches(links, 50, async (link) => {
      const c = clientForLink(decodeLink(link), { handshakeTimeoutMs: 30_000 });
      await c.connect();
      clients.push(c);
    });
    const connectSeconds = (performance.now() - t0) / 1000;
    await settle(3000);
    const rssSessions = rssOf(pid);

    await inBatches(clients, 50, async (c) => {
      const proxy = new ProxyClient({ session: () => c.session });
      for (let j = 0; j < perSession; j++) {
        // A fixed-dst user: whatever is asked lands on the idle target.
        const { status } = await proxy.connect(makeDestination('127.0.0.1', idlePort), { waitStatus: true });
        if (status !== 0) throw new Error(`stream refused with status ${status}`);
      }
    });
    await settle(3000);
    const rssStreams = rssOf(pid);
    await during?.({ pid, admin: `http://127.0.0.1:${adminPort}`, token });
    const MiB = (b: number): number => b / 2 ** 20;
    return {
      sessions,
      streams: sessions * perSession,
      rssBaseMiB: MiB(rssBase),
      rssSessionsMiB: MiB(rssSessions),
      rssStreamsMiB: MiB(rssStreams),
      perSessionKiB: (rssSessions - rssBase) / sessions / KiB,
      perIdleStreamKiB: (rssStreams - rssSessions) / (sessions * perSession) / KiB,
      connectSeconds,
    };
  } finally {
    for (const c of clients) c.close();
    srv.kill('SIGTERM');
    if (srv.exitCode === null) await once(srv, 'exit');
    idle.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}
