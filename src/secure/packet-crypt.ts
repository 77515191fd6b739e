/**
 * One AEAD per datagram for the packet secure channel (groundwork for issue
 * 17): the sealing and opening of transport datagrams, one direction each.
 *
 * Nonce: a 64-bit packet counter (aead.ts: 4 zero bytes ‖ u64 LE), sent in
 * the masked header (packet-wire.ts). It only ever grows, so a (key, nonce)
 * pair is never used twice; past 2^53 − 1 (JS integers) the sealer refuses,
 * and the channel must be replaced by a new handshake.
 *
 * Rekey: the key follows the counter. Epoch e = floor(counter / epochPackets)
 * uses key_e = Noise Rekey(key_{e−1}) (spec 4.2: the first 32 bytes of
 * ChaChaPoly(k, 2^64−1, "", zeros)), so both ends know which key a datagram
 * needs from its counter alone: no key-phase bit, no rekey message to lose.
 * A sender also moves to the next epoch (jumping its counter to the epoch's
 * start) after `rekeyAfterMs` under one key. The opener keeps keys for the
 * epochs just behind and ahead of the newest it accepted, derives at most
 * two ahead, and zeroes older ones (what was sent under them stays secret
 * when a later key leaks). epochPackets defaults to 2^20 datagrams (~1.2 GB),
 * well inside AES-GCM's 2^23-packet confidentiality limit (RFC 9001 6.6).
 *
 * Replay: an RFC 6479 window (replay.ts) over the counter, consulted before
 * the AEAD (cheap refusal) and marked only after it authenticated.
 */
import type { Clock } from '../core/clock.js';
import { LimitError } from '../core/errors.js';
import { createRecordAead, type RecordAead, type RecordCipher } from './aead.js';
import { CipherState } from './noise.js';
import { HEADER, HeaderMask, TAG, readHeader, writeHeader, type TransportHeader } from './packet-wire.js';
import { ReplayWindow } from './replay.js';

/** Datagrams sent under one key before the next epoch's key. Both ends must agree (a protocol constant). */
export const EPOCH_PACKETS = 2 ** 20;
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;
const EPOCHS_AHEAD = 2;

/** Options both directions share. */
export interface PacketCryptInit {
  cipher: RecordCipher;
  /** Datagrams per key epoch; tests lower it. Both ends must use the same. @default EPOCH_PACKETS */
  epochPackets?: number;
  /** AEAD implementation (tests compare the two). @default aead.ts's choice */
  impl?: 'native' | 'node:crypto';
}

function nextKey(key: Buffer): Buffer {
  const cs = new CipherState();
  cs.initializeKey(key);
  cs.rekey();
  return cs.exportKey();
}

/** Seals datagrams for one direction. */
export class PacketSealer {
  readonly #init: PacketCryptInit;
  readonly #mask: HeaderMask;
  readonly #epochPackets: number;
  #key: Buffer;
  #aead: RecordAead;
  #epoch = 0;
  #epochStartedAt: number;
  #counter = 0;

  constructor(
    key: Buffer,
    maskKey: Buffer,
    init: PacketCryptInit,
    private readonly clock: Clock,
    /** Move to the next epoch after this long under one key, ms. @default 120000 */
    private readonly rekeyAfterMs = 120_000,
    /** Highest counter this sealer may use (tests lower it). @default 2^53 - 1 */
    private readonly counterLimit = MAX_COUNTER,
  ) {
    this.#init = init;
    this.#epochPackets = init.epochPackets ?? EPOCH_PACKETS;
    this.#key = Buffer.from(key);
    this.#aead = createRecordAead(this.#key, true, init.impl, init.cipher);
    this.#mask = new HeaderMask(maskKey);
    this.#epochStartedAt = clock.now();
  }

  /** The counter the next datagram gets. */
  get nextCounter(): number {
    return this.#counter;
  }

  /** The key epoch datagrams are sealed in now. */
  get epoch(): number {
    return this.#epoch;
  }

  #advanceTo(epoch: number): void {
    while (this.#epoch < epoch) {
      const old = this.#key;
      this.#key = nextKey(old);
      old.fill(0);
      this.#epoch++;
    }
    this.#aead = createRecordAead(this.#key, true, this.#init.impl, this.#init.cipher);
    this.#epochStartedAt = this.clock.now();
  }

  /**
   * Seals `src[off, off+len)` with kind byte `kind` (non-zero) and `pad`
   * zero bytes into a new datagram addressed to `index`. LimitError when the
   * counter space is spent.
   */
  seal(index: number, src: Buffer, off: number, len: number, kind: number, pad: number): Buffer {
    if (this.clock.now() - this.#epochStartedAt >= this.rekeyAfterMs) this.#counter = (this.#epoch + 1) * this.#epochPackets;
    const counter = this.#counter;
    if (counter > this.counterLimit) throw new LimitError('packet counter', 'packet counter space spent: a new handshake is needed');
    const epoch = Math.floor(counter / this.#epochPackets);
    if (epoch !== this.#epoch) this.#advanceTo(epoch);
    this.#counter = counter + 1;
    const ptLen = len + 1 + pad;
    const out = Buffer.allocUnsafe(HEADER + ptLen + TAG);
    writeHeader(out, index, counter);
    src.copy(out, HEADER, off, off + len);
    out[HEADER + len] = kind;
    out.fill(0, HEADER + len + 1, HEADER + ptLen);
    this.#aead.seal(out, HEADER, ptLen, out, HEADER, 0, counter);
    this.#mask.apply(out);
    return out;
  }
}

/** Why a datagram was not opened. */
export type OpenFailure = 'malformed' | 'replayed' | 'forged';

/** A datagram that opened: its plaintext (record and kind), its counter, and whether it is the newest yet. */
export interface Opened {
  kind: number;
  /** The record bytes (inside the datagram, decrypted in place). */
  record: Buffer;
  counter: number;
  newest: boolean;
}

/** Opens datagrams for one direction. */
export class PacketOpener {
  readonly #init: PacketCryptInit;
  readonly #mask: HeaderMask;
  readonly #epochPackets: number;
  readonly #window: ReplayWindow;
  readonly #keys = new Map<number, { key: Buffer; aead: RecordAead | undefined }>();
  #top = 0;
  readonly #hdr = Buffer.alloc(HEADER);

  constructor(key: Buffer, maskKey: Buffer, init: PacketCryptInit, windowSize = 2048) {
    this.#init = init;
    this.#epochPackets = init.epochPackets ?? EPOCH_PACKETS;
    this.#keys.set(0, { key: Buffer.from(key), aead: undefined });
    this.#mask = new HeaderMask(maskKey);
    this.#window = new ReplayWindow({ windowSize });
  }

  /** Epochs whose keys are held now (tests: old keys are dropped). */
  get heldEpochs(): number[] {
    return [...this.#keys.keys()].sort((a, b) => a - b);
  }

  /** The unmasked header of a datagram long enough to carry one, leaving the datagram untouched. */
  peek(datagram: Buffer): TransportHeader | undefined {
    if (datagram.length < HEADER + 1 + TAG) return undefined;
    this.#mask.peek(datagram, this.#hdr);
    return readHeader(this.#hdr);
  }

  #aeadFor(epoch: number): RecordAead | undefined {
    if (epoch < this.#top - 1 || epoch > this.#top + EPOCHS_AHEAD) return undefined;
    let e = this.#keys.get(epoch);
    if (e === undefined) {
      // Derive forward from the newest key held (at most EPOCHS_AHEAD steps).
      let at = Math.max(...this.#keys.keys());
      if (at > epoch) return undefined;
      let key = (this.#keys.get(at) as { key: Buffer }).key;
      while (at < epoch) {
        key = nextKey(key);
        at++;
        this.#keys.set(at, { key, aead: undefined });
      }
      e = this.#keys.get(epoch) as { key: Buffer; aead: RecordAead | undefined };
    }
    e.aead ??= createRecordAead(e.key, false, this.#init.impl, this.#init.cipher);
    return e.aead;
  }

  /**
   * Opens `datagram` in place given its unmasked header `h`: the record and
   * kind, or why not. Never throws for any bytes.
   */
  open(datagram: Buffer, h: TransportHeader): Opened | OpenFailure {
    const ptLen = datagram.length - HEADER - TAG;
    if (ptLen < 1) return 'malformed';
    if (!this.#window.check(h.counter)) return 'replayed';
    const epoch = Math.floor(h.counter / this.#epochPackets);
    const aead = this.#aeadFor(epoch);
    if (aead === undefined || !aead.open(datagram, HEADER, ptLen, 0, h.counter)) return 'forged';
    const newest = h.counter > this.#window.highest;
    this.#window.accept(h.counter);
    if (epoch > this.#top) {
      this.#top = epoch;
      for (const [e, k] of this.#keys) {
        if (e < epoch - 1) {
          k.key.fill(0);
          this.#keys.delete(e);
        }
      }
    }
    // Inner plaintext: record ‖ kind (non-zero) ‖ zero padding (as TLS 1.3's).
    let end = HEADER + ptLen - 1;
    while (end >= HEADER && datagram[end] === 0) end--;
    if (end < HEADER) return 'malformed';
    return { kind: datagram[end] as number, record: datagram.subarray(HEADER, end), counter: h.counter, newest };
  }
}
