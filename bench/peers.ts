/**
 * Third-party programs the proxy benchmark drives: iperf3 (traffic) and
 * shadowsocks-libev (`ss-server` + `ss-tunnel`, the peer we measure the -L
 * path against). Install them with `bash scripts/install-bench-deps.sh`.
 * Every process listens on 127.0.0.1 only.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { PolytunError } from '../src/core/errors.js';

const run = promisify(execFile);

/** A benchmark peer is missing, did not start, or measured nothing. */
export class BenchPeerError extends PolytunError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BENCH_PEER', message, options);
  }
}

/** Absolute path of `cmd` on PATH (plus the sbin folders Debian puts daemons in), or undefined. */
export function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/**
 * User + system CPU time of a process so far, in ms: fields 14 and 15 of
 * /proc/PID/stat, in clock ticks (100/s on Linux). Undefined when it cannot
 * be read (no /proc, the process is gone).
 */
export function processCpuMs(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

/** A child process the benchmark started and must stop. */
export interface Peer {
  readonly name: string;
  readonly child: ChildProcess;
  /** The output line that matched `ready`. */
  readonly readyLine: string;
  /** Everything it printed (stdout and stderr lines) so far. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within 3 s. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `cmd args` and resolves once a line of its stdout or stderr matches
 * `ready` (all output is also kept for the error message if it exits first).
 */
export async function startPeer(name: string, cmd: string, args: string[], ready: RegExp, timeoutMs = 10_000): Promise<Peer> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let readyLine = '';
  const peer: Peer = {
    name,
    child,
    get readyLine() {
      return readyLine;
    },
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      done(new BenchPeerError(`${name} did not become ready within ${timeoutMs} ms; output:\n${out}`));
    }, timeoutMs);
    const onLine = (line: string): void => {
      if (readyLine || !ready.test(line)) return;
      readyLine = line;
      done();
    };
    const onExit = (code: number | null): void => done(new BenchPeerError(`${name} exited (${code}) before it was ready; output:\n${out}`));
    const lines = [createInterface({ input: child.stdout as NodeJS.ReadableStream }), createInterface({ input: child.stderr as NodeJS.ReadableStream })];
    // Output is kept for error messages; the readline interfaces also keep the pipes drained.
    for (const l of lines) l.on('line', (line: string) => (out = out.length < 1 << 20 ? `${out}${line}\n` : out));
    const done = (err?: Error): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      for (const l of lines) l.off('line', onLine);
      if (err) void peer.stop().then(() => reject(err), reject);
      else resolve();
    };
    for (const l of lines) l.on('line', onLine);
    child.once('exit', onExit);
    child.once('error', (err) => done(err));
  });
  return peer;
}

/** `iperf3 -s` on 127.0.0.1:port (serves one test at a time, until stopped). */
export function startIperfServer(port: number): Promise<Peer> {
  const bin = which('iperf3');
  if (!bin) throw new BenchPeerError('iperf3 is not installed (bash scripts/install-bench-deps.sh)');
  // --forceflush: the "listening" line must reach our pipe at once.
  return startPeer('iperf3 -s', bin, ['-s', '--forceflush', '-B', '127.0.0.1', '-p', String(port)], /Server listening/);
}

/** What one iperf3 client run measured. */
export interface IperfResult {
  /** Received bits per second (what the receiving end counted). */
  bitsPerSecond: number;
  bytes: number;
}

/**
 * One single-stream `iperf3 -c 127.0.0.1 -p port -t seconds -J` run; `reverse`
 * makes the server send. An iperf3 server runs one test at a time and notices
 * the end of the last one only when the relay in between has closed both of
 * its connections, so "busy" answers are retried for a while.
 */
export async function runIperf(port: number, seconds: number, reverse = false): Promise<IperfResult> {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])];
  for (let attempt = 0; ; attempt++) {
    let stdout: string;
    try {
      ({ stdout } = await run(which('iperf3') ?? 'iperf3', args, { timeout: (seconds + 30) * 1000, maxBuffer: 16 << 20 }));
    } catch (err) {
      // -J reports its own errors as JSON on stdout, with exit code 1.
      const e = err as { stdout?: string; message: string };
      if (!e.stdout?.trimStart().startsWith('{')) throw new BenchPeerError(`iperf3 ${args.join(' ')} failed: ${e.message}`, { cause: err });
      stdout = e.stdout;
    }
    const r = JSON.parse(stdout) as { error?: string; end?: { sum_received?: { bits_per_second: number; bytes: number } } };
    if (r.error && /busy/i.test(r.error) && attempt < 40) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      continue;
    }
    if (r.error || !r.end?.sum_received) throw new BenchPeerError(`iperf3 ${args.join(' ')}: ${r.error ?? 'no summary'}`);
    return { bitsPerSecond: r.end.sum_received.bits_per_second, bytes: r.end.sum_received.bytes };
  }
}

/** True when ss-server and ss-tunnel are both installed. */
export function haveShadowsocks(): boolean {
  return which('ss-server') !== undefined && which('ss-tunnel') !== undefined;
}

/** The cipher of PEER-BENCH.md's main comparison. */
export const SS_METHOD = 'chacha20-ietf-poly1305';
const SS_PASSWORD = 'benchpass';

/**
 * shadowsocks-libev as a port forwarder: one `ss-server` on `serverPort` and
 * one `ss-tunnel` per entry, each listening on `listen` and forwarding to
 * `target` (a loopback port) through the server.
 */
export async function startShadowsocks(serverPort: number, tunnels: { listen: number; target: number }[]): Promise<Peer[]> {
  const server = which('ss-server');
  const tunnel = which('ss-tunnel');
  if (!server || !tunnel) throw new BenchPeerError('shadowsocks-libev is not installed (bash scripts/install-bench-deps.sh)');
  const common = ['-k', SS_PASSWORD, '-m', SS_METHOD];
  const peers: Peer[] = [];
  try {
    peers.push(await startPeer('ss-server', server, ['-s', '127.0.0.1', '-p', String(serverPort), ...common], /listening at/));
    for (const t of tunnels) {
      const args = ['-s', '127.0.0.1', '-p', String(serverPort), '-b', '127.0.0.1', '-l', String(t.listen), '-L', `127.0.0.1:${t.target}`, ...common];
      peers.push(await startPeer(`ss-tunnel :${t.listen}`, tunnel, args, /listening at/));
    }
  } catch (err) {
    await Promise.all(peers.map((p) => p.stop()));
    throw err;
  }
  return peers;
}
