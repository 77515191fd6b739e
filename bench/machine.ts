/**
 * What machine a benchmark ran on, printed first and kept in the JSON
 * results: figures from two machines differ far more than two commits do
 * (a record cipher's speed alone varies 2.5× between CPUs with and without
 * AES acceleration), so every result names its CPU, cores and the speed of
 * each AEAD on it.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { RECORD_CIPHERS, aeadImplementation, createRecordAead } from '../src/secure/aead.js';

/** See the file comment. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  /** CPU flags that decide cipher speed (from /proc/cpuinfo). */
  flags: string[];
  memGiB: number;
  kernel: string;
  node: string;
  commit: string | undefined;
  /** Seal speed on 64 KiB records, GB/s (10^9 bytes), one core. */
  aeadGBps: Record<string, number>;
}

const RECORD = 64 * 1024;
const WANTED_FLAGS = ['aes', 'vaes', 'avx2', 'avx512f', 'pclmulqdq', 'sha_ni', 'neon', 'asimd', 'pmull'];

function cpuFlags(): string[] {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info)?.[1] ?? '';
    const have = new Set(line.split(/\s+/));
    return WANTED_FLAGS.filter((f) => have.has(f));
  } catch {
    return []; // not Linux: the model name still tells a lot
  }
}

function commit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined; // not a git checkout (an npm install)
  }
}

/** Bytes per second of `seal` over `ms` of repeated 64 KiB records. */
function rate(seal: () => void, ms: number): number {
  for (let i = 0; i < 16; i++) seal(); // warm-up: JIT, cipher tables
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 8; i++) seal();
    n += 8;
    now = performance.now();
  }
  return (n * RECORD) / ((now - start) / 1000) / 1e9;
}

/** node:crypto's one-shot AEAD, as a cipher object per record (what a naive record layer does). */
function nodeSeal(alg: 'chacha20-poly1305' | 'aes-128-gcm' | 'aes-256-gcm'): () => void {
  const key = randomBytes(alg === 'aes-128-gcm' ? 16 : 32);
  const iv = randomBytes(12);
  const src = randomBytes(RECORD);
  return () => {
    // (one overload per mode: the union does not pick one)
    const c = alg === 'chacha20-poly1305' ? createCipheriv(alg, key, iv, { authTagLength: 16 }) : createCipheriv(alg, key, iv, { authTagLength: 16 });
    c.update(src);
    c.final();
    c.getAuthTag();
  };
}

/** Measures the machine; about 1 s per AEAD at the default. */
export function machineInfo(msPerAead = Number(process.env.BENCH_AEAD_MS ?? 300)): MachineInfo {
  const aeadGBps: Record<string, number> = {};
  for (const alg of ['chacha20-poly1305', 'aes-128-gcm', 'aes-256-gcm'] as const) aeadGBps[`node:crypto ${alg}`] = rate(nodeSeal(alg), msPerAead);
  const src = randomBytes(RECORD);
  const dst = Buffer.allocUnsafe(RECORD + 16);
  // Both record ciphers the handshake may pick (secure/cipher.ts), as the record layer calls them.
  for (const alg of RECORD_CIPHERS) {
    const rec = createRecordAead(randomBytes(32), true, aeadImplementation, alg);
    let counter = 0;
    aeadGBps[`polytun record (${aeadImplementation}) ${alg}`] = rate(() => rec.seal(src, 0, RECORD, dst, 0, 0x1234, counter++), msPerAead);
  }
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    flags: cpuFlags(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    commit: commit(),
    aeadGBps,
  };
}

/** The lines `npm run bench` prints first. */
export function formatMachine(m: MachineInfo): string[] {
  return [
    `# machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB; flags: ${m.flags.join(' ') || 'none found'}; Linux ${m.kernel}; Node ${m.node}; commit ${m.commit ?? 'unknown'}`,
    `# AEAD seal, 64 KiB records, one core: ${Object.entries(m.aeadGBps)
      .map(([k, v]) => `${k} ${v.toFixed(2)} GB/s`)
      .join(', ')}`,
  ];
}
