/**
 * The user's choice of congestion controller (`--cc bbr|cubic|fixed:RATE`)
 * and the kcptun-style presets (`--udp-mode`), parsed once and turned into
 * a fresh controller per path.
 */
import { Bbr } from './bbr.js';
import type { CongestionController } from './congestion.js';
import { Cubic } from './cubic.js';
import { FixedRate } from './fixed-rate.js';
import { BULK_ACK_THRESHOLD } from './constants.js';

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

/** `c` with a fixed rate lowered to `maxRate` (bytes per second; the server's cap), if it asks for more. */
export function capCc(c: CcChoice, maxRate: number | undefined): CcChoice {
  return c.kind === 'fixed' && maxRate !== undefined && c.rate > maxRate ? { kind: 'fixed', rate: maxRate } : c;
}

/** A new controller for one path. */
export function makeController(c: CcChoice, datagramBytes: number): CongestionController {
  if (c.kind === 'cubic') return new Cubic({ datagramBytes });
  if (c.kind === 'fixed') return new FixedRate({ rate: c.rate, datagramBytes });
  return new Bbr({ datagramBytes });
}

/** `--udp-mode`: kcptun's mode names, for people who come from it, mapped to our knobs. */
export const UDP_MODES = ['normal', 'fast', 'fast2', 'fast3'] as const;
export type UdpMode = (typeof UDP_MODES)[number];

/**
 * What each mode sets, on both ends of the path (the client sends its mode
 * to the server): how long a receiver may hold an ACK, and after how many
 * packets it acknowledges at once. Faster modes repair a lost tail sooner
 * and cost more ACK datagrams; none turns congestion control off (kcptun's
 * `nc=1`): `--cc fixed:RATE` is the way to say the rate yourself.
 */
export const UDP_MODE_KNOBS: Readonly<Record<UdpMode, { maxAckDelayMs: number; ackEvery: number; ackEveryBulk: number }>> = {
  normal: { maxAckDelayMs: 25, ackEvery: 2, ackEveryBulk: BULK_ACK_THRESHOLD },
  fast: { maxAckDelayMs: 10, ackEvery: 2, ackEveryBulk: BULK_ACK_THRESHOLD },
  fast2: { maxAckDelayMs: 5, ackEvery: 2, ackEveryBulk: 4 },
  fast3: { maxAckDelayMs: 2, ackEvery: 1, ackEveryBulk: 1 },
};

export const DEFAULT_UDP_MODE: UdpMode = 'fast';

/** What a client asks of the server's side of a udp path, in its handshake. */
export interface TransportParams {
  /** The server's sending controller; undefined: the server's own choice. */
  cc?: CcChoice | undefined;
  mode: UdpMode;
}

const CC_CODES = { bbr: 1, cubic: 2, fixed: 3 } as const;

/**
 * The 8 bytes of transport parameters in the packet handshake
 * (secure/packet-wire.ts TRANSPORT_PARAMS): controller (0 the server's
 * choice, 1 bbr, 2 cubic, 3 fixed), mode (index in UDP_MODES), two zero
 * bytes, the fixed rate in kbit/s (u32).
 */
export function encodeTransportParams(p: TransportParams): Buffer {
  const b = Buffer.alloc(8);
  if (p.cc !== undefined) {
    b[0] = CC_CODES[p.cc.kind];
    if (p.cc.kind === 'fixed') b.writeUInt32BE(Math.min(0xffffffff, Math.max(1, Math.round((p.cc.rate * 8) / 1000))), 4);
  }
  b[1] = UDP_MODES.indexOf(p.mode);
  return b;
}

/** Reads a client's transport parameters; what it does not know falls back to the defaults (never throws). */
export function decodeTransportParams(b: Buffer): TransportParams {
  const mode = UDP_MODES[b[1] ?? -1] ?? DEFAULT_UDP_MODE;
  const kind = b[0];
  const rate = b.length >= 8 ? (b.readUInt32BE(4) * 1000) / 8 : 0;
  const cc: CcChoice | undefined = kind === 1 ? { kind: 'bbr' } : kind === 2 ? { kind: 'cubic' } : kind === 3 && rate >= 1000 ? { kind: 'fixed', rate } : undefined;
  return { cc, mode };
}
