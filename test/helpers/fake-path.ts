/** A SessionPath over a channel stand-in: what the path reads of it, nothing sent anywhere. */
import type { SecureChannel } from '../../src/secure/channel.js';
import { SessionPath, type PathOptions } from '../../src/session/multipath/path.js';

export interface PathChannel {
  bytesOut: number;
  bytesIn: number;
  queuedBytes: number;
  writable: boolean;
  info: { remote: string };
  aborted: Error | undefined;
  abort(err?: Error): void;
}

export function pathChannel(bytesOut = 0): PathChannel {
  return {
    bytesOut,
    bytesIn: 0,
    queuedBytes: 0,
    writable: true,
    info: { remote: 'fake' },
    aborted: undefined,
    abort(err?: Error) {
      this.aborted = err ?? new Error('aborted');
    },
  };
}

export function fakePath(id: number, opts: PathOptions = {}, up = true, ch: PathChannel = pathChannel()): { path: SessionPath; ch: PathChannel } {
  return { path: new SessionPath(id, ch as unknown as SecureChannel, opts, up), ch };
}
