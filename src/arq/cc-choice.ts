/**
 * The user's choice of congestion controller (`--cc bbr|cubic|fixed:RATE`)
 * and the kcptun-style presets (`--udp-mode`), parsed once and turned into
 * a fresh controller per path.
 */
import { Bbr } from './bbr.js';
import type { CongestionController } from './congestion.js';
import { Cubic } from './cubic.js';
import { FixedRate } from './fixed-rate.js';

/** A parsed `--cc`. `rate` in bytes per second. */
export type CcChoice = { kind: 'bbr' } | { kind: 'cubic' } | { kind: 'fixed'; rate: number };

const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9 };

/**
 * Parses a rate in bits per second: `40mbit`, `40M`, `1.5gbit`, `800kbit`,
 * `100000` (bits). Returns bytes per second, or an error text.
 */
export function parseBitRate(text: string): number | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps|b)?(?:\/s)?\s*$/i.exec(text);
  if (!m) return `bad rate '${text}' (examples: 40mbit, 800kbit, 1.5gbit)`;
  const bits = Number(m[1]) * (UNITS[(m[2] ?? '').toLowerCase()] as number);
  if (!(bits >= 8_000)) return `rate '${text}' is below 8 kbit/s`;
  return bits / 8;
}

/** Parses `bbr`, `cubic` or `fixed:RATE`; returns the choice or an error text. */
export function parseCc(text: string): CcChoice | string {
  const t = text.trim().toLowerCase();
  if (t === 'bbr' || t === 'cubic') return { kind: t };
  if (t.startsWith('fixed:')) {
    const r = parseBitRate(t.slice(6));
    return typeof r === 'string' ? r : { kind: 'fixed', rate: r };
  }
  return `unknown congestion controller '${text}' (bbr, cubic or fixed:RATE such as fixed:40mbit)`;
}

/** The text form of a choice (logs, status). */
export function formatCc(c: CcChoice): string {
  return c.kind === 'fixed' ? `fixed:${Math.round((c.rate * 8) / 1e5) / 10}mbit` : c.kind;
}

/** A new controller for one path. `maxRate` caps a fixed rate (the server's per-user cap), bytes per second. */
export function makeController(c: CcChoice, datagramBytes: number, maxRate?: number): CongestionController {
  if (c.kind === 'cubic') return new Cubic({ datagramBytes });
  if (c.kind === 'fixed') return new FixedRate({ rate: c.rate, maxRate, datagramBytes });
  return new Bbr({ datagramBytes });
}
