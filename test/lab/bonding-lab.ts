/**
 * The bonding lab shared by test/lab/bonding.test.ts and bench/bonding.ts:
 * a client namespace joined to a server namespace by N veth links, each
 * shaped with `tc tbf` on both ends and, optionally, delayed by a userspace
 * impairment relay (test/tools/relay-cli.ts) running in the server namespace
 * in front of the polytun server. A target HTTP server in the server
 * namespace serves deterministic bytes; downloads run with curl through the
 * client's SOCKS5 front, and their bytes are timed chunk by chunk here.
 *
 *   ns cli                                  ns srv
 *   ┌────────────────────┐ link i (tbf)  ┌─────────────────────────────────────┐
 *   │ polytun client     │───────────────│ relay i  NET.i.2:7001 ──┐ (delay)   │
 *   │  SOCKS 127.0.0.1:  │   NET.i.1/30  │                         ▼           │
 *   │        1080        │               │ polytun server 0.0.0.0:7000         │
 *   │  status :9090      │               │ target HTTP 127.0.0.1:8080          │
 *   │ curl, iperf3 -c    │               │ iperf3 -s 127.0.0.1:5201 (bench)    │
 *   └────────────────────┘               └─────────────────────────────────────┘
 *
 * A link with no delay has no relay: the client dials NET.i.2:7000 directly
 * (tbf only; kernel MPTCP subflows need that, a relay would terminate them).
 * Port numbers are fixed: each namespace has its own port space.
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBuilt, ROOT } from '../helpers/cli.js';
import { Lab, LabError, type LabProc, type VethLink } from './netns.js';

/** Where things listen inside the namespaces. */
export const PORTS = { polytun: 7000, relay: 7001, relayControl: 9100, target: 8080, socks: 1080, status: 9090, iperf: 5201 } as const;

/** Tuned liveness (both ends), so a dead path is dropped in about a second. */
export const FAST_LIVENESS = ['--set', 'liveness.intervalMs=500', '--set', 'liveness.timeoutMs=300', '--set', 'liveness.misses=2'];

/**
 * Deterministic, incompressible bytes: the AES-256-CTR keystream of a fixed
 * key. The target server (inline script below) makes the same bytes.
 */
export function patternBytes(size: number): Buffer {
  return createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16, 0)).update(Buffer.alloc(size));
}

/** SHA-256 (hex) of patternBytes(size). */
export function patternSha256(size: number): string {
  return createHash('sha256').update(patternBytes(size)).digest('hex');
}

// The target: GET /file → the pattern (SIZE bytes); GET /stream?bytes=N →
// the pattern repeated up to N bytes, written with backpressure.
const TARGET = `
const http = require('node:http');
const { createCipheriv } = require('node:crypto');
const [size, port] = process.argv.slice(1).map(Number);
const file = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16, 0)).update(Buffer.alloc(size));
const srv = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://target');
  if (u.pathname === '/file') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.length });
    return res.end(file);
  }
  if (u.pathname === '/stream') {
    let left = Number(u.searchParams.get('bytes'));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
    const more = () => {
      while (left > 0) {
        const n = Math.min(left, 256 * 1024);
        left -= n;
        if (!res.write(file.subarray(0, n))) return res.once('drain', more);
      }
      res.end();
    };
    res.on('error', () => undefined);
    return more();
  }
  res.writeHead(404).end();
});
srv.listen(port, '127.0.0.1', () => console.log('target ready'));
process.on('SIGTERM', () => { srv.closeAllConnections(); srv.close(() => process.exit(0)); });
`;

/** One link of the lab. */
export interface LinkSpec {
  /** tbf rate on both ends, e.g. `40mbit`. */
  rate: string;
  /** One-way delay added by a relay in front of the server; omitted = no relay. */
  delayMs?: number;
  /** tbf burst. @default '64kb' */
  burst?: string;
}

/** A link as built. */
export interface BondLink extends LinkSpec {
  index: number;
  veth: VethLink;
  /** Where the client dials polytun over this link (the relay, or the server itself). */
  entry: { host: string; port: number };
  relay?: LabProc;
  /** The relay's control port (in the server namespace). */
  controlPort?: number;
}

/** What one download saw. */
export interface DownloadResult {
  bytes: number;
  sha256: string;
  ms: number;
  /** Longest time between two received chunks, and when (ms from start) it ended. */
  maxGapMs: number;
  maxGapEndMs: number;
  /** Arrival time (ms from start) and cumulative bytes of every chunk. */
  times: number[];
  totals: number[];
  /** When the request started (performance.now()). */
  startedAt: number;
}

/** Options of {@link BondingLab.startClient}. */
export interface ClientInit {
  /** Link the session starts on (the polytun link's own path). */
  first: number;
  /** Further paths: link index and role. */
  paths?: { link: number; role?: 'primary' | 'backup' }[];
  /** Extra CLI flags. */
  extra?: string[];
  /** Dial the server itself on every link (tbf only), not the relays. @default false */
  direct?: boolean;
  /** Node options for the client process (e.g. `--cpu-prof`). */
  nodeOptions?: string[];
}

export class BondingLab {
  readonly lab: Lab;
  cli = '';
  srv = '';
  readonly links: BondLink[] = [];
  server: LabProc | undefined;
  /** The server's first link (printed at its first start; a restart on the same data dir prints none). */
  link0 = '';
  /** The polytun server's data dir (keys, users). */
  dataDir = '';

  constructor(name: string) {
    this.lab = new Lab(name);
  }

  /**
   * Builds the namespaces and links, starts the relays, the target (serving
   * `fileSize` bytes) and the polytun server (with `serverArgs`).
   * `net` picks the address block 10.NET.i.0/30 for link i. `compile`
   * (default true) builds dist/ first, as the e2e tests do.
   */
  async build(opts: { links: LinkSpec[]; net: number; fileSize: number; serverArgs?: string[]; compile?: boolean }): Promise<void> {
    if (opts.compile ?? true) ensureBuilt();
    const { lab } = this;
    this.cli = await lab.host('cli');
    this.srv = await lab.host('srv');
    for (const [i, spec] of opts.links.entries()) {
      const veth = await lab.link(this.cli, this.srv, { a: `10.${opts.net}.${i + 1}.1/30`, b: `10.${opts.net}.${i + 1}.2/30` });
      const shape = { rate: spec.rate, ...(spec.burst ? { burst: spec.burst } : {}) };
      await lab.shape(this.cli, veth.aIf, shape);
      await lab.shape(this.srv, veth.bIf, shape);
      const link: BondLink = { ...spec, index: i, veth, entry: { host: veth.bAddr, port: PORTS.polytun } };
      if (spec.delayMs !== undefined) {
        link.controlPort = PORTS.relayControl + i;
        link.relay = await this.startRelay(veth.bAddr, PORTS.relay, PORTS.polytun, spec.delayMs, link.controlPort, `relay ${i}`);
        link.entry = { host: veth.bAddr, port: PORTS.relay };
      }
      this.links.push(link);
    }
    const target = lab.spawn(this.srv, process.execPath, ['-e', TARGET, String(opts.fileSize), String(PORTS.target)], { name: 'target' });
    await target.waitForLine(/target ready/);
    this.dataDir = mkdtempSync(join(tmpdir(), 'polytun-lab-'));
    this.server = lab.spawn(
      this.srv,
      process.execPath,
      [join(ROOT, 'bin/polytun.js'), 'server', '--listen', `tcp://0.0.0.0:${PORTS.polytun}`, '--data-dir', this.dataDir, '--host', '127.0.0.1', '--allow', '127.0.0.1', ...(opts.serverArgs ?? [])],
      { name: 'polytun server' },
    );
    this.link0 = (await this.server.waitForLine(/^(polytun:\/\/\S+)/))[1] ?? '';
  }

  /** Starts a relay in the server namespace: `listenHost:listenPort` → 127.0.0.1:targetPort, `delayMs` each way. */
  async startRelay(listenHost: string, listenPort: number, targetPort: number, delayMs: number, controlPort: number, name: string): Promise<LabProc> {
    const relay = this.lab.spawn(
      this.srv,
      process.execPath,
      ['--import', 'tsx', 'test/tools/relay-cli.ts', '--proto', 'tcp', '--listen', `${listenHost}:${listenPort}`, '--target', `127.0.0.1:${targetPort}`,
        '--delay', String(delayMs), '--control', `127.0.0.1:${controlPort}`],
      { cwd: ROOT, name },
    );
    await relay.waitForLine(/relay listening/);
    return relay;
  }

  /** Where the client dials polytun over link `i`: its relay, or (`direct`) the server. */
  entryOf(i: number, direct = false): { host: string; port: number } {
    const l = this.linkAt(i);
    return direct ? { host: l.veth.bAddr, port: PORTS.polytun } : l.entry;
  }

  /** The polytun link rewritten to enter through link `i`. */
  linkVia(i: number, direct = false): string {
    const e = this.entryOf(i, direct);
    return this.link0.replace(/@[^/?#]+/, `@${e.host}:${e.port}`);
  }

  /** `tcp://HOST:PORT` of link `i`'s entry, for --path. */
  pathUrl(i: number, direct = false): string {
    const e = this.entryOf(i, direct);
    return `tcp://${e.host}:${e.port}`;
  }

  linkAt(i: number): BondLink {
    const l = this.links[i];
    if (!l) throw new LabError(`no link ${i}`);
    return l;
  }

  /** Starts `polytun client` in the client namespace; resolves once every path is up. */
  async startClient(init: ClientInit): Promise<LabProc> {
    const paths = init.paths ?? [];
    const direct = init.direct ?? false;
    const args = [...(init.nodeOptions ?? []), join(ROOT, 'bin/polytun.js'), 'client', this.linkVia(init.first, direct), '--socks', `127.0.0.1:${PORTS.socks}`, '--status', `127.0.0.1:${PORTS.status}`];
    for (const p of paths) args.push('--path', `${this.pathUrl(p.link, direct)}${p.role ? `,role=${p.role}` : ''}`);
    const client = this.lab.spawn(this.cli, process.execPath, [...args, ...(init.extra ?? [])], { name: 'polytun client' });
    await client.waitForLine(/socks5 ready/);
    await this.waitPaths(paths.length + 1, client);
    return client;
  }

  /** Polls the client's status until `n` paths are up. */
  async waitPaths(n: number, client: LabProc, ms = 20_000): Promise<PathStatus[]> {
    const end = Date.now() + ms;
    for (;;) {
      const st = await this.status();
      if (st.paths.length === n && st.paths.every((p) => p.state === 'up')) return st.paths;
      if (Date.now() > end) throw new LabError(`${n} paths not up within ${ms} ms: ${JSON.stringify(st.paths)}; client log:\n${client.log()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The client's status answer. */
  async status(): Promise<{ state: string; paths: PathStatus[] }> {
    const out = await this.lab.run(this.cli, 'curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${PORTS.status}/status`]);
    return JSON.parse(out) as { state: string; paths: PathStatus[] };
  }

  /** Sends one command to link `i`'s relay control port; resolves with its JSON reply. */
  async relay(i: number, cmd: string): Promise<Record<string, unknown>> {
    const port = this.linkAt(i).controlPort;
    if (port === undefined) throw new LabError(`link ${i} has no relay`);
    return this.control(port, cmd);
  }

  /** Sends one command to a relay control port in the server namespace. */
  async control(port: number, cmd: string): Promise<Record<string, unknown>> {
    const out = await this.lab.run(this.srv, 'bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}; printf '%s\\n' "$1" >&3; head -n1 <&3`, 'relay-control', cmd]);
    const reply = JSON.parse(out) as Record<string, unknown>;
    if (reply.ok !== true) throw new LabError(`relay control '${cmd}': ${out}`);
    return reply;
  }

  /** Bytes the relay of link `i` carried towards the client (server → client). */
  async relayBytesDown(i: number): Promise<number> {
    const r = await this.relay(i, 'stats');
    return (r.stats as { bytesDown: number }).bytesDown;
  }

  /**
   * Downloads `path` from the target through the client's SOCKS5 front (curl
   * in the client namespace), hashing and timing every chunk here.
   * `onChunk` sees the running byte count (e.g. to cut a link mid-way);
   * aborting `signal` stops curl and resolves with what arrived so far.
   * When no byte arrives for `stallTimeoutMs` the download fails (a stuck
   * session must fail the test, not hang it).
   */
  download(path: string, opts: { onChunk?: (bytes: number) => void; signal?: AbortSignal; stallTimeoutMs?: number } = {}): Promise<DownloadResult> {
    const url = `http://127.0.0.1:${PORTS.target}${path}`;
    const child = spawn('ip', ['netns', 'exec', this.cli, 'curl', '-sS', '--fail', '--socks5-hostname', `127.0.0.1:${PORTS.socks}`, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    const h = createHash('sha256');
    const startedAt = performance.now();
    const times: number[] = [];
    const totals: number[] = [];
    let bytes = 0;
    let last = startedAt;
    let maxGapMs = 0;
    let maxGapEndMs = 0;
    let err = '';
    let stalled = false;
    const stallMs = opts.stallTimeoutMs ?? 30_000;
    const watchdog = setInterval(() => {
      if (performance.now() - last < stallMs) return;
      stalled = true;
      child.kill('SIGTERM');
    }, 1000);
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout.on('data', (c: Buffer) => {
      const now = performance.now();
      h.update(c);
      bytes += c.length;
      if (bytes > c.length && now - last > maxGapMs) {
        maxGapMs = now - last;
        maxGapEndMs = now - startedAt;
      }
      last = now;
      times.push(now - startedAt);
      totals.push(bytes);
      opts.onChunk?.(bytes);
    });
    const onAbort = (): void => void child.kill('SIGTERM');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise((resolve, reject) => {
      child.on('error', (e) => {
        clearInterval(watchdog);
        reject(e);
      });
      child.on('close', (code) => {
        clearInterval(watchdog);
        opts.signal?.removeEventListener('abort', onAbort);
        if (stalled) return reject(new LabError(`download of ${url} stalled: no byte for ${stallMs} ms after ${bytes} bytes`));
        if (code !== 0 && !opts.signal?.aborted) return reject(new LabError(`curl ${url} exited ${code} after ${bytes} bytes: ${err.trim()}`));
        resolve({ bytes, sha256: h.digest('hex'), ms: performance.now() - startedAt, maxGapMs, maxGapEndMs, times, totals, startedAt });
      });
    });
  }

  /** Stops everything and removes the namespaces and the server's data dir. */
  async cleanup(): Promise<void> {
    await this.lab.cleanup();
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A path as the client's status endpoint reports it. */
export interface PathStatus {
  id: number;
  label: string;
  role: 'primary' | 'backup';
  state: 'joining' | 'up';
  rttMs?: number;
  bytesSent: number;
  bytesReceived: number;
  rateBytesPerSec: number;
  inflightBytes: number;
}

/** Mbit/s of `bytes` over `ms`. */
export function mbps(bytes: number, ms: number): number {
  return (bytes * 8) / 1000 / ms;
}
