/**
 * ImpairLab (root only): two hosts joined through the `impair` link
 * emulator (native/tools/impair/, built by scripts/build-impair.sh), which
 * gives every frame between them — TCP, UDP, anything IP — delay, jitter,
 * loss (random and Gilbert-Elliott bursts), reordering, duplication and a
 * rate-limited drop-tail queue, each direction on its own. This kernel has
 * no netem; the relays in test/tools/ only see datagrams or byte streams,
 * while this works on packets, so TCP's congestion control meets real loss.
 *
 *   ns a                    ns m                                  ns b
 *   ┌──────────────────┐    ┌──────────────────────────────┐    ┌──────────────────┐
 *   │ <tag>a 10.N.0.1  ├────┤ <tag>ma ──ab──▶ impair ──▶ <tag>mb├────┤ <tag>b 10.N.0.2  │
 *   │          /24     │    │ <tag>ma ◀── impair ◀──ba── <tag>mb│    │          /24     │
 *   └──────────────────┘    └──────────────────────────────┘    └──────────────────┘
 *
 * a and b share one subnet: impair bridges Ethernet frames, m has no
 * addresses. IPv6 is off in all three (no router solicitations or DAD in
 * the counters). Segmentation offloads are off on every veth, so frames
 * stay within the MTU and loss hits single packets. Names carry a random
 * tag; destroy() (also run by the Lab exit hook) kills the processes and
 * deletes the namespaces, taking the veths along.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Lab, LabError, labUnavailableReason, type LabProc } from '../lab/netns.js';
import { ROOT } from './cli.js';

export const IMPAIR_BIN = join(ROOT, 'native/build/impair');
const IMPAIR_SRC = join(ROOT, 'native/tools/impair');

/** One direction's impairments; every field defaults to "none". */
export interface Impairment {
  /** One-way delay. @default 0 */
  delayMs: number;
  /** Uniform extra delay in [-jitterMs, +jitterMs]; order is kept. @default 0 */
  jitterMs: number;
  /** Independent loss probability. @default 0 */
  loss: number;
  /** Gilbert-Elliott bursts: P(good→bad), P(bad→good), loss in bad. @default off */
  burst: { p: number; r: number; h?: number } | undefined;
  /** Probability that a packet is held back `reorderMs` (later ones overtake it). @default 0 */
  reorder: number;
  /** @default 10 */
  reorderMs: number;
  /** Probability that a packet is sent twice. @default 0 */
  dup: number;
  /** Bottleneck rate in Mbit/s of Ethernet frame bytes; 0 = unlimited. @default 0 */
  rateMbit: number;
  /** Drop-tail queue bound in ms at the rate (ignored when queueBytes is set). @default 100 */
  queueMs: number;
  /** Drop-tail queue bound in bytes. @default undefined (queueMs applies) */
  queueBytes: number | undefined;
  /** Bytes charged per frame on top of its length (e.g. 24 for preamble, FCS and gap). @default 0 */
  overhead: number;
}

/** Impairments for both directions, with `ab` (a → b) and `ba` overriding. */
export type ImpairInit = Partial<Impairment> & { ab?: Partial<Impairment>; ba?: Partial<Impairment> };

const NONE: Impairment = {
  delayMs: 0, jitterMs: 0, loss: 0, burst: undefined, reorder: 0, reorderMs: 10, dup: 0, rateMbit: 0, queueMs: 100, queueBytes: undefined, overhead: 0,
};

/** One direction's counters, as impair prints them. */
export interface DirCounters {
  rx: number;
  rx_bytes: number;
  tx: number;
  tx_bytes: number;
  /** ARP and other non-IP frames (never lost, duplicated or reordered). */
  non_ip: number;
  dup: number;
  reordered: number;
  /** Frames waiting in the delay line right now. */
  queued: number;
  drop: { loss: number; burst: number; queue: number; limit: number; gso: number; send: number; kernel: number };
}

export interface ImpairCounters {
  ab: DirCounters;
  ba: DirCounters;
}

/** The flags that give direction `prefix` (`''`, `ab-` or `ba-`) exactly `imp`. */
function dirFlags(prefix: string, imp: Impairment): string[] {
  const b = imp.burst;
  return [
    [`delay-ms`, imp.delayMs], [`jitter-ms`, imp.jitterMs], [`loss`, imp.loss],
    [`burst`, b ? `${b.p},${b.r},${b.h ?? 1}` : 'off'], [`reorder`, imp.reorder], [`reorder-ms`, imp.reorderMs],
    [`dup`, imp.dup], [`rate-mbit`, imp.rateMbit],
    imp.queueBytes !== undefined ? [`queue-bytes`, imp.queueBytes] : [`queue-ms`, imp.queueMs], [`overhead`, imp.overhead],
  ].flatMap(([k, v]) => [`--${prefix}${String(k)}`, String(v)]);
}

/** impair flags setting every impairment of both directions (unset fields go back to none). */
export function impairFlags(init: ImpairInit): string[] {
  const { ab, ba, ...both } = init;
  const base = { ...NONE, ...both };
  return [...dirFlags('ab-', { ...base, ...ab }), ...dirFlags('ba-', { ...base, ...ba })];
}

/** Builds native/build/impair when it is missing or older than a source file; returns its path. */
export function ensureImpairBuilt(): string {
  const built = existsSync(IMPAIR_BIN) ? statSync(IMPAIR_BIN).mtimeMs : 0;
  const newest = Math.max(...readdirSync(IMPAIR_SRC).map((f) => statSync(join(IMPAIR_SRC, f)).mtimeMs));
  if (built < newest) execFileSync('bash', [join(ROOT, 'scripts/build-impair.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  return IMPAIR_BIN;
}

/** Why an ImpairLab cannot run here, or undefined when it can. */
export function impairLabUnavailableReason(): string | undefined {
  const lab = labUnavailableReason();
  if (lab !== undefined) return lab;
  try {
    ensureImpairBuilt();
  } catch (err) {
    return `cannot build native/build/impair (no C compiler?): ${(err as Error).message}`;
  }
  return undefined;
}

/** The running bridge: stdin commands answered one JSON line each, in order. */
class Bridge {
  private readonly replies: Array<(line: Record<string, unknown>) => void> = [];
  private readonly early: Record<string, unknown>[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  last: ImpairCounters | undefined;
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr?.on('data', (d: Buffer) => (this.stderr = `${this.stderr}${d.toString()}`.slice(-8192)));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (msg.type === 'stats') this.last = msg as unknown as ImpairCounters;
      const waiter = this.replies.shift();
      if (waiter) waiter(msg);
      else this.early.push(msg);
    });
  }

  /** The next line impair prints (after any already waiting). */
  next(what: string, ms = 10_000): Promise<Record<string, unknown>> {
    const ready = this.early.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new LabError(`impair: no ${what} within ${ms} ms; stderr: ${this.stderr}`)), ms);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        const i = this.replies.indexOf(ok);
        if (i >= 0) this.replies.splice(i, 1);
        reject(err);
      };
      const ok = (line: Record<string, unknown>): void => {
        clearTimeout(timer);
        resolve(line);
      };
      this.replies.push(ok);
      void this.exited.then((code) => fail(new LabError(`impair exited (${code}) before its ${what}; stderr: ${this.stderr}`)));
    });
  }

  /** Writes one command and resolves with its answer; commands run one at a time. */
  command(line: string): Promise<Record<string, unknown>> {
    const run = async (): Promise<Record<string, unknown>> => {
      const answer = this.next(`answer to '${line}'`);
      this.child.stdin?.write(`${line}\n`);
      const msg = await answer;
      if (msg.type === 'error') throw new LabError(`impair refused '${line}': ${String(msg.error)}`);
      return msg;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }
}

/** Where things are in an ImpairLab. */
export class ImpairLab {
  readonly lab: Lab;
  a = '';
  b = '';
  m = '';
  readonly aAddr: string;
  readonly bAddr: string;
  private bridge: Bridge | undefined;

  private constructor(name: string, net: number) {
    this.lab = new Lab(name);
    this.aAddr = `10.${net}.0.1`;
    this.bAddr = `10.${net}.0.2`;
  }

  /**
   * Builds the namespaces and veths and starts impair with `init` and `seed`.
   * `net` picks the subnet 10.NET.0.0/24 (namespaces are private, so any
   * value works; it only makes addresses recognisable). Cleans up on failure.
   */
  static async create(name: string, init: ImpairInit = {}, opts: { seed?: number; net?: number } = {}): Promise<ImpairLab> {
    const bin = ensureImpairBuilt();
    const il = new ImpairLab(name, opts.net ?? 77);
    try {
      await il.build(bin, init, opts.seed ?? 1);
    } catch (err) {
      await il.destroy();
      throw err;
    }
    return il;
  }

  private async build(bin: string, init: ImpairInit, seed: number): Promise<void> {
    const { lab } = this;
    this.a = await lab.host('a');
    this.m = await lab.host('m');
    this.b = await lab.host('b');
    for (const ns of [this.a, this.m, this.b]) {
      await lab.run(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']).catch(() => undefined);
    }
    const t = lab.tag;
    const [aIf, maIf, mbIf, bIf] = [`${t}a`, `${t}ma`, `${t}mb`, `${t}b`];
    await lab.run(undefined, 'ip', ['link', 'add', aIf, 'netns', this.a, 'type', 'veth', 'peer', 'name', maIf, 'netns', this.m]);
    await lab.run(undefined, 'ip', ['link', 'add', bIf, 'netns', this.b, 'type', 'veth', 'peer', 'name', mbIf, 'netns', this.m]);
    await lab.run(this.a, 'ip', ['addr', 'add', `${this.aAddr}/24`, 'dev', aIf]);
    await lab.run(this.b, 'ip', ['addr', 'add', `${this.bAddr}/24`, 'dev', bIf]);
    for (const [ns, dev] of [[this.a, aIf], [this.m, maIf], [this.m, mbIf], [this.b, bIf]] as const) {
      await lab.run(ns, 'ip', ['link', 'set', 'dev', dev, 'up']);
    }
    // The senders' veths must cut TCP super-frames themselves (impair does its own two).
    for (const [ns, dev] of [[this.a, aIf], [this.b, bIf]] as const) {
      const out = await lab.run(ns, bin, ['--offloads-off', dev]).catch((err: unknown) => {
        throw new LabError(`could not turn offloads off on ${dev}: ${String(err)}`);
      });
      if (!out.includes('"still_on":[]')) throw new LabError(`offloads still on at ${dev}: ${out.trim()}`);
    }
    const child = spawn('ip', ['netns', 'exec', this.m, bin, '--a', maIf, '--b', mbIf, '--seed', String(seed), ...impairFlags(init)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.bridge = new Bridge(child);
    const ready = await this.bridge.next('ready line');
    if (ready.type !== 'ready') throw new LabError(`impair: expected its ready line, got ${JSON.stringify(ready)}`);
    if (this.bridge.stderr.includes('warning')) throw new LabError(`impair: ${this.bridge.stderr.trim()}`);
  }

  /** Replaces the impairments of both directions while running (fields not given go back to none). */
  async set(init: ImpairInit): Promise<void> {
    await this.need().command(impairFlags(init).join(' '));
  }

  /**
   * Writes one raw stdin command (impairment flags, or `stats`) and resolves
   * with impair's answer; rejects with LabError when impair refuses it.
   */
  command(line: string): Promise<Record<string, unknown>> {
    return this.need().command(line);
  }

  /** The bridge's counters now. */
  async counters(): Promise<ImpairCounters> {
    return (await this.need().command('stats')) as unknown as ImpairCounters;
  }

  /** The counters impair printed last (its final ones after destroy()). */
  get lastCounters(): ImpairCounters | undefined {
    return this.bridge?.last;
  }

  /** Runs a command to completion inside `ns` and resolves with its stdout. */
  exec(ns: string, cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    return this.lab.run(ns, cmd, args, opts);
  }

  /** Starts a long-lived process inside `ns` (stopped by destroy()). */
  spawn(ns: string, cmd: string, args: string[], name?: string): LabProc {
    return this.lab.spawn(ns, cmd, args, name !== undefined ? { name } : {});
  }

  /** Stops impair (its final counters land in lastCounters) and deletes the namespaces. Never throws. */
  async destroy(): Promise<void> {
    const br = this.bridge;
    if (br && br.child.exitCode === null && br.child.signalCode === null) {
      br.child.kill('SIGTERM');
      const t = setTimeout(() => br.child.kill('SIGKILL'), 3000);
      await br.exited;
      clearTimeout(t);
    }
    await this.lab.cleanup();
  }

  private need(): Bridge {
    if (!this.bridge || this.bridge.child.exitCode !== null) throw new LabError(`impair is not running${this.bridge ? `; stderr: ${this.bridge.stderr}` : ''}`);
    return this.bridge;
  }
}
