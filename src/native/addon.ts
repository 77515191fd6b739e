/**
 * Loader and typed façade of polytun's native addon (native/, C + N-API),
 * which gives Node what it lacks: TUN devices, socket options before connect
 * (SO_BINDTODEVICE, SO_MARK, local bind), MPTCP sockets, and in-place
 * ChaCha20-Poly1305 and AES-256-GCM for the record layer (src/secure/aead.ts).
 *
 * The addon is compiled by `npm run build:native` (also run by `npm install`).
 * When it is missing, this module still loads: `nativeAvailable` is false and
 * every function throws `NativeUnavailableError`, so only the features that
 * need it fail, with a message saying how to build it.
 *
 * Native failures arrive as plain errors carrying `code` (errno name),
 * `errno` and `syscall`; the wrappers here turn them into typed errors.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { PolytunError } from '../core/errors.js';
import type { ErrorCode } from '../core/error-codes.js';

/** Where `npm run build:native` puts the addon (same relative path from src/ and dist/). */
export const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/polytun_native.node', import.meta.url));

/** The addon is not built (or failed to load); `reason` says why. */
export class NativeUnavailableError extends PolytunError {
  readonly feature: string;
  readonly reason: string;
  constructor(feature: string, reason: string) {
    super(
      'ERR_NATIVE_UNAVAILABLE',
      `${feature} needs polytun's native addon, which is not available (${reason}); build it with \`npm run build:native\` (needs python3, make and a C compiler)`,
    );
    this.feature = feature;
    this.reason = reason;
  }
}

/** A system call in the addon failed. `errno` is the errno name (`EPERM`…), `syscall` the call. */
export class SyscallError extends PolytunError {
  readonly errno: string;
  readonly syscall: string;
  constructor(code: ErrorCode, errno: string, syscall: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** Opening, reading or writing a TUN device failed. */
export class TunError extends SyscallError {
  constructor(errno: string, syscall: string, message: string, options?: { cause?: unknown }) {
    super('ERR_TUN', errno, syscall, message, options);
  }
}

/** The errno-style fields the addon puts on the errors it throws. */
export interface NativeErrnoFields {
  readonly code: string;
  readonly syscall: string;
  readonly message: string;
}

/** Reads the addon's errno fields off a thrown value, if it has them. */
export function nativeErrnoOf(err: unknown): NativeErrnoFields | undefined {
  if (!(err instanceof Error)) return undefined;
  const e = err as Error & { code?: unknown; syscall?: unknown };
  if (typeof e.code !== 'string' || typeof e.syscall !== 'string') return undefined;
  return { code: e.code, syscall: e.syscall, message: e.message };
}

/** Raw read callback of the addon: `(err, count, data)`; `data`'s shape depends on the mode. */
export type RawReadCallback = (err: Error | null, count: number, data: Buffer | Buffer[] | undefined) => void;

/** What tunReaderStart returns: an opaque handle plus views the addon writes into. */
export interface RawReader {
  readonly handle: object;
  /** lens[0..count) = packet lengths of the current batch; lens[batch] = oversize packets dropped so far. */
  readonly lens: Uint32Array;
  /** Mode `shared` only: the reused buffer packets are read into, one `slot` each. */
  readonly shared?: Buffer;
}

/** The addon's exports, exactly as the C code registers them. */
export interface NativeBinding {
  openTun(name: string | undefined, flags?: number): { fd: number; name: string };
  writePackets(fd: number, packets: readonly Uint8Array[], hdrs?: Uint8Array): { written: number; dropped: number; invalid: number };
  tunSetOffload(fd: number, flags: number): void;
  closeFd(fd: number): void;
  tunReaderStart(fd: number, mode: number, batch: number, slot: number, cb: RawReadCallback, maxBytes?: number): RawReader;
  tunReaderStop(handle: object): void;
  connectStart(
    address: string,
    port: number,
    device: string | null,
    mark: number,
    mptcp: boolean,
    localAddress: string | null,
    localPort: number,
    cb: (err: Error | null, fd: number) => void,
  ): object;
  connectCancel(handle: object): void;
  socketInfo(fd: number): { protocol: number; device: string; mark: number };
  mptcpProbe(): string | null;
  mptcpListen(host: string, port: number, backlog: number): number;
  /** How many algorithms aeadCreate knows (absent: only 0, from an addon built before AES-GCM). */
  aeadAlgorithms?: number;
  /** alg: 0 = chacha20-poly1305 (the default), 1 = aes-256-gcm. */
  aeadCreate(key: Buffer, encrypt: boolean, alg?: number): object;
  aeadSeal(handle: object, src: Buffer, srcOff: number, len: number, dst: Buffer, dstOff: number, aad16: number, nonceLo: number, nonceHi: number): void;
  aeadOpen(handle: object, buf: Buffer, off: number, len: number, aad16: number, nonceLo: number, nonceHi: number): boolean;
  aeadOpenv(handle: object, dst: Buffer, dstOff: number, len: number, aad16: number, nonceLo: number, nonceHi: number, tag: Buffer, segments: readonly Buffer[]): boolean;
}

/** Outcome of loading the addon. */
export type AddonState = { available: true; binding: NativeBinding } | { available: false; reason: string };

/**
 * Loads the addon at `path` (exposed for tests; the module loads
 * ADDON_PATH once at import). Never throws.
 */
export function loadAddon(path: string = ADDON_PATH): AddonState {
  if (process.platform !== 'linux') return { available: false, reason: `not supported on ${process.platform}` };
  try {
    const require = createRequire(import.meta.url);
    return { available: true, binding: require(path) as NativeBinding };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const reason = code === 'MODULE_NOT_FOUND' ? `${path} not found` : `loading ${path} failed: ${(err as Error).message}`;
    return { available: false, reason };
  }
}

const state = loadAddon();

/** True when the native addon is built and loaded. */
export const nativeAvailable: boolean = state.available;

/** Why the addon is unavailable, or undefined when it loaded. */
export const nativeUnavailableReason: string | undefined = state.available ? undefined : state.reason;

/**
 * The loaded binding, or NativeUnavailableError naming `feature`. Lower
 * layers (tun/, carriers/socket-opts) call this and map errors themselves.
 */
export function nativeBinding(feature: string): NativeBinding {
  if (!state.available) throw new NativeUnavailableError(feature, state.reason);
  return state.binding;
}

/** Runs a native TUN call, turning its errno errors into TunError. */
function tunCall<T>(feature: string, fn: (b: NativeBinding) => T): T {
  const b = nativeBinding(feature);
  try {
    return fn(b);
  } catch (err) {
    const n = nativeErrnoOf(err);
    if (n === undefined) throw err;
    throw new TunError(n.code, n.syscall, n.message, { cause: err });
  }
}

/** An open TUN device: its fd (non-blocking, close-on-exec) and the kernel's name for it. */
export interface TunHandle {
  readonly fd: number;
  readonly name: string;
}

/**
 * Opens /dev/net/tun as IFF_TUN | IFF_NO_PI (bare IP packets). Without a
 * name the kernel picks `tunN`. Throws TunError: EPERM/EACCES "needs root or
 * CAP_NET_ADMIN", ENOENT "/dev/net/tun missing (modprobe tun)", EBUSY…
 */
export function openTun(name?: string, opts: { vnetHdr?: boolean } = {}): TunHandle {
  return tunCall('TUN devices', (b) => b.openTun(name, opts.vnetHdr === true ? 1 : 0));
}

/** TUNSETOFFLOAD on a device opened with `vnetHdr`: which TUN_F_* offloads the kernel may use (src/tun/vnet.ts). */
export function tunSetOffload(fd: number, flags: number): void {
  tunCall('TUN offload', (b) => b.tunSetOffload(fd, flags));
}

/** Per-call outcome of writePackets. */
export interface TunWriteResult {
  /** Packets the kernel accepted. */
  written: number;
  /** Packets dropped because the kernel queue was full (EAGAIN/ENOBUFS). */
  dropped: number;
  /** Packets the kernel refused as malformed (EINVAL/EMSGSIZE…). */
  invalid: number;
}

/**
 * Writes each packet with one write(2) (with `hdrs`, a device opened with
 * `vnetHdr`: one writev(2) of its 10-byte virtio_net_hdr, hdrs[10i…], and
 * the packet); never throws for drops, only when the device is unusable.
 */
export function writePackets(fd: number, packets: readonly Uint8Array[], hdrs?: Uint8Array): TunWriteResult {
  return tunCall('TUN devices', (b) => (hdrs === undefined ? b.writePackets(fd, packets) : b.writePackets(fd, packets, hdrs)));
}

/** Closes an fd the addon returned (a TUN fd: the device disappears). */
export function closeFd(fd: number): void {
  tunCall('TUN devices', (b) => b.closeFd(fd));
}
