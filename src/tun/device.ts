/**
 * A configured TUN device: bare IP packets in and out of the kernel.
 *
 * Reading is readiness-driven inside the addon (uv_poll on the fd, no
 * thread-pool thread parked in read(2)); each wake-up reads up to `readBatch`
 * packets and calls the handler once with all of them. Writing is one
 * synchronous write(2) per packet: a TUN write never waits on the network.
 *
 * Configuration goes through iproute2 (`ip link set … mtu … up`,
 * `ip addr add …`), optionally after moving the device into a network
 * namespace (the fd keeps working there), which the lab tests rely on.
 */
import { ClosedError, ConfigError } from '../core/errors.js';
import { closeFd, nativeBinding, nativeErrnoOf, openTun, TunError, writePackets } from '../native/addon.js';
import type { TunWriteResult } from '../native/addon.js';
import { addAddress, checkCidr, linkSet, linkSetNetns } from './iproute.js';
import type { IpOptions } from './iproute.js';

/**
 * How a read batch reaches JS. `batch` is the default, chosen by measurement
 * (bench/tun-read.ts, drain rate of a full TUN queue, 2-core VM, runs vary
 * ±20 %): 100-byte packets: copy ~0.55 M pkt/s, batch ~0.8-0.9 M, shared
 * ~0.8 M; 1400-byte: copy ~0.35-0.5 M, batch ~0.43-0.66 M, shared ~0.57-0.9 M.
 * - `copy`: the addon allocates one Buffer per packet (N native allocations);
 * - `batch`: one Buffer per batch, packets are views into it (one allocation,
 *   one memcpy); never slower than `copy`, much faster for small packets. A
 *   retained packet keeps its batch's memory (≤ readBatch × MTU) alive;
 * - `shared`: zero-copy views into one reused buffer, valid ONLY until the
 *   handler returns; for consumers that encrypt/forward synchronously.
 */
export type TunReadMode = 'copy' | 'batch' | 'shared';

const MODE_CODE: Record<TunReadMode, number> = { copy: 0, batch: 1, shared: 2 };

/** Options of startTunReader. */
export interface TunReaderInit {
  /** @default 'batch' */
  mode?: TunReadMode;
  /** Most packets read per wake-up (one handler call). @default 64 */
  batch?: number;
  /** Largest packet accepted, bytes (the device MTU); bigger ones are dropped and counted. */
  slot: number;
}

/** A running reader; `stop()` is idempotent and leaves the fd open. */
export interface TunReader {
  stop(): void;
  /** Packets dropped because they exceeded `slot`. */
  readonly oversizeDropped: number;
}

/**
 * Starts reading `fd` on the event loop. `onPackets` receives each batch;
 * `onError` a read error (e.g. the device was deleted), after which reading
 * has stopped.
 */
export function startTunReader(
  fd: number,
  init: TunReaderInit,
  onPackets: (packets: Buffer[]) => void,
  onError: (err: TunError) => void,
): TunReader {
  const mode = init.mode ?? 'batch';
  const batch = init.batch ?? 64;
  const slot = init.slot;
  const b = nativeBinding('TUN devices');
  let raw: ReturnType<typeof b.tunReaderStart> | undefined;
  const callback = (err: Error | null, count: number, data: Buffer | Buffer[] | undefined): void => {
    if (err !== null) {
      const n = nativeErrnoOf(err);
      onError(new TunError(n?.code ?? 'EIO', n?.syscall ?? 'read', `TUN ${err.message}`, { cause: err }));
      return;
    }
    if (Array.isArray(data)) return onPackets(data);
    const lens = raw?.lens;
    if (lens === undefined) return;
    const src = data ?? raw?.shared;
    if (src === undefined) return;
    const packets = new Array<Buffer>(count);
    let off = 0;
    for (let i = 0; i < count; i++) {
      const len = lens[i] ?? 0;
      // batch: packets back to back; shared: one slot each
      const start = data === undefined ? i * slot : off;
      packets[i] = src.subarray(start, start + len);
      off += len;
    }
    onPackets(packets);
  };
  try {
    raw = b.tunReaderStart(fd, MODE_CODE[mode], batch, slot, callback);
  } catch (err) {
    const n = nativeErrnoOf(err);
    if (n === undefined) throw err;
    throw new TunError(n.code, n.syscall, n.message, { cause: err });
  }
  const started = raw;
  let stopped = false;
  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      b.tunReaderStop(started.handle);
    },
    get oversizeDropped(): number {
      return started.lens[batch] ?? 0;
    },
  };
}

/** Options of TunDevice.create. */
export interface TunDeviceInit {
  /** Device name (≤ 15 chars; `%d` allowed). @default kernel picks `tunN` */
  name?: string;
  /** Link MTU, also the largest packet read. */
  mtu: number;
  /** Addresses with prefix, e.g. `['10.0.0.1/24', 'fd00::1/64']`. @default [] */
  addresses?: readonly string[];
  /** Kernel transmit queue length (packets waiting for us to read). @default kernel's (500) */
  txqueuelen?: number;
  /** Move the device into this network namespace before configuring it. @default none */
  netns?: string;
  /** @default 'batch' (see TunReadMode) */
  readMode?: TunReadMode;
  /** Most packets per handler call. @default 64 */
  readBatch?: number;
  /** Cancels configuration; the device is closed again. */
  signal?: AbortSignal;
}

/** Counters of one device. */
export interface TunStats {
  rxPackets: number;
  rxBatches: number;
  txPackets: number;
  txDropped: number;
  txInvalid: number;
}

/*
 * Device lifecycle:
 *
 *   open ──onPackets()──► reading ──read error──► failed
 *     │                      │                       │
 *     └──────────────────────┴──────close()──────────┴──► closed
 */
type TunState = 'open' | 'reading' | 'failed' | 'closed';

/** A TUN device opened and configured by polytun. Closing it removes it from the system. */
export class TunDevice {
  /** The kernel name of the device. */
  readonly name: string;
  readonly mtu: number;
  /** The namespace the device lives in, if it was moved. */
  readonly netns: string | undefined;
  readonly stats: TunStats = { rxPackets: 0, rxBatches: 0, txPackets: 0, txDropped: 0, txInvalid: 0 };
  private readonly fd: number;
  private readonly init: TunDeviceInit;
  private state: TunState = 'open';
  private reader: TunReader | undefined;
  private handler: ((packets: Buffer[]) => void) | undefined;
  private errorHandler: ((err: TunError) => void) | undefined;

  private constructor(fd: number, name: string, init: TunDeviceInit) {
    this.fd = fd;
    this.name = name;
    this.mtu = init.mtu;
    this.netns = init.netns;
    this.init = init;
  }

  /**
   * Opens a TUN device and configures it: optional move to `netns`, then
   * `ip link set dev X mtu M [txqueuelen Q] up` and `ip addr add` for each
   * address. On any failure the device is closed (and so removed) again.
   * Throws TunError, IprouteError, ConfigError or NativeUnavailableError.
   */
  static async create(init: TunDeviceInit): Promise<TunDevice> {
    if (!Number.isInteger(init.mtu) || init.mtu < 68 || init.mtu > 65535) {
      throw new ConfigError('tun.mtu', `must be an integer 68-65535, got ${init.mtu}`);
    }
    const addresses = (init.addresses ?? []).map(checkCidr);
    const tun = openTun(init.name);
    try {
      const ipOpts: IpOptions = {};
      if (init.signal !== undefined) ipOpts.signal = init.signal;
      if (init.netns !== undefined) {
        await linkSetNetns(tun.name, init.netns, ipOpts);
        ipOpts.netns = init.netns;
      }
      const changes: { mtu: number; up: true; txqueuelen?: number } = { mtu: init.mtu, up: true };
      if (init.txqueuelen !== undefined) changes.txqueuelen = init.txqueuelen;
      await linkSet(tun.name, changes, ipOpts);
      // No duplicate address detection on IPv6: a TUN link has no neighbours
      // to collide with, and DAD would leave the address unusable for ~1 s.
      for (const cidr of addresses) await addAddress(tun.name, cidr, { ...ipOpts, nodad: cidr.includes(':') });
    } catch (err) {
      closeFd(tun.fd);
      throw err;
    }
    return new TunDevice(tun.fd, tun.name, init);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /**
   * Sets the packet handler and starts reading (first call). Each call gets
   * one batch of whole IP packets. In `shared` read mode the Buffers are
   * valid only until the handler returns. A handler that throws raises an
   * uncaught exception, as an EventEmitter listener would.
   */
  onPackets(handler: (packets: Buffer[]) => void): void {
    if (this.state === 'closed') throw new ClosedError(`TUN device ${this.name}`);
    this.handler = handler;
    if (this.state !== 'open') return;
    this.state = 'reading';
    this.reader = startTunReader(
      this.fd,
      { mode: this.init.readMode ?? 'batch', batch: this.init.readBatch ?? 64, slot: this.mtu },
      (packets) => {
        this.stats.rxPackets += packets.length;
        this.stats.rxBatches++;
        this.handler?.(packets);
      },
      (err) => this.fail(err),
    );
  }

  /** Sets the handler of read errors (device deleted…); without one they are thrown as uncaught. */
  onError(handler: (err: TunError) => void): void {
    this.errorHandler = handler;
  }

  /** Packets dropped on read because they exceeded the MTU. */
  get oversizeDropped(): number {
    return this.reader?.oversizeDropped ?? 0;
  }

  /** Injects IP packets into the kernel. Full queue → counted as dropped, never thrown. */
  write(packets: readonly Uint8Array[]): TunWriteResult {
    if (this.state === 'closed') throw new ClosedError(`TUN device ${this.name}`);
    const r = writePackets(this.fd, packets);
    this.stats.txPackets += r.written;
    this.stats.txDropped += r.dropped;
    this.stats.txInvalid += r.invalid;
    return r;
  }

  /** Stops reading and closes the fd; the kernel removes the device. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.reader?.stop();
    this.reader = undefined;
    closeFd(this.fd);
  }

  private fail(err: TunError): void {
    this.state = 'failed';
    this.reader?.stop();
    if (this.errorHandler === undefined) throw err;
    this.errorHandler(err);
  }
}
