/**
 * A namespace lab for VPN tests and benchmarks (root only):
 *
 * ```
 *   ns C (client)                ns S (server)                   ns T (target, optional)
 *   vc 10.241.1.2/30 ── veth ── vs1 10.241.1.1/30
 *   default via 10.241.1.1       vs2 10.241.2.1/30 ── veth ── vt 10.241.2.2/30
 *                                                                default via 10.241.2.1
 * ```
 *
 * Addresses are private and live only inside the namespaces; names carry a
 * random tag so that parallel runs never meet. `destroy()` kills every
 * process the lab started (by pid) and deletes the namespaces, which takes
 * their veths and TUN devices along.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from './cli.js';

export const CLIENT_IP = '10.241.1.2';
export const SERVER_IP = '10.241.1.1';
export const SERVER_IP2 = '10.241.2.1';
export const TARGET_IP = '10.241.2.2';
export const TARGET_NET = '10.241.2.0/30';

/** Runs a command, resolving with stdout; rejects with stderr in the message. */
export function sh(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A child process whose stdout and stderr lines are kept and can be awaited. */
export class LabProc {
  readonly out: string[] = [];
  readonly err: string[] = [];
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess, readonly name: string) {
    const feed = (into: string[]) => (line: string): void => {
      into.push(line);
      for (const w of [...this.waiters]) w();
    };
    if (child.stdout) createInterface({ input: child.stdout }).on('line', feed(this.out));
    if (child.stderr) createInterface({ input: child.stderr }).on('line', feed(this.err));
    this.exited = new Promise((resolve) => child.once('exit', (code) => {
      for (const w of [...this.waiters]) w();
      resolve(code);
    }));
  }

  /** JSON log lines (pino `--log-format json`) written to stderr so far. */
  logs(): Record<string, unknown>[] {
    return this.err.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  /** Resolves with the first line (stdout or stderr, as JSON when it parses) matching `test`. */
  waitFor(what: string, test: (line: string) => boolean, ms = 20_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = [...this.out, ...this.err].find(test);
        if (hit !== undefined) return done(() => resolve(hit));
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
          return done(() => reject(new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}:\n${this.err.slice(-30).join('\n')}`)));
        }
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${this.name}: no ${what} within ${ms} ms:\n${this.err.slice(-30).join('\n')}`))), ms);
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits for a JSON log line whose `msg` is `msg` (and whose fields match `fields`). */
  async waitLog(msg: string, fields: Record<string, unknown> = {}, ms = 20_000): Promise<Record<string, unknown>> {
    const line = await this.waitFor(`log "${msg}"`, (l) => {
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        return o.msg === msg && Object.entries(fields).every(([k, v]) => o[k] === v);
      } catch {
        return false;
      }
    }, ms);
    return JSON.parse(line) as Record<string, unknown>;
  }

  /** Sends `signal` and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    return this.exited;
  }
}

/** The lab: namespace names and the processes started in them. */
/** Labs not destroyed yet: removed at exit if after() never ran (a runner timeout's SIGTERM, a crash). */
const LIVE = new Set<VpnLab>();
let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const lab of LIVE) lab.destroySync();
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      for (const lab of LIVE) lab.destroySync();
      process.exit(128 + (sig === 'SIGTERM' ? 15 : 2));
    });
  }
}

export class VpnLab {
  readonly procs = new Set<LabProc>();
  private constructor(readonly c: string, readonly s: string, readonly t: string | undefined, private readonly links: string[]) {
    LIVE.add(this);
    installExitHook();
  }

  /** What destroy() does, synchronously, for the exit hook: kill, delete the namespaces. Never throws. */
  destroySync(): void {
    LIVE.delete(this);
    for (const p of this.procs) p.child.kill('SIGKILL');
    for (const ns of this.namespaces) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
  }

  /** Creates the namespaces and links. On failure whatever was made is removed again. */
  static async create(tag: string, withTarget = true): Promise<VpnLab> {
    const lab = new VpnLab(`pv${tag}c`, `pv${tag}s`, withTarget ? `pv${tag}t` : undefined, [`pv${tag}a`, `pv${tag}b`]);
    try {
      for (const ns of lab.namespaces) {
        await sh('ip', ['netns', 'add', ns]);
        await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      }
      await lab.veth(`pv${tag}a`, lab.c, 'vc', `${CLIENT_IP}/30`, lab.s, 'vs1', `${SERVER_IP}/30`);
      await sh('ip', ['-n', lab.c, 'route', 'add', 'default', 'via', SERVER_IP]);
      if (lab.t !== undefined) {
        await lab.veth(`pv${tag}b`, lab.t, 'vt', `${TARGET_IP}/30`, lab.s, 'vs2', `${SERVER_IP2}/30`);
        await sh('ip', ['-n', lab.t, 'route', 'add', 'default', 'via', SERVER_IP2]);
      }
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  get namespaces(): string[] {
    return [this.c, this.s, ...(this.t !== undefined ? [this.t] : [])];
  }

  private async veth(name: string, nsA: string, devA: string, addrA: string, nsB: string, devB: string, addrB: string): Promise<void> {
    // Created under unique names in this namespace, renamed as they move (no clash between runs).
    await sh('ip', ['link', 'add', `${name}x`, 'type', 'veth', 'peer', 'name', `${name}y`]);
    await sh('ip', ['link', 'set', `${name}x`, 'netns', nsA, 'name', devA]);
    await sh('ip', ['link', 'set', `${name}y`, 'netns', nsB, 'name', devB]);
    await sh('ip', ['-n', nsA, 'addr', 'add', addrA, 'dev', devA]);
    await sh('ip', ['-n', nsB, 'addr', 'add', addrB, 'dev', devB]);
    await sh('ip', ['-n', nsA, 'link', 'set', devA, 'up']);
    await sh('ip', ['-n', nsB, 'link', 'set', devB, 'up']);
  }

  /** Runs a command inside `ns` and returns stdout. */
  exec(ns: string, cmd: string, args: readonly string[]): Promise<string> {
    return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /** Starts a long-running command inside `ns`. */
  spawn(ns: string, name: string, cmd: string, args: readonly string[]): LabProc {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new LabProc(child, name);
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** Starts `polytun ARGS` (the built CLI) inside `ns`. */
  polytun(ns: string, name: string, args: readonly string[]): LabProc {
    return this.spawn(ns, name, process.execPath, [join(ROOT, 'bin/polytun.js'), ...args]);
  }

  /** Runs a node script inside `ns` and returns its stdout. */
  node(ns: string, script: string, args: readonly string[] = []): Promise<string> {
    return this.exec(ns, process.execPath, ['-e', script, ...args]);
  }

  /** Kills what is still running (SIGKILL after 3 s of SIGTERM) and deletes the namespaces. */
  async destroy(): Promise<void> {
    LIVE.delete(this);
    await Promise.all([...this.procs].map(async (p) => {
      const t = setTimeout(() => p.child.kill('SIGKILL'), 3000);
      await p.stop();
      clearTimeout(t);
    }));
    for (const ns of this.namespaces) {
      await sh('ip', ['netns', 'del', ns]).catch((err: unknown) => {
        if (!String(err).includes('No such file')) throw err;
      });
    }
    // A veth whose namespace was never made stays in ours: remove it by its unique name.
    for (const l of this.links) await sh('ip', ['link', 'del', `${l}x`]).catch((err: unknown) => {
      if (!/Cannot find device|does not exist/.test(String(err))) throw err;
    });
  }
}

/** Waits until `fn` resolves truthy (polling), or throws after `ms`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The target: HTTP on :8080 answers with the peer address it sees; TCP :7000
// echoes lines; UDP :9000 answers "echo:<payload>" and logs "udp <src> <payload>".
export const TARGET = `
const http = require('node:http'), net = require('node:net'), dgram = require('node:dgram');
const ip = process.argv[1];
const h = http.createServer((req, res) => res.end(JSON.stringify({ remote: req.socket.remoteAddress })));
const t = net.createServer((s) => s.pipe(s));
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => { console.log('udp ' + r.address + ' ' + m.toString()); u.send('echo:' + m.toString(), r.port, r.address); });
let n = 0; const up = () => { if (++n === 3) console.log('ready'); };
h.listen(8080, ip, up); t.listen(7000, ip, up); u.bind(9000, ip, up);
`;

/** GETs a URL and prints the body (or {error}). */
export const HTTP_GET = `
require('node:http').get(process.argv[1], (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(b)); })
  .on('error', (e) => { console.log(JSON.stringify({ error: e.message })); });
`;

// Sends SIZE random bytes to the target's TCP echo and checks what comes back: "intact" or why not.
export const BULK_ECHO = `
const crypto = require('node:crypto');
const [host, size] = process.argv.slice(1);
const data = crypto.randomBytes(Number(size));
const back = [];
let n = 0;
const t = setTimeout(() => { console.log('timeout after ' + n + ' bytes'); process.exit(1); }, 60000);
const sock = require('node:net').connect(7000, host, () => sock.write(data));
sock.on('data', (c) => { back.push(c); n += c.length; if (n >= data.length) { clearTimeout(t); console.log(Buffer.concat(back).equals(data) ? 'intact' : 'corrupted'); sock.destroy(); } });
sock.on('error', (e) => console.log('error ' + e.message));
`;

