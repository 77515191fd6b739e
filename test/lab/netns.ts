/**
 * A small network-namespace lab builder for lab tests and benchmarks (root
 * only). It makes "hosts" (namespaces), wires them with veth pairs that carry
 * addresses, shapes links with `tc tbf` (this kernel has no netem: delay comes
 * from the userspace relay in test/tools/), runs commands and spawns
 * long-lived processes inside a namespace, and tears everything down:
 *
 *   const lab = new Lab('bond');                  // unique names per instance
 *   const cli = await lab.host('cli');            // ns "pt-bond-<tag>-cli", lo up
 *   const srv = await lab.host('srv');
 *   const a = await lab.link(cli, srv, { a: '10.201.1.1/30', b: '10.201.1.2/30' });
 *   await lab.shape(srv, a.bIf, { rate: '40mbit' });
 *   const p = lab.spawn(srv, 'iperf3', ['-s']);    // tracked, stopped by cleanup()
 *   await lab.cleanup();                          // in after(): also on failure
 *
 *   namespace cli                      namespace srv
 *   ┌──────────────────────┐  veth  ┌──────────────────────┐
 *   │ <tag>a0 10.201.1.1/30├────────┤<tag>b0 10.201.1.2/30 │
 *   └──────────────────────┘        └──────────────────────┘
 *
 * Nothing is created in the root namespace: both ends of each veth pair are
 * moved into lab namespaces, and deleting a namespace deletes its veths. A
 * process exit handler removes what is left if after() never ran.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { PolytunError } from '../../src/core/errors.js';

/** A lab command failed, a process died early, or a wait timed out. */
export class LabError extends PolytunError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LAB', message, options);
  }
}

/** Why a lab cannot run here (not root, no `ip netns`, no `tc`), or undefined when it can. */
export function labUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (creates network namespaces)';
  for (const [cmd, args] of [['ip', ['netns', 'list']], ['tc', ['-V']]] as const) {
    try {
      execFileSync(cmd, args, { stdio: 'ignore' });
    } catch {
      return `\`${cmd} ${args.join(' ')}\` does not work here (iproute2 missing?)`;
    }
  }
  return undefined;
}

/** The two ends of a veth pair. */
export interface VethLink {
  /** Interface name in the first namespace. */
  aIf: string;
  /** Interface name in the second namespace. */
  bIf: string;
  /** Address (without prefix) of each end. */
  aAddr: string;
  bAddr: string;
}

/** Options of {@link Lab.link}. */
export interface LinkInit {
  /** CIDR of the first end, e.g. `10.201.1.1/30`. */
  a: string;
  /** CIDR of the second end. */
  b: string;
}

/** Options of {@link Lab.shape}: `tc qdisc … root tbf rate R burst B latency L`. */
export interface ShapeInit {
  /** e.g. `40mbit`. */
  rate: string;
  /** @default '64kb' */
  burst?: string;
  /** @default '50ms' */
  latency?: string;
}

/** A process running in a lab namespace. */
export interface LabProc {
  readonly name: string;
  readonly child: ChildProcess;
  /** The tail of what it wrote to stdout and stderr, line by line. */
  log(): string;
  /** Resolves with the first output line (stdout or stderr) matching `re`; rejects if the process exits or `ms` pass. */
  waitForLine(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. Idempotent. */
  stop(graceMs?: number): Promise<number | null>;
}

const LIVE = new Set<Lab>();
let exitHookInstalled = false;

/** A set of namespaces and the processes started in them; see the file comment. */
export class Lab {
  /** Short random tag shared by every name this lab creates. */
  readonly tag: string;
  private readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly procs = new Set<LabProc>();
  private links = 0;
  private cleaned: Promise<void> | undefined;

  /** `name` (a few letters) goes into the namespace names, for whoever lists them. */
  constructor(name: string) {
    this.tag = randomBytes(3).toString('hex');
    this.prefix = `pt-${name.replace(/[^a-z0-9]/gi, '').slice(0, 12)}-${this.tag}`;
    LIVE.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const lab of LIVE) lab.cleanupSync();
      });
      // A test runner that times a file out sends SIGTERM: 'exit' alone would
      // not run then, and the lab's processes and namespaces would outlive us.
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.once(sig, () => {
          for (const lab of LIVE) lab.cleanupSync();
          process.exit(128 + (sig === 'SIGTERM' ? 15 : 2));
        });
      }
    }
  }

  /** Creates namespace `<prefix>-<name>` with its loopback up; returns its name. */
  async host(name: string): Promise<string> {
    const ns = `${this.prefix}-${name}`;
    await this.run(undefined, 'ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await this.run(ns, 'ip', ['link', 'set', 'dev', 'lo', 'up']);
    return ns;
  }

  /** Joins namespaces `nsA` and `nsB` with a veth pair, addresses and both ends up. */
  async link(nsA: string, nsB: string, init: LinkInit): Promise<VethLink> {
    const n = this.links++;
    const aIf = `v${this.tag}a${n}`;
    const bIf = `v${this.tag}b${n}`;
    // Created directly inside the namespaces: never visible in the root one.
    await this.run(undefined, 'ip', ['link', 'add', aIf, 'netns', nsA, 'type', 'veth', 'peer', 'name', bIf, 'netns', nsB]);
    await this.run(nsA, 'ip', ['addr', 'add', init.a, 'dev', aIf]);
    await this.run(nsB, 'ip', ['addr', 'add', init.b, 'dev', bIf]);
    await this.run(nsA, 'ip', ['link', 'set', 'dev', aIf, 'up']);
    await this.run(nsB, 'ip', ['link', 'set', 'dev', bIf, 'up']);
    return { aIf, bIf, aAddr: init.a.split('/')[0] ?? '', bAddr: init.b.split('/')[0] ?? '' };
  }

  /** Rate-limits the egress of `dev` in `ns` with a token bucket (replacing any root qdisc). */
  async shape(ns: string, dev: string, s: ShapeInit): Promise<void> {
    await this.run(ns, 'tc', ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', s.rate, 'burst', s.burst ?? '64kb', 'latency', s.latency ?? '50ms']);
  }

  /** Sets `dev` in `ns` up or down (a cable pulled). */
  async setLink(ns: string, dev: string, up: boolean): Promise<void> {
    await this.run(ns, 'ip', ['link', 'set', 'dev', dev, up ? 'up' : 'down']);
  }

  /** The byte counters of `dev` in `ns` (what really crossed the link, headers included). */
  async counters(ns: string, dev: string): Promise<{ txBytes: number; rxBytes: number }> {
    const out = await this.run(ns, 'cat', [`/sys/class/net/${dev}/statistics/tx_bytes`, `/sys/class/net/${dev}/statistics/rx_bytes`]);
    const [tx, rx] = out.trim().split(/\s+/).map(Number);
    return { txBytes: tx ?? 0, rxBytes: rx ?? 0 };
  }

  /**
   * Runs a command to completion (inside `ns`, or in the current namespace
   * when undefined) and resolves with its stdout; rejects with LabError
   * carrying its stderr when it fails or runs longer than `timeoutMs`.
   */
  run(ns: string | undefined, cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    const [file, argv] = ns === undefined ? [cmd, args] : ['ip', ['netns', 'exec', ns, cmd, ...args]];
    return new Promise((resolve, reject) => {
      const child = execFile(file, argv, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new LabError(`\`${[cmd, ...args].join(' ')}\`${ns ? ` in ${ns}` : ''} failed: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout);
      });
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
  }

  /**
   * Starts a long-lived process inside `ns` (stdout and stderr read line by
   * line into log() and waitForLine()). `ip netns exec` execs the command, so the child's pid is the
   * program's own. cleanup() stops it if the test did not.
   */
  spawn(ns: string, cmd: string, args: string[], opts: Pick<SpawnOptions, 'cwd' | 'env'> & { name?: string } = {}): LabProc {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd, env: opts.env ?? process.env });
    let log = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : null))));
    child.on('error', (err) => (log += `\nspawn error: ${err.message}`));
    const backlog: string[] = [];
    let waiter: ((line: string) => void) | undefined;
    // stdout and stderr lines both go to the log (its tail only: a chatty
    // process must not grow the test's memory) and to waitForLine.
    for (const input of [child.stdout, child.stderr]) {
      createInterface({ input: input as NodeJS.ReadableStream }).on('line', (line) => {
        log = `${log}${line}\n`.slice(-256 * 1024);
        if (waiter) waiter(line);
        else if (backlog.length < 1000) backlog.push(line);
      });
    }
    let stopping: Promise<number | null> | undefined;
    const procs = this.procs;
    const p: LabProc = {
      name: opts.name ?? cmd,
      child,
      log: () => log,
      async waitForLine(re, ms = 20_000) {
        for (let line = backlog.shift(); line !== undefined; line = backlog.shift()) {
          const m = line.match(re);
          if (m) return m;
        }
        let timer: NodeJS.Timeout | undefined;
        try {
          return await new Promise<RegExpMatchArray>((resolve, reject) => {
            waiter = (line) => {
              const m = line.match(re);
              if (m) resolve(m);
            };
            timer = setTimeout(() => reject(new LabError(`${p.name}: no line matching ${re} within ${ms} ms; log:\n${log}`)), ms);
            exited.then(
              (code) => reject(new LabError(`${p.name} exited (${code}) before printing ${re}; log:\n${log}`)),
              (err: unknown) => reject(new LabError(`${p.name}: ${String(err)}`)),
            );
          });
        } finally {
          waiter = undefined;
          clearTimeout(timer);
        }
      },
      stop(graceMs = 5000) {
        stopping ??= (async () => {
          procs.delete(p);
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
            try {
              return await exited;
            } finally {
              clearTimeout(t);
            }
          }
          return exited;
        })();
        return stopping;
      },
    };
    this.procs.add(p);
    return p;
  }

  /**
   * Stops every tracked process, kills anything else still running inside
   * the lab's namespaces (only the lab's own children can be there), and
   * deletes the namespaces with their veths. Idempotent; never throws.
   */
  cleanup(): Promise<void> {
    this.cleaned ??= (async () => {
      await Promise.all([...this.procs].map((p) => p.stop(3000)));
      for (const ns of this.namespaces) {
        await this.killRemaining(ns);
        try {
          await this.run(undefined, 'ip', ['netns', 'del', ns]);
        } catch (err) {
          console.log(`# lab cleanup: ${(err as Error).message}`);
        }
      }
      this.namespaces.length = 0;
      LIVE.delete(this);
    })();
    return this.cleaned;
  }

  private async killRemaining(ns: string): Promise<void> {
    let pids: number[];
    try {
      pids = (await this.run(undefined, 'ip', ['netns', 'pids', ns])).split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return; // the namespace is already gone
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }

  /** Last-resort teardown from the process 'exit' handler (synchronous). */
  private cleanupSync(): void {
    for (const p of this.procs) p.child.kill('SIGKILL');
    for (const ns of this.namespaces) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // best effort: the process is exiting anyway
      }
    }
  }
}

/** Waits for a child process to exit (for short-lived processes spawned without Lab.spawn). */
export async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}
