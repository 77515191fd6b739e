/**
 * Sliding-window anti-replay filter for packet carriers (RFC 6479).
 *
 * The window is a ring of 32-bit blocks. Moving the top forward clears only
 * the blocks it passes over (at most the whole ring), so a packet costs O(1)
 * however far the counter jumps, and nothing is shifted bit by bit.
 *
 * ```
 *   ring (B blocks of 32 bits), block index = floor(counter / 32) mod B
 *   ┌────────┬────────┬────────┬─────┬────────┐
 *   │ blk 0  │ blk 1  │ blk 2  │ ... │ blk B-1│
 *   └────────┴────────┴────────┴─────┴────────┘
 *   accepted: counter > top, or top - counter < windowSize and bit unset
 * ```
 *
 * B = ceil(windowSize / 32) + 1: one spare block so that every counter the
 * window admits still has its own bit while the top's block is partly filled.
 *
 * Counters are JS numbers (integers in [0, 2^53-1]); anything else is refused.
 */
import { ConfigError } from '../core/errors.js';

/** Options of a {@link ReplayWindow}. */
export interface ReplayWindowInit {
  /** How far behind the highest accepted counter a packet may arrive. @default 2048 */
  windowSize?: number | undefined;
}

const BLOCK_BITS = 32;
const MAX_WINDOW = 1 << 24;

/** RFC 6479-style replay filter. Call {@link accept} only for packets that authenticated. */
export class ReplayWindow {
  /** Counters this far or further behind the highest accepted one are refused. */
  readonly windowSize: number;
  readonly #blocks: Uint32Array;
  #top = -1;

  constructor(init: ReplayWindowInit = {}) {
    const size = init.windowSize ?? 2048;
    if (!Number.isInteger(size) || size < 1 || size > MAX_WINDOW) {
      throw new ConfigError('replay windowSize', `must be an integer in [1, ${MAX_WINDOW}], got ${size}`);
    }
    this.windowSize = size;
    this.#blocks = new Uint32Array(Math.ceil(size / BLOCK_BITS) + 1);
  }

  /** Highest counter accepted so far, or -1. */
  get highest(): number {
    return this.#top;
  }

  /** True when `counter` would be accepted now (does not mark it). */
  check(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0) return false;
    if (counter > this.#top) return true;
    if (this.#top - counter >= this.windowSize) return false;
    return (this.#blocks[this.#index(counter)]! & (1 << counter % BLOCK_BITS)) === 0;
  }

  /**
   * Checks and marks `counter` as seen. Returns false for a replay, a counter
   * too old for the window, or an invalid counter.
   */
  accept(counter: number): boolean {
    if (!this.check(counter)) return false;
    if (counter > this.#top) this.#advance(counter);
    this.#blocks[this.#index(counter)]! |= 1 << counter % BLOCK_BITS;
    return true;
  }

  /** Forgets everything (e.g. after a rekey restarts the counters). */
  reset(): void {
    this.#blocks.fill(0);
    this.#top = -1;
  }

  #index(counter: number): number {
    // `%` rather than `&`: counters above 2^31 would break bitwise operators.
    return Math.floor(counter / BLOCK_BITS) % this.#blocks.length;
  }

  #advance(counter: number): void {
    const ring = this.#blocks.length;
    const from = this.#top < 0 ? -1 : Math.floor(this.#top / BLOCK_BITS);
    const to = Math.floor(counter / BLOCK_BITS);
    const passed = Math.min(to - from, ring);
    for (let i = 1; i <= passed; i++) this.#blocks[(to - passed + i) % ring] = 0;
    this.#top = counter;
  }
}
