/**
 * The Noise Protocol Framework (revision 34, https://noiseprotocol.org/noise.html)
 * for Noise_*_25519_ChaChaPoly_SHA256: CipherState, SymmetricState and
 * HandshakeState as the spec defines them (sections 5.1-5.3), the fundamental
 * one-way and interactive patterns (7.4, 7.5) and the pskN modifiers (9).
 * Proven against the cacophony and snow test vectors in
 * test/fixtures/noise-vectors.json.
 *
 * Failure model: a peer's bad bytes give ProtocolError (malformed, too short
 * or too long) or AuthError (a tag or a DH check failed); a HandshakeState
 * that failed once is dead and every later call gives ClosedError.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto';
import { AuthError, ClosedError, ConfigError, LimitError, PolytunError, ProtocolError } from '../core/errors.js';
import { KEY_LENGTH, dh, generateKeyPair } from './keys.js';
import type { KeyPair } from './keys.js';

/** Longest Noise message (spec section 3), handshake or transport. */
export const MAX_MESSAGE_LENGTH = 65535;
/** Poly1305 tag length. */
export const TAG_LENGTH = 16;
const HASHLEN = 32;
const EMPTY = Buffer.alloc(0);
// Counters are JS numbers: exhaustion is signalled past 2^53-1, far earlier
// than the spec's 2^64-1 and never later, so a nonce can never repeat.
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;
// ChaChaPoly nonce: ┌ 4 zero bytes ┬ 64-bit little-endian counter ┐
const REKEY_NONCE = Buffer.from('00000000ffffffffffffffff', 'hex');

function seal(k: Buffer, nonce: Buffer, ad: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', k, nonce, { authTagLength: TAG_LENGTH });
  c.setAAD(ad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return Buffer.concat([body, c.getAuthTag()], body.length + TAG_LENGTH);
}

/** Noise CipherState (spec 5.1): a key and a counter nonce. */
export class CipherState {
  #k: Buffer | null = null;
  #n = 0;
  readonly #nonce = Buffer.alloc(12);

  /** Sets the key (or none) and resets the nonce to 0. */
  initializeKey(key: Buffer | null): void {
    if (key !== null && key.length !== 32) throw new ConfigError('noise cipher key', `expected 32 bytes, got ${key.length}`);
    this.#k = key === null ? null : Buffer.from(key);
    this.#n = 0;
  }

  /** True once a key is set. */
  hasKey(): boolean {
    return this.#k !== null;
  }

  /**
   * A copy of the raw key, for a record layer of our own that keeps its own
   * nonces (polytun's stream records). Only meaningful after Split.
   */
  exportKey(): Buffer {
    if (this.#k === null) throw new ProtocolError('cipher state has no key to export');
    return Buffer.from(this.#k);
  }

  /** The next nonce to be used. */
  get nonce(): number {
    return this.#n;
  }

  /** Spec SetNonce: for transports that carry the counter explicitly (packets). */
  setNonce(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new LimitError('nonce', `nonce must be an integer in [0, 2^53-1], got ${n}`);
    this.#n = n;
  }

  #useNonce(): Buffer {
    if (this.#n > MAX_COUNTER) throw new LimitError('nonce', 'nonce space exhausted: rekey or start a new handshake');
    this.#nonce.writeUInt32LE(this.#n >>> 0, 4);
    this.#nonce.writeUInt32LE(Math.floor(this.#n / 0x100000000), 8);
    return this.#nonce;
  }

  /** Encrypts with the next nonce; without a key returns `plaintext` itself. */
  encryptWithAd(ad: Buffer, plaintext: Buffer): Buffer {
    if (this.#k === null) return plaintext;
    const out = seal(this.#k, this.#useNonce(), ad, plaintext);
    this.#n++;
    return out;
  }

  /**
   * Decrypts with the next nonce; without a key returns `ciphertext` itself.
   * AuthError on a bad tag (the nonce is then not advanced), ProtocolError
   * when the input is shorter than a tag.
   */
  decryptWithAd(ad: Buffer, ciphertext: Buffer): Buffer {
    if (this.#k === null) return ciphertext;
    if (ciphertext.length < TAG_LENGTH) throw new ProtocolError(`noise ciphertext of ${ciphertext.length} bytes is shorter than its tag`);
    const bodyLength = ciphertext.length - TAG_LENGTH;
    const d = createDecipheriv('chacha20-poly1305', this.#k, this.#useNonce(), { authTagLength: TAG_LENGTH });
    d.setAuthTag(ciphertext.subarray(bodyLength));
    d.setAAD(ad, { plaintextLength: bodyLength });
    const body = d.update(ciphertext.subarray(0, bodyLength));
    try {
      d.final();
    } catch (err) {
      throw new AuthError('noise decryption failed (bad tag)', { cause: err });
    }
    this.#n++;
    return body;
  }

  /** Spec Rekey: k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros). */
  rekey(): void {
    if (this.#k === null) throw new ConfigError('noise rekey', 'cannot rekey a CipherState without a key');
    this.#k = seal(this.#k, REKEY_NONCE, EMPTY, Buffer.alloc(32)).subarray(0, 32);
  }
}

const BYTE = [Buffer.from([1]), Buffer.from([2]), Buffer.from([3])] as const;

/**
 * HKDF of spec 4.3 with HMAC-SHA256, written out: three HMACs are ~2.5x
 * faster than crypto.hkdfSync, which builds a KeyObject and a job per call.
 * Returns output1 || output2 [|| output3].
 */
function hkdf(ck: Buffer, ikm: Buffer, outputs: 2 | 3): Buffer {
  const temp = createHmac('sha256', ck).update(ikm).digest();
  const o1 = createHmac('sha256', temp).update(BYTE[0]).digest();
  const o2 = createHmac('sha256', temp).update(o1).update(BYTE[1]).digest();
  if (outputs === 2) return Buffer.concat([o1, o2], 2 * HASHLEN);
  const o3 = createHmac('sha256', temp).update(o2).update(BYTE[2]).digest();
  return Buffer.concat([o1, o2, o3], 3 * HASHLEN);
}

/** Noise SymmetricState (spec 5.2): chaining key, handshake hash, cipher. */
export class SymmetricState {
  readonly cipher = new CipherState();
  #ck: Buffer;
  #h: Buffer;

  /** Spec InitializeSymmetric(protocol_name). */
  constructor(protocolName: string) {
    const name = Buffer.from(protocolName, 'utf8');
    this.#h = name.length <= HASHLEN ? Buffer.concat([name], HASHLEN) : createHash('sha256').update(name).digest();
    this.#ck = Buffer.from(this.#h);
  }

  /** ck, k = HKDF(ck, ikm). */
  mixKey(ikm: Buffer): void {
    const out = hkdf(this.#ck, ikm, 2);
    this.#ck = out.subarray(0, HASHLEN);
    this.cipher.initializeKey(out.subarray(HASHLEN));
  }

  /** h = SHA256(h || data). */
  mixHash(data: Buffer): void {
    this.#h = createHash('sha256').update(this.#h).update(data).digest();
  }

  /** ck, temp_h, k = HKDF(ck, ikm, 3); MixHash(temp_h). Used for psk tokens. */
  mixKeyAndHash(ikm: Buffer): void {
    const out = hkdf(this.#ck, ikm, 3);
    this.#ck = out.subarray(0, HASHLEN);
    this.mixHash(out.subarray(HASHLEN, 2 * HASHLEN));
    this.cipher.initializeKey(out.subarray(2 * HASHLEN));
  }

  /** A copy of h. */
  getHandshakeHash(): Buffer {
    return Buffer.from(this.#h);
  }

  /** Encrypts with h as associated data, then mixes the ciphertext into h. */
  encryptAndHash(plaintext: Buffer): Buffer {
    const ct = this.cipher.encryptWithAd(this.#h, plaintext);
    this.mixHash(ct);
    return ct;
  }

  /** Decrypts with h as associated data, then mixes the ciphertext into h. */
  decryptAndHash(ciphertext: Buffer): Buffer {
    const pt = this.cipher.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return pt;
  }

  /** The two transport CipherStates: [initiator→responder, responder→initiator]. */
  split(): [CipherState, CipherState] {
    const out = hkdf(this.#ck, EMPTY, 2);
    const c1 = new CipherState();
    const c2 = new CipherState();
    c1.initializeKey(out.subarray(0, HASHLEN));
    c2.initializeKey(out.subarray(HASHLEN));
    this.#ck.fill(0); // spec: the handshake's secrets are dropped once split
    return [c1, c2];
  }
}

type DhToken = 'ee' | 'es' | 'se' | 'ss';
type Token = 'e' | 's' | 'psk' | DhToken;
interface Step {
  readonly fromInitiator: boolean;
  readonly tokens: readonly Token[];
}
/** A handshake pattern with its modifiers applied. */
export interface NoisePattern {
  readonly name: string;
  readonly preMessages: readonly Step[];
  readonly messages: readonly Step[];
  /** Number of psk tokens (and of psks the caller must supply). */
  readonly pskCount: number;
}

// Spec 7.4/7.5, written "pre-messages | messages"; `->` initiator to
// responder, `<-` back, `;` between messages.
const PATTERNS: Readonly<Record<string, string>> = {
  N: '<- s | -> e, es',
  K: '-> s; <- s | -> e, es, ss',
  X: '<- s | -> e, es, s, ss',
  NN: '| -> e; <- e, ee',
  NK: '<- s | -> e, es; <- e, ee',
  NX: '| -> e; <- e, ee, s, es',
  KN: '-> s | -> e; <- e, ee, se',
  KK: '-> s; <- s | -> e, es, ss; <- e, ee, se',
  KX: '-> s | -> e; <- e, ee, se, s, es',
  XN: '| -> e; <- e, ee; -> s, se',
  XK: '<- s | -> e, es; <- e, ee; -> s, se',
  XX: '| -> e; <- e, ee, s, es; -> s, se',
  IN: '| -> e, s; <- e, ee, se',
  IK: '<- s | -> e, es, s, ss; <- e, ee, se',
  IX: '| -> e, s; <- e, ee, se, s, es',
};

/** Base pattern names this implementation supports. */
export const SUPPORTED_PATTERNS: readonly string[] = Object.keys(PATTERNS);

function parseSteps(text: string): Step[] {
  return text
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => ({ fromInitiator: s.startsWith('->'), tokens: s.slice(2).split(',').map((t) => t.trim() as Token) }));
}

/**
 * Parses `Noise_<PATTERN><psk modifiers>_25519_ChaChaPoly_SHA256` (e.g.
 * `Noise_IKpsk2_…`, `Noise_XXpsk0+psk3_…`). ConfigError when unsupported.
 */
export function parseProtocolName(protocolName: string): NoisePattern {
  const m = /^Noise_([A-Z]{1,2})((?:psk\d)(?:\+psk\d)*)?_25519_ChaChaPoly_SHA256$/.exec(protocolName);
  const spec = m?.[1] === undefined ? undefined : PATTERNS[m[1]];
  if (m === null || spec === undefined) {
    throw new ConfigError('noise protocol', `unsupported protocol ${JSON.stringify(protocolName)} (supported: Noise_{${SUPPORTED_PATTERNS.join(',')}}[pskN]_25519_ChaChaPoly_SHA256)`);
  }
  const [pre = '', msgs = ''] = spec.split('|');
  const messages = parseSteps(msgs).map((s) => ({ fromInitiator: s.fromInitiator, tokens: [...s.tokens] }));
  let pskCount = 0;
  for (const mod of m[2]?.split('+') ?? []) {
    const n = Number(mod.slice(3));
    const target = messages[n === 0 ? 0 : n - 1];
    if (target === undefined) throw new ConfigError('noise protocol', `${mod} names a message the pattern does not have`);
    if (n === 0) target.tokens.unshift('psk');
    else target.tokens.push('psk');
    pskCount++;
  }
  return { name: protocolName, preMessages: parseSteps(pre), messages, pskCount };
}

/** Options of a {@link HandshakeState}. */
export interface HandshakeInit {
  /** Full protocol name, e.g. `Noise_IK_25519_ChaChaPoly_SHA256`. */
  protocolName: string;
  /** True on the side that sends the first message. */
  initiator: boolean;
  /** Bytes both sides must agree on (mixed into h). @default empty */
  prologue?: Buffer | undefined;
  /** Our static key pair `s`, when the pattern sends or pre-shares it. */
  staticKeyPair?: KeyPair | undefined;
  /** The peer's static public key `rs`, when the pattern pre-shares it (pinning). */
  remoteStaticKey?: Buffer | undefined;
  /** 32-byte pre-shared keys, one per pskN modifier, in order. */
  psks?: readonly Buffer[] | undefined;
  /** TEST VECTORS ONLY: a fixed ephemeral key pair. Reusing one breaks forward secrecy. */
  ephemeralKeyPair?: KeyPair | undefined;
}

/** What a HandshakeState expects next. */
export type HandshakeNext = 'write' | 'read' | 'done' | 'failed';

function need<T>(v: T | null, what: string): T {
  if (v === null) throw new ProtocolError(`noise pattern needs ${what} before it is known`);
  return v;
}

function checkKey(buf: Buffer | undefined, what: string): void {
  if (buf !== undefined && (!Buffer.isBuffer(buf) || buf.length !== KEY_LENGTH)) throw new ConfigError(what, `expected ${KEY_LENGTH} bytes`);
}

/**
 * Noise HandshakeState (spec 5.3).
 *
 * ```
 *  write/read ok, more messages ─┐
 *          ┌──────────────┐◀─────┘    last message ok   ┌──────┐
 *  new ──▶ │ write / read │ ─────────────────────────────▶│ done │ split()
 *          └──────────────┘                               └──────┘
 *                 │ any failure
 *                 ▼
 *            ┌────────┐ every later call: ClosedError (cause = first failure)
 *            │ failed │
 *            └────────┘
 * ```
 */
export class HandshakeState {
  /** True on the side that sends the first message. */
  readonly initiator: boolean;
  readonly #pattern: NoisePattern;
  readonly #ss: SymmetricState;
  readonly #s: KeyPair | null;
  #e: KeyPair | null;
  #ownsE = false;
  #rs: Buffer | null = null;
  #re: Buffer | null = null;
  readonly #psks: readonly Buffer[];
  #pskIndex = 0;
  #step = 0;
  #failure: unknown = null;
  #failed = false;
  #split: [CipherState, CipherState] | null = null;

  /** Spec Initialize(): ConfigError when a key the pattern needs is missing or malformed. */
  constructor(init: HandshakeInit) {
    this.#pattern = parseProtocolName(init.protocolName);
    this.initiator = init.initiator;
    const mine = (step: Step): boolean => step.fromInitiator === init.initiator;
    const all = [...this.#pattern.preMessages, ...this.#pattern.messages];
    checkKey(init.staticKeyPair?.privateKey, 'noise static private key');
    checkKey(init.staticKeyPair?.publicKey, 'noise static public key');
    checkKey(init.remoteStaticKey, 'noise remote static key');
    checkKey(init.ephemeralKeyPair?.privateKey, 'noise ephemeral private key');
    checkKey(init.ephemeralKeyPair?.publicKey, 'noise ephemeral public key');
    if (init.staticKeyPair === undefined && all.some((st) => mine(st) && st.tokens.includes('s'))) {
      throw new ConfigError('noise static key', `${init.protocolName} needs our static key pair`);
    }
    const psks = init.psks ?? [];
    if (psks.length !== this.#pattern.pskCount || psks.some((p) => p.length !== 32)) {
      throw new ConfigError('noise psks', `${init.protocolName} needs exactly ${this.#pattern.pskCount} psks of 32 bytes`);
    }
    this.#s = init.staticKeyPair ?? null;
    this.#e = init.ephemeralKeyPair ?? null;
    this.#psks = psks;
    this.#ss = new SymmetricState(init.protocolName);
    this.#ss.mixHash(init.prologue ?? EMPTY);
    for (const step of this.#pattern.preMessages) {
      if (mine(step)) {
        this.#ss.mixHash(need(this.#s, 'our static key').publicKey);
      } else {
        if (init.remoteStaticKey === undefined) throw new ConfigError('noise remote static key', `${init.protocolName} needs the peer's static public key`);
        this.#rs = Buffer.from(init.remoteStaticKey);
        this.#ss.mixHash(this.#rs);
      }
    }
  }

  /** What the caller must do next. */
  get next(): HandshakeNext {
    if (this.#failed) return 'failed';
    const step = this.#pattern.messages[this.#step];
    if (step === undefined) return 'done';
    return step.fromInitiator === this.initiator ? 'write' : 'read';
  }

  /** h: the channel binding value once done (a copy). */
  get handshakeHash(): Buffer {
    return this.#ss.getHandshakeHash();
  }

  /** The peer's static public key once known (pre-shared or received), else null. */
  get remoteStaticKey(): Buffer | null {
    return this.#rs === null ? null : Buffer.from(this.#rs);
  }

  #expect(want: 'write' | 'read'): Step {
    const next = this.next;
    if (next === 'failed') throw new ClosedError('noise handshake', { cause: this.#failure });
    const step = this.#pattern.messages[this.#step];
    if (next !== want || step === undefined) throw new ProtocolError(`noise handshake cannot ${want} now (expected: ${next})`);
    return step;
  }

  #fail(err: unknown): PolytunError {
    this.#failed = true;
    this.#failure = err;
    this.#dropEphemeral();
    return err instanceof PolytunError ? err : new ProtocolError('noise handshake failed', { cause: err });
  }

  #dropEphemeral(): void {
    if (this.#ownsE && this.#e !== null) this.#e.privateKey.fill(0);
  }

  #finishStep(): void {
    this.#step++;
    if (this.#step === this.#pattern.messages.length) {
      this.#split = this.#ss.split();
      this.#dropEphemeral();
    }
  }

  #dh(t: DhToken): Buffer {
    const e = (): Buffer => need(this.#e, 'our ephemeral key').privateKey;
    const s = (): Buffer => need(this.#s, 'our static key').privateKey;
    const re = (): Buffer => need(this.#re, "the peer's ephemeral key");
    const rs = (): Buffer => need(this.#rs, "the peer's static key");
    const i = this.initiator;
    if (t === 'ee') return dh(e(), re());
    if (t === 'ss') return dh(s(), rs());
    if (t === 'es') return i ? dh(e(), rs()) : dh(s(), re());
    return i ? dh(s(), re()) : dh(e(), rs());
  }

  #psk(): Buffer {
    const psk = this.#psks[this.#pskIndex++];
    if (psk === undefined) throw new ProtocolError('noise pattern ran out of psks');
    return psk;
  }

  /** Spec WriteMessage: returns the message carrying `payload`. */
  writeMessage(payload: Buffer = EMPTY): Buffer {
    const step = this.#expect('write');
    if (payload.length > MAX_MESSAGE_LENGTH) throw new LimitError('noise message', `payload of ${payload.length} bytes exceeds ${MAX_MESSAGE_LENGTH}`);
    try {
      const parts: Buffer[] = [];
      for (const t of step.tokens) {
        if (t === 'e') {
          if (this.#e === null) {
            this.#e = generateKeyPair();
            this.#ownsE = true;
          }
          parts.push(this.#e.publicKey);
          this.#ss.mixHash(this.#e.publicKey);
          if (this.#pattern.pskCount > 0) this.#ss.mixKey(this.#e.publicKey);
        } else if (t === 's') parts.push(this.#ss.encryptAndHash(need(this.#s, 'our static key').publicKey));
        else if (t === 'psk') this.#ss.mixKeyAndHash(this.#psk());
        else this.#ss.mixKey(this.#dh(t));
      }
      parts.push(this.#ss.encryptAndHash(payload));
      const out = Buffer.concat(parts);
      if (out.length > MAX_MESSAGE_LENGTH) throw new LimitError('noise message', `message of ${out.length} bytes exceeds ${MAX_MESSAGE_LENGTH}`);
      this.#finishStep();
      return out;
    } catch (err) {
      throw this.#fail(err);
    }
  }

  /**
   * Spec ReadMessage: returns the payload (it may share memory with
   * `message`). ProtocolError for a malformed message, AuthError when it does
   * not authenticate; either way this state is then dead.
   */
  readMessage(message: Buffer): Buffer {
    const step = this.#expect('read');
    try {
      if (message.length > MAX_MESSAGE_LENGTH) throw new ProtocolError(`noise message of ${message.length} bytes exceeds ${MAX_MESSAGE_LENGTH}`);
      let off = 0;
      const take = (n: number): Buffer => {
        if (message.length - off < n) throw new ProtocolError(`noise message too short (${message.length} bytes)`);
        off += n;
        return message.subarray(off - n, off);
      };
      for (const t of step.tokens) {
        if (t === 'e') {
          const re = Buffer.from(take(KEY_LENGTH));
          this.#re = re;
          this.#ss.mixHash(re);
          if (this.#pattern.pskCount > 0) this.#ss.mixKey(re);
        } else if (t === 's') {
          const len = this.#ss.cipher.hasKey() ? KEY_LENGTH + TAG_LENGTH : KEY_LENGTH;
          this.#rs = Buffer.from(this.#ss.decryptAndHash(take(len)));
        } else if (t === 'psk') this.#ss.mixKeyAndHash(this.#psk());
        else this.#ss.mixKey(this.#dh(t));
      }
      const payload = this.#ss.decryptAndHash(message.subarray(off));
      this.#finishStep();
      return payload;
    } catch (err) {
      throw this.#fail(err);
    }
  }

  /** Spec Split: [initiator→responder, responder→initiator]; only once done. */
  split(): [CipherState, CipherState] {
    if (this.#split === null) throw new ProtocolError(`noise handshake is not complete (expected: ${this.next})`);
    return this.#split;
  }

  /** The transport pair seen from this side. */
  transport(): { send: CipherState; recv: CipherState } {
    const [c1, c2] = this.split();
    return this.initiator ? { send: c1, recv: c2 } : { send: c2, recv: c1 };
  }
}
