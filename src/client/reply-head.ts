/**
 * Reading the server's reply head off a proxy stream (the CONNECT status
 * byte, the BIND reply) and putting back what follows, so the stream's next
 * reader sees only the payload.
 */
import { AddressError, decodeDestination, type Destination } from '../core/address.js';
import { AbortedError, ClosedError, PolytunError, ProtocolError, TimeoutError } from '../core/errors.js';
import { STATUS_OK } from '../proxy/wire.js';
import type { PolyStream } from '../session/stream.js';

/** The server refused a CONNECT or BIND with a SOCKS5-style status. */
export class ProxyStatusError extends PolytunError {
  /** The status byte the server sent. */
  readonly status: number;
  constructor(what: string, status: number) {
    super('ERR_PROXY_STATUS', `${what} refused by the server (status 0x${status.toString(16).padStart(2, '0')})`);
    this.status = status;
  }
}

/** Parses a reply head: `undefined` = need more bytes, else the value and bytes used. */
type HeadParser<T> = (buf: Buffer) => { value: T; used: number } | undefined;

export const statusParser: HeadParser<number> = (buf) => (buf.length >= 1 ? { value: buf[0] as number, used: 1 } : undefined);

export interface BindReply {
  status: number;
  id: number;
  bound: Destination;
}

/*
 * BIND reply:
 * +--------+-------------+------------------------------+
 * | STATUS | BIND ID u32 | bound address (address codec)|   (id and address only when STATUS = 0)
 * +--------+-------------+------------------------------+
 */
const unspecified: Destination = { host: '0.0.0.0', port: 0, kind: 'ipv4' };
export const bindReplyParser: HeadParser<BindReply> = (buf) => {
  if (buf.length < 1) return undefined;
  const status = buf[0] as number;
  if (status !== STATUS_OK) return { value: { status, id: 0, bound: unspecified }, used: 1 };
  if (buf.length < 6) return undefined;
  try {
    const { dest, bytesRead } = decodeDestination(buf, 5);
    return { value: { status, id: buf.readUInt32BE(1), bound: dest }, used: 5 + bytesRead };
  } catch (err) {
    if (err instanceof AddressError && err.reason === 'truncated') return undefined;
    throw err;
  }
};

/** Longest reply head we buffer (status + id + a 255-byte domain address). */
const MAX_HEAD = 1 + 4 + 1 + 1 + 255 + 2;

/**
 * Reads a reply head off the front of `stream` and puts back whatever
 * follows it, so the stream's next reader sees only the payload. Destroys
 * the stream on timeout, abort, or a malformed head.
 */
export function readHead<T>(stream: PolyStream, parse: HeadParser<T>, timeoutMs: number, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let acc: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      cleanup();
      stream.destroy(err instanceof TimeoutError || err instanceof AbortedError ? undefined : err);
      reject(err);
    };
    const onReadable = (): void => {
      for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) {
        acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk]);
        let got: { value: T; used: number } | undefined;
        try {
          got = parse(acc);
        } catch (err) {
          fail(new ProtocolError('malformed reply from the server', { cause: err }));
          return;
        }
        if (got) {
          cleanup();
          if (got.used < acc.length) stream.unshift(acc.subarray(got.used));
          resolve(got.value);
          return;
        }
        if (acc.length > MAX_HEAD) {
          fail(new ProtocolError('reply head from the server is too long'));
          return;
        }
      }
    };
    const onEnd = (): void => fail(new ProtocolError('server ended the stream before its status'));
    const onClose = (): void => {
      cleanup();
      reject(new ClosedError('proxy stream (before its status)', { cause: stream.errored ?? undefined }));
    };
    const onAbort = (): void => fail(new AbortedError(signal?.reason));
    const timer = setTimeout(() => fail(new TimeoutError('waiting for the server status')), timeoutMs);
    timer.unref();
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
