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
 *
 * With `offload` the device is opened with the vnet header and checksum +
 * TCP segmentation offload (src/tun/vnet.ts): a read may return a TCP
 * super-packet of up to 64 KiB or a packet with a partial checksum, each
 * with its `meta`, and write() takes such packets back. Where the kernel
 * refuses the offloads the device still works, just without super-packets.
 */
import { ClosedError, ConfigError } from '../core/errors.js';
import type { Metrics } from '../core/metrics.js';
import { closeFd, nativeBinding, nativeErrnoOf, openTun, TunError, tunSetOffload, writePackets } from '../native/addon.js';
import type { TunWriteResult } from '../native/addon.js';
import { toPlainPackets } from './gso.js';
import { addAddress, checkCidr, linkSet, linkSetNetns, runIp } from './iproute.js';
import type { IpOptions } from './iproute.js';
import { inspectPacket, newPacketInfo } from './packet.js';
import { MAX_GSO_SEGS, metaFromVnetHdr, OFF_GSO, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_GSO_MAX_SIZE, VNET_HDR_LEN, writeVnetHdr } from './vnet.js';

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

/**
 * Bytes read per wake-up from an offload device: a batch of super-packets
 * goes to the session's datagram queue (1 MiB) before the session flushes
 * any of it, so a bigger one would be partly dropped.
 */
const READ_BYTES_OFFLOAD = 256 * 1024;

/** Options of startTunReader. */
export interface TunReaderInit {
  /** @default 'batch' */
  mode?: TunReadMode;
  /** Most packets read per wake-up (one handler call). @default 64 */
  batch?: number;
  /** Largest packet accepted, bytes (the device MTU); bigger ones are dropped and counted. */
  slot: number;
  /** The fd was opened with the vnet header: each read starts with one (then `slot` must include it). @default false */
  vnetHdr?: boolean;
  /** Most bytes per wake-up (the read that crosses it is kept). @default no bound but batch × slot */
  maxBytes?: number;
}

/** A running reader; `stop()` is idempotent and leaves the fd open. */
export interface TunReader {
  stop(): void;
  /** Packets dropped because they exceeded `slot`. */
  readonly oversizeDropped: number;
  /** vnetHdr only: packets dropped for an offload never asked for (see metaFromVnetHdr). */
  readonly offloadDropped: number;
}

/**
 * Starts reading `fd` on the event loop. `onPackets` receives each batch;
 * `onError` a read error (e.g. the device was deleted), after which reading
 * has stopped. With `vnetHdr` the packets come without their header, which
 * stays in front of each (gsoDatagramInPlace reuses the room), and `meta`
 * holds each packet's offload state (vnet.ts); otherwise `meta` is undefined.
 */
export function startTunReader(
  fd: number,
  init: TunReaderInit,
  onPackets: (packets: Buffer[], meta: number[] | undefined) => void,
  onError: (err: TunError) => void,
): TunReader {
  const mode = init.mode ?? 'batch';
  const batch = init.batch ?? 64;
  const slot = init.slot;
  const vnet = init.vnetHdr === true;
  const b = nativeBinding('TUN devices');
  let raw: ReturnType<typeof b.tunReaderStart> | undefined;
  let offloadDropped = 0;
  const callback = (err: Error | null, count: number, data: Buffer | Buffer[] | undefined): void => {
    if (err !== null) {
      const n = nativeErrnoOf(err);
      onError(new TunError(n?.code ?? 'EIO', n?.syscall ?? 'read', `TUN ${err.message}`, { cause: err }));
      return;
    }
    if (Array.isArray(data)) return vnet ? splitVnet(data) : onPackets(data, undefined);
    const lens = raw?.lens;
    if (lens === undefined) return;
    const src = data ?? raw?.shared;
    if (src === undefined) return;
    const packets = new Array<Buffer>(count);
    const meta: number[] | undefined = vnet ? [] : undefined;
    let off = 0;
    let kept = 0;
    for (let i = 0; i < count; i++) {
      const len = lens[i] ?? 0;
      // batch: packets back to back; shared: one slot each
      const start = data === undefined ? i * slot : off;
      off += len;
      if (meta === undefined) packets[kept++] = src.subarray(start, start + len);
      else {
        // vnet: the header stays in front of the packet (room for the wire header, see vnet.ts)
        const m = len > VNET_HDR_LEN ? metaFromVnetHdr(src, start) : -1;
        if (m < 0) offloadDropped++;
        else {
          packets[kept++] = src.subarray(start + VNET_HDR_LEN, start + len);
          meta.push(m);
        }
      }
    }
    if (kept < count) packets.length = kept;
    if (kept > 0) onPackets(packets, meta);
  };
  /** Mode `copy` on a vnet fd: one Buffer per read, header first. */
  const splitVnet = (raws: Buffer[]): void => {
    const packets: Buffer[] = [];
    const meta: number[] = [];
    for (const r of raws) {
      const m = r.length > VNET_HDR_LEN ? metaFromVnetHdr(r, 0) : -1;
      if (m < 0) offloadDropped++;
      else {
        packets.push(r.subarray(VNET_HDR_LEN));
        meta.push(m);
      }
    }
    if (packets.length > 0) onPackets(packets, meta);
  };
  try {
    raw = init.maxBytes === undefined ? b.tunReaderStart(fd, MODE_CODE[mode], batch, slot, callback) : b.tunReaderStart(fd, MODE_CODE[mode], batch, slot, callback, init.maxBytes);
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
    get offloadDropped(): number {
      return offloadDropped;
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
  /**
   * Checksum and TCP segmentation offload (see the file comment and vnet.ts).
   * @default false
   */
  offload?: boolean;
  /**
   * With `offload`: whether reads may return offloaded packets (TUNSETOFFLOAD);
   * off, the kernel segments and checksums before we read, while writes still
   * take offloaded packets. See setReadOffload. @default true
   */
  readOffload?: boolean;
  /** Cancels configuration; the device is closed again. */
  signal?: AbortSignal;
  /** Where to register the device's counters (`polytun_tun_*`, read from `stats` when collected). @default none */
  metrics?: Metrics;
}

/** Counters of one device. */
export interface TunStats {
  rxPackets: number;
  rxBatches: number;
  txPackets: number;
  txDropped: number;
  txInvalid: number;
  /** Offload devices: super-packets read (each counted once in rxPackets). */
  rxSuper: number;
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
  readonly stats: TunStats = { rxPackets: 0, rxBatches: 0, txPackets: 0, txDropped: 0, txInvalid: 0, rxSuper: 0 };
  /**
   * Opened with the vnet header: write() hands offloaded packets to the
   * kernel as they are (without it they are cut and checksummed here first).
   */
  readonly offload: boolean;
  private readonly fd: number;
  private readonly init: TunDeviceInit;
  private state: TunState = 'open';
  private reader: TunReader | undefined;
  private handler: ((packets: Buffer[], meta: number[] | undefined) => void) | undefined;
  private errorHandler: ((err: TunError) => void) | undefined;
  private readonly info = newPacketInfo();
  private hdrs = Buffer.alloc(0);

  private constructor(fd: number, name: string, init: TunDeviceInit) {
    this.fd = fd;
    this.name = name;
    this.mtu = init.mtu;
    this.netns = init.netns;
    this.init = init;
    this.offload = init.offload === true;
    if (init.metrics !== undefined) registerTunMetrics(init.metrics, this);
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
    const offload = init.offload === true;
    const tun = openTun(init.name, { vnetHdr: offload });
    try {
      // Without TSO the kernel just never hands us super-packets: still a working device.
      if (offload && init.readOffload !== false) enableOffload(tun.fd);
      const ipOpts: IpOptions = {};
      if (init.signal !== undefined) ipOpts.signal = init.signal;
      if (init.netns !== undefined) {
        await linkSetNetns(tun.name, init.netns, ipOpts);
        ipOpts.netns = init.netns;
      }
      const changes: { mtu: number; up: true; txqueuelen?: number } = { mtu: init.mtu, up: true };
      if (init.txqueuelen !== undefined) changes.txqueuelen = init.txqueuelen;
      await linkSet(tun.name, changes, ipOpts);
      // Super-packets that fit one datagram (vnet.ts); an iproute2 or kernel without these keywords
      // leaves the defaults, and the sender then cuts the rare oversize one itself.
      if (offload) await runIp(['link', 'set', 'dev', tun.name, 'gso_max_size', String(TUN_GSO_MAX_SIZE), 'gso_max_segs', String(MAX_GSO_SEGS - 4)], ipOpts).catch(() => undefined);
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
   * one batch of whole IP packets, and on an offload device their `meta`
   * (vnet.ts; undefined otherwise). In `shared` read mode the Buffers are
   * valid only until the handler returns. A handler that throws raises an
   * uncaught exception, as an EventEmitter listener would.
   */
  onPackets(handler: (packets: Buffer[], meta: number[] | undefined) => void): void {
    if (this.state === 'closed') throw new ClosedError(`TUN device ${this.name}`);
    this.handler = handler;
    if (this.state !== 'open') return;
    this.state = 'reading';
    // An offload device reads super-packets of up to 64 KiB, behind their header, and at most
    // READ_BYTES_OFFLOAD per wake-up (what the handler passes on must fit the session's datagram queue).
    const slot = this.offload ? VNET_HDR_LEN + 65535 : this.mtu;
    this.reader = startTunReader(
      this.fd,
      { mode: this.init.readMode ?? 'batch', batch: this.init.readBatch ?? 64, slot, vnetHdr: this.offload, ...(this.offload ? { maxBytes: READ_BYTES_OFFLOAD } : {}) },
      (packets, meta) => {
        this.stats.rxPackets += packets.length;
        this.stats.rxBatches++;
        if (meta !== undefined) for (const m of meta) if ((m & OFF_GSO) !== 0) this.stats.rxSuper++;
        this.handler?.(packets, meta);
      },
      (err) => this.fail(err),
    );
  }

  /**
   * Offload devices: lets reads return offloaded packets again, or stops it
   * (for a peer that cannot take them: the kernel then does the work, which
   * is cheaper than cutting them here). Packets queued before the switch
   * keep their state. A no-op on a device without offload.
   */
  setReadOffload(on: boolean): void {
    if (this.state === 'closed') throw new ClosedError(`TUN device ${this.name}`);
    if (!this.offload) return;
    if (on) enableOffload(this.fd);
    else tunSetOffload(this.fd, 0);
  }

  /** Sets the handler of read errors (device deleted…); without one they are thrown as uncaught. */
  onError(handler: (err: TunError) => void): void {
    this.errorHandler = handler;
  }

  /** Packets dropped on read because they exceeded the MTU. */
  get oversizeDropped(): number {
    return this.reader?.oversizeDropped ?? 0;
  }

  /** Offload devices: packets dropped on read for an offload never asked for. */
  get offloadDropped(): number {
    return this.reader?.offloadDropped ?? 0;
  }

  /**
   * Injects IP packets into the kernel. Full queue → counted as dropped,
   * never thrown. `meta` (vnet.ts, one per packet; default all 0) must have
   * passed checkOffload; a device without offload gets such packets cut and
   * checksummed first (then `written` counts the pieces).
   */
  write(packets: readonly Buffer[], meta?: readonly number[]): TunWriteResult {
    if (this.state === 'closed') throw new ClosedError(`TUN device ${this.name}`);
    let r: TunWriteResult;
    if (this.offload) r = this.writeVnet(packets, meta);
    else if (meta === undefined || meta.every((m) => m === 0)) r = writePackets(this.fd, packets);
    else {
      const plain: Buffer[] = [];
      let invalid = 0;
      packets.forEach((p, i) => {
        const m = meta[i] ?? 0;
        if (m !== 0 && (inspectPacket(p, this.info) !== undefined || !toPlainPackets(p, m, this.info, plain))) invalid++;
        else if (m === 0) plain.push(p);
      });
      r = writePackets(this.fd, plain);
      r.invalid += invalid;
    }
    this.stats.txPackets += r.written;
    this.stats.txDropped += r.dropped;
    this.stats.txInvalid += r.invalid;
    return r;
  }

  /** Every packet behind its virtio_net_hdr (all zero for a plain packet). */
  private writeVnet(packets: readonly Buffer[], meta: readonly number[] | undefined): TunWriteResult {
    const n = packets.length;
    if (this.hdrs.length < n * VNET_HDR_LEN) this.hdrs = Buffer.alloc(Math.max(n, 64) * VNET_HDR_LEN);
    const hdrs = this.hdrs;
    let kept: Buffer[] | undefined;
    let invalid = 0;
    for (let i = 0; i < n; i++) {
      const p = packets[i] as Buffer;
      const m = meta?.[i] ?? 0;
      const at = (kept?.length ?? i) * VNET_HDR_LEN;
      const ok = m === 0 ? writeVnetHdr(hdrs, at, p, 0, this.info) : inspectPacket(p, this.info) === undefined && writeVnetHdr(hdrs, at, p, m, this.info);
      if (!ok) {
        invalid++;
        kept ??= packets.slice(0, i);
      } else kept?.push(p);
    }
    const r = writePackets(this.fd, kept ?? packets, hdrs);
    r.invalid += invalid;
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

/** The device's counters as metrics (one device per process: the VPN's). */
function registerTunMetrics(m: Metrics, dev: TunDevice): void {
  const st = dev.stats;
  m.registerCounterGroup('polytun_tun_packets_total', { help: 'Packets read from and written to the TUN device (a super-packet counts once)', label: 'direction', collect: () => ({ read: st.rxPackets, written: st.txPackets }) });
  m.registerCounter('polytun_tun_read_batches_total', { help: 'Reads of the TUN device (each hands over a batch of packets)', collect: () => st.rxBatches });
  m.registerCounter('polytun_tun_super_packets_read_total', { help: 'TCP super-packets read (offload devices)', collect: () => st.rxSuper });
  m.registerCounterGroup('polytun_tun_dropped_total', {
    help: 'Packets dropped at the TUN device (write_full: kernel queue full, write_invalid: refused by the kernel, read_oversize: over the MTU, read_offload: an offload never asked for)',
    label: 'reason',
    collect: () => ({ write_full: st.txDropped, write_invalid: st.txInvalid, read_oversize: dev.oversizeDropped, read_offload: dev.offloadDropped }),
  });
}

/** TUNSETOFFLOAD: checksum and TCP segmentation; checksum only, or none, where the kernel refuses. */
function enableOffload(fd: number): void {
  for (const flags of [TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM]) {
    try {
      tunSetOffload(fd, flags);
      return;
    } catch (err) {
      if (!(err instanceof TunError) || err.errno !== 'EINVAL') throw err;
    }
  }
}
