/**
 * Stateless cookies for the packet handshake (WireGuard's cookie reply,
 * section 5.4.7 of its paper; QUIC's Retry plays the same part). Groundwork
 * for issue 17.
 *
 * When the server asks for one (packet-responder.ts: always, or under
 * load), an initiation must carry mac2 = HMAC(cookie, datagram up to mac2)
 * where cookie = HMAC(secret, source address)[0..16) and the secret is
 * random and replaced every `rotateMs` (the previous one still verifies, so a
 * cookie lives between one and two periods). The server keeps nothing per
 * client: a spoofed source never sees its cookie, so it cannot make the
 * server do a DH or hold a handshake.
 *
 * The cookie travels to the client sealed with ChaCha20-Poly1305 under a key
 * derived from the server's public key, a random nonce, and the
 * initiation's mac1 as associated data: only the sender of that initiation
 * (who knows the server's key) can open it, and an on-path observer cannot
 * lift it to spoof that source. The reply is never bigger than the
 * initiation it answers (padding fills up to a random size below that).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomInt } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { COOKIE_BODY, HS_COOKIE, MAC, MIN_COOKIE_REPLY, encodeHandshake, mac16, macEqual, type ServerPublicKeys } from './packet-wire.js';

/** Server side: the rotating secret, cookies for sources and mac2 checks. */
export class CookieJar {
  #current = randomBytes(32);
  #previous: Buffer | undefined;
  #rotatedAt: number;

  constructor(
    private readonly clock: Clock,
    /** How long one secret makes cookies. @default 120000 (WireGuard's) */
    private readonly rotateMs = 120_000,
  ) {
    this.#rotatedAt = clock.now();
  }

  #rotate(): void {
    const now = this.clock.now();
    if (now - this.#rotatedAt < this.rotateMs) return;
    // Two periods without a rotation: the previous secret is stale too.
    this.#previous = now - this.#rotatedAt < 2 * this.rotateMs ? this.#current : undefined;
    this.#current = randomBytes(32);
    this.#rotatedAt = now;
  }

  /** The cookie a sender at `source` must use now. */
  cookieFor(source: string): Buffer {
    this.#rotate();
    return cookieOf(this.#current, source);
  }

  /** True when `initiation`'s mac2 was made with a cookie for `source` under the current or the previous secret. */
  checkMac2(initiation: Buffer, source: string): boolean {
    this.#rotate();
    const at = initiation.length - MAC;
    const mac2 = initiation.subarray(at);
    const signed = initiation.subarray(0, at);
    if (macEqual(mac16(cookieOf(this.#current, source), signed), mac2)) return true;
    return this.#previous !== undefined && macEqual(mac16(cookieOf(this.#previous, source), signed), mac2);
  }
}

function cookieOf(secret: Buffer, source: string): Buffer {
  return createHmac('sha256', secret).update(source).digest().subarray(0, MAC);
}

/**
 * A cookie reply datagram for an initiation of `answeringSize` bytes whose
 * mac1 is `mac1`: between MIN_COOKIE_REPLY and min(answeringSize,
 * MIN_COOKIE_REPLY + maxPadding) bytes.
 */
export function encodeCookieReply(keys: ServerPublicKeys, cookie: Buffer, mac1: Buffer, answeringSize: number, maxPadding: number): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('chacha20-poly1305', keys.cookie, nonce, { authTagLength: 16 });
  c.setAAD(mac1, { plaintextLength: cookie.length });
  const body = Buffer.concat([nonce, c.update(cookie), c.final(), c.getAuthTag()]);
  const room = Math.max(0, Math.min(maxPadding, answeringSize - MIN_COOKIE_REPLY));
  return encodeHandshake(keys, HS_COOKIE, body, MIN_COOKIE_REPLY + randomInt(0, room + 1));
}

/** Client side: the cookie in a reply body, or undefined when it does not open (not for our initiation, or forged). */
export function openCookieReply(keys: ServerPublicKeys, body: Buffer, mac1: Buffer): Buffer | undefined {
  if (body.length < COOKIE_BODY) return undefined;
  const d = createDecipheriv('chacha20-poly1305', keys.cookie, body.subarray(0, 12), { authTagLength: 16 });
  d.setAAD(mac1, { plaintextLength: MAC });
  d.setAuthTag(body.subarray(12 + MAC, 12 + 2 * MAC));
  const cookie = d.update(body.subarray(12, 12 + MAC));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return cookie;
}
