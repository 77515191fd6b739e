/**
 * Runs the real `polytun` CLI (bin/polytun.js over dist/) as child processes
 * for e2e tests. scripts/run-tests.mjs builds dist/ once; ensureBuilt() only
 * builds when a file is run on its own.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

export const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/polytun.js');
let built = false;

/** Compiles src/ into dist/ (what `npm ci` does through `prepare`). */
export function ensureBuilt(): void {
  // scripts/run-tests.mjs builds once before any file runs; rebuilding here
  // while another file's processes import dist/ would race.
  if (built || process.env.POLYTUN_DIST_BUILT) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
  built = true;
}

export interface Proc {
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its log). */
  log(): string;
  stop(): Promise<number | null>;
}

const procs = new Set<Proc>();

export function polytun(args: string[]): Proc {
  // POLYTUN_CPU_PROF=DIR profiles every polytun process a test starts (node --cpu-prof).
  const prof = process.env.POLYTUN_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.POLYTUN_CPU_PROF}`] : [];
  const child = spawn(process.execPath, [...prof, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  // POLYTUN_LOG_DIR=DIR also keeps each process's log in DIR/<pid>-<command>.log (for long runs read after the fact).
  if (process.env.POLYTUN_LOG_DIR) child.stderr?.pipe(createWriteStream(join(process.env.POLYTUN_LOG_DIR, `${child.pid}-${args[0]}.log`)));
  const p: Proc = {
    child,
    log: () => log,
    async stop() {
      procs.delete(p);
      // A process killed by a signal has signalCode set and exitCode null; its 'exit' has already fired.
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
  procs.add(p);
  return p;
}

/** Stops every process still running (call from after()). */
export async function stopAll(): Promise<void> {
  await Promise.all([...procs].map((p) => p.stop()));
}

export interface Server extends Proc {
  links: string[];
  dataDir: string;
}

/** Starts `polytun server` on a free loopback port; resolves with its printed links. */
export async function startServer(extra: string[] = [], listen = ['tcp://127.0.0.1:0']): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'polytun-e2e-'));
  const p = polytun(['server', ...listen.flatMap((l) => ['--listen', l]), '--data-dir', dataDir, ...extra]);
  const rl = createInterface({ input: p.child.stdout as NodeJS.ReadableStream });
  const links: string[] = [];
  for await (const line of rl) {
    if (line.startsWith('polytun://')) links.push(line);
    if (links.length === listen.length) break;
  }
  if (links.length < listen.length) throw new Error(`server printed no links; log:\n${p.log()}`);
  const stop = p.stop;
  return Object.assign(p, {
    links,
    dataDir,
    async stop() {
      const code = await stop();
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  });
}

/** Resolves once something accepts TCP connections on host:port. */
export async function waitForPort(port: number, host = '127.0.0.1', proc?: Proc, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect(port, host, () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
    });
    if (ok) return;
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) throw new Error(`process exited (${proc.child.exitCode ?? proc.child.signalCode}); log:\n${proc.log()}`);
    if (Date.now() > end) throw new Error(`nothing listening on ${host}:${port}${proc ? `; log:\n${proc.log()}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A free loopback TCP port for a child process to listen on (checked by
 * binding it, then released).
 *
 * Picked at random BELOW the kernel's ephemeral range: ports in that range
 * are handed out all the time by bind(0) and by every outgoing connect() on
 * the machine (concurrent test files make thousands), so a port released
 * there could be taken again before the child binds it. Below the range only
 * explicit binds compete, i.e. other freePort callers picking the same
 * random port. Falls back to bind(0) when the range leaves no room.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  for (let i = 0; low - FREE_PORT_MIN > 1000 && i < 50; i++) {
    const port = FREE_PORT_MIN + Math.floor(Math.random() * (low - FREE_PORT_MIN));
    if ((await bindable(port)) === port) return port;
  }
  const any = await bindable(0);
  if (any === undefined) throw new Error('freePort: cannot bind 127.0.0.1:0');
  return any;
}

/** Lowest port freePort picks (well above well-known and registered service ports in common use). */
const FREE_PORT_MIN = 20_000;

/** Start of the kernel's ephemeral port range (Linux default 32768). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return 32_768;
  }
}

/** Listens on 127.0.0.1:port and closes again; resolves the bound port, or undefined if it was taken. */
async function bindable(port: number): Promise<number | undefined> {
  const srv = net.createServer();
  const ok = await new Promise<boolean>((res) => {
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => res(true));
  });
  if (!ok) return undefined;
  const bound = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return bound;
}

/**
 * Starts `polytun client LINK …`; resolves once `readyPort` accepts
 * connections and the client has logged that it is connected (it opens its
 * local ports before it dials the server). Without `--status` in `extra`
 * the client gets `--no-status`: the default status port (1099) is one per
 * machine, and clients of tests running side by side (or one a developer
 * left running) would fight over it.
 */
export async function startClient(link: string, extra: string[], readyPort: number, ms = 15_000): Promise<Proc> {
  const status = extra.some((a) => a === '--status' || a.startsWith('--status=') || a === '--no-status') ? [] : ['--no-status'];
  const p = polytun(['client', link, ...extra, ...status]);
  await waitForPort(readyPort, '127.0.0.1', p, ms);
  const end = Date.now() + ms;
  while (!/(INFO\s+connected\b|"msg":"connected")/.test(p.log())) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`client exited (${p.child.exitCode ?? p.child.signalCode}); log:\n${p.log()}`);
    if (Date.now() > end) throw new Error(`client not connected; log:\n${p.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return p;
}

/** True when a program is on PATH. */
export function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs the CLI to completion: its exit code (-1 when it was killed) and output. */
export async function runCli(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [BIN, ...args], { timeout: timeoutMs });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
