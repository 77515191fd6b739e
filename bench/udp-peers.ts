/**
 * The processes `npm run bench -- udp` (bench/udp.ts) starts inside its lab
 * namespaces: the built polytun CLI (server and clients), kcptun (Debian's
 * `kcptun-server` and `kcptun-client`, with PEER-BENCH.md's two settings)
 * and the traffic ends of bench/udp-traffic.mjs. Each is a LabProc of
 * test/lab/netns.ts, so the lab's cleanup stops whatever is left.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../test/helpers/cli.js';
import { LabError, type Lab, type LabProc } from '../test/lab/netns.js';
import { which } from './peers.js';
import { benchServerArgs } from './proxy.js';

const BIN = join(ROOT, 'bin/polytun.js');
/** The traffic ends (plain node: no tsx start-up on a loaded machine). */
export const TRAFFIC = join(ROOT, 'bench/udp-traffic.mjs');

/**
 * Resolves with the first match of `re` in `p`'s output so far or to come
 * (polled: LabProc.waitForLine drops lines that arrive while it waits for
 * another pattern, and two links arrive in one chunk).
 */
export async function waitForLog(p: LabProc, re: RegExp, ms = 20_000): Promise<RegExpMatchArray> {
  const end = performance.now() + ms;
  for (;;) {
    const m = p.log().match(re);
    if (m) return m;
    if (p.child.exitCode !== null || p.child.signalCode !== null) throw new LabError(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) before printing ${re}; log:\n${p.log().slice(-4000)}`);
    if (performance.now() > end) throw new LabError(`${p.name}: nothing matching ${re} within ${ms} ms; log:\n${p.log().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts bench/udp-traffic.mjs serve on host:port in `ns`. */
export async function startTarget(lab: Lab, ns: string, host: string, port: number): Promise<LabProc> {
  const p = lab.spawn(ns, process.execPath, [TRAFFIC, 'serve', host, String(port)], { name: 'target' });
  await waitForLog(p, /^target ready/m);
  return p;
}

/** A running polytun server and the links it printed, one per --listen, in order. */
export interface PolytunServer {
  proc: LabProc;
  links: string[];
  /** Removes its data dir (after the lab stopped it). */
  cleanup(): void;
}

/** `polytun server` with `listens` (udp://, tcp:// URLs) in `ns`, letting clients reach `allow`. */
export async function startPolytunServer(lab: Lab, ns: string, listens: string[], allow: string): Promise<PolytunServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'polytun-bench-udp-'));
  const args = [BIN, 'server', ...listens.flatMap((l) => ['--listen', l]), '--data-dir', dataDir, '--allow', allow, '--log-level', 'warn', ...benchServerArgs()];
  const proc = lab.spawn(ns, process.execPath, args, { name: 'polytun server' });
  try {
    const end = performance.now() + 30_000;
    let links: string[];
    while ((links = [...proc.log().matchAll(/^polytun:\/\/\S+$/gm)].map((m) => m[0])).length < listens.length) {
      if (proc.child.exitCode !== null || performance.now() > end) throw new LabError(`polytun server printed ${links.length} of ${listens.length} links; log:\n${proc.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // A link names its carrier (t=udp); a tcp link has no t= at all.
    const ordered = listens.map((l) => links.find((k) => (l.startsWith('udp:') ? k.includes('t=udp') : !k.includes('t='))) ?? '');
    if (ordered.includes('')) throw new LabError(`cannot match links ${links.join(' ')} to listeners ${listens.join(' ')}`);
    return { proc, links: ordered, cleanup: () => rmSync(dataDir, { recursive: true, force: true }) };
  } catch (err) {
    await proc.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * `polytun client LINK -L 127.0.0.1:entry:target` in `ns`, resolved once
 * the forward is ready (the session is up). BENCH_UDP_CLIENT_ARGS adds
 * flags (e.g. `--cc cubic --udp-mode fast3`), as BENCH_SERVER_ARGS does
 * for the server.
 */
export async function startPolytunClient(lab: Lab, ns: string, link: string, entry: number, target: string): Promise<LabProc> {
  const extra = (process.env.BENCH_UDP_CLIENT_ARGS ?? '').split(' ').filter((a) => a !== '');
  const args = [BIN, 'client', link, '--no-socks', '--no-status', '-L', `127.0.0.1:${entry}:${target}`, ...extra];
  const p = lab.spawn(ns, process.execPath, args, { name: 'polytun client' });
  try {
    await waitForLog(p, /forward ready/);
  } catch (err) {
    await p.stop();
    throw err;
  }
  return p;
}

/** PEER-BENCH.md's two kcptun settings. */
export type KcptunProfile = 'default' | 'tuned';

/**
 * Flags of each profile, the same on both ends. `default` leaves kcptun's
 * own: mode fast, FEC 10+3, compression on, windows 128/512 (client) and
 * 1024/1024 (server). `tuned` is the recipe: fast3, FEC off, no
 * compression, windows 4096, MTU 1350.
 */
export const KCPTUN_FLAGS: Record<KcptunProfile, string[]> = {
  default: [],
  tuned: ['--mode', 'fast3', '--nocomp', '--ds', '0', '--ps', '0', '--sndwnd', '4096', '--rcvwnd', '4096', '--mtu', '1350'],
};
const KCPTUN_COMMON = ['--key', 'polytun-bench', '--crypt', 'aes', '--quiet'];

/** Why kcptun cannot be measured here, or undefined. */
export function kcptunMissing(): string | undefined {
  return which('kcptun-server') && which('kcptun-client') ? undefined : 'kcptun-server/kcptun-client not installed (bash scripts/install-bench-deps.sh)';
}

/** `kcptun-server -l listen -t target` in `ns`. */
export async function startKcptunServer(lab: Lab, ns: string, profile: KcptunProfile, listen: string, target: string): Promise<LabProc> {
  const p = lab.spawn(ns, which('kcptun-server') ?? 'kcptun-server', ['-l', listen, '-t', target, ...KCPTUN_COMMON, ...KCPTUN_FLAGS[profile]], { name: `kcptun-server ${profile}` });
  await waitForLog(p, /key derivation done/);
  return p;
}

/**
 * `kcptun-client -l 127.0.0.1:entry -r remote` in `ns`. Its TCP port opens
 * a moment after the line we wait for; the traffic ends retry a refused
 * connect.
 */
export async function startKcptunClient(lab: Lab, ns: string, profile: KcptunProfile, entry: number, remote: string): Promise<LabProc> {
  const p = lab.spawn(ns, which('kcptun-client') ?? 'kcptun-client', ['-l', `127.0.0.1:${entry}`, '-r', remote, ...KCPTUN_COMMON, ...KCPTUN_FLAGS[profile]], { name: `kcptun-client ${profile}` });
  await waitForLog(p, /key derivation done/);
  return p;
}
