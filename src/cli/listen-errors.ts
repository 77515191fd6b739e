/**
 * A local port the client cannot open is the user's to fix: it becomes one
 * line naming the flag and the address (`--socks 127.0.0.1:1080: address
 * already in use`), exit status 1, instead of `unexpected error` and a
 * stack trace. run-client.ts opens every local port, and checks that no
 * proxy front listens off loopback without a password, before it dials the
 * server, so these come first and alone.
 */
import { ConfigError, PolytunError } from '../core/errors.js';

const WHY: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use (another program listens there; pick another port or stop it)',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'address not available (no interface of this machine has it)',
  EAFNOSUPPORT: 'address family not supported on this machine',
  ENOTFOUND: 'host name does not resolve',
  EAI_AGAIN: 'host name does not resolve (temporary DNS failure)',
};

/** `err` from opening a local listener as a ConfigError naming `where`; PolytunErrors pass through. */
export function listenError(where: string, err: unknown): PolytunError {
  // A PolytunError passes through, unless it carries the socket's errno (the status endpoint's does).
  const errno = (err as { errno?: unknown } | null)?.errno;
  if (err instanceof PolytunError && !(typeof errno === 'string' && errno in WHY)) return err;
  const code = typeof errno === 'string' ? errno : (err as { code?: unknown } | null)?.code;
  const why = typeof code === 'string' ? WHY[code] : undefined;
  return new ConfigError(where, why ?? (err instanceof Error ? err.message : String(err)));
}

/** Runs `start`, turning its failure into {@link listenError}. */
export async function listenOrExplain<T>(where: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    throw listenError(where, err);
  }
}
