/**
 * Asks the server where it sees this session's paths come from (an ADDRESS
 * stream, src/proxy/wire.ts): the reflexive addresses STUN would give,
 * through the authenticated session. A server older than the question
 * resets it (noHandler): NotOfferedError.
 */
import { MAX_DOMAIN_BYTES, type Destination } from '../core/address.js';
import { NotOfferedError, StreamResetError, TimeoutError } from '../core/errors.js';
import { decodeAddresses, encodeOpen, MAX_OBSERVED_ADDRESSES } from '../proxy/wire.js';
import type { Session } from '../session/session.js';
import { ResetCode } from '../session/stream.js';

/** Each path's source address as the server sees it. Rejects with NotOfferedError, TimeoutError or the stream's error. */
export function observedAddresses(session: Session, timeoutMs = 5000): Promise<Destination[]> {
  const s = session.openStream(encodeOpen({ kind: 'address' }));
  s.end();
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      s.reset(ResetCode.cancel);
      reject(new TimeoutError(`no observed address from the server within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => {
      size += d.length;
      // The count, then at most MAX_OBSERVED_ADDRESSES addresses of at most ATYP + length + domain + port bytes.
      if (size > 1 + MAX_OBSERVED_ADDRESSES * (2 + MAX_DOMAIN_BYTES + 2)) {
        clearTimeout(timer);
        s.reset(ResetCode.tooLarge);
        reject(new Error('the observed address answer is too long'));
        return;
      }
      parts.push(d);
    });
    s.once('end', () => {
      clearTimeout(timer);
      try {
        resolve(decodeAddresses(Buffer.concat(parts)));
      } catch (err) {
        reject(err as Error);
      }
    });
    s.once('error', (err: Error) => {
      clearTimeout(timer);
      reject(err instanceof StreamResetError && err.resetCode === ResetCode.noHandler ? new NotOfferedError('observed addresses') : err);
    });
  });
}
