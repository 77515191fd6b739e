/**
 * The VPN client's packet path between its TUN device and the session:
 *
 * ```
 *   TUN read batch ──(MSS clamp)──▶ session.sendDatagram(VPN_FLOW)   refused: dropped
 *   server datagram ──▶ size ─▶ inspect ─▶ dst == our lease ─▶ (MSS clamp) ─▶ TUN write batch
 *                      oversize  malformed   misrouted
 * ```
 *
 * Offloaded packets (src/tun/vnet.ts: TCP super-packets, partial checksums)
 * go to the server whole on VPN_GSO_FLOW when its CONFIG said it takes them,
 * else cut into plain ones; from the server they are checked like plain
 * ones, their metadata too (checkOffload), and written to the TUN as they are.
 *
 * Nothing waits here: while the session has no carrier, sendDatagram
 * refuses and the packet is dropped (the TCP inside the tunnel retransmits
 * once the session is back); writes to the TUN are gathered per tick and
 * handed to the kernel in one call.
 */
import { nullMetrics, type Metrics } from '../core/metrics.js';
import type { TunWriteResult } from '../native/addon.js';
import { sendPacket, type DatagramSink } from '../tun/gso.js';
import { parseIpBytes } from '../tun/ipaddr.js';
import { clampMss, inspectPacket, mssFor, newPacketInfo, V4_DST, V6_DST } from '../tun/packet.js';
import { checkOffload, GSO_WIRE_HEADER, MAX_SUPER_PACKET, metaOfGsoDatagram, OFF_CSUM, OFF_GSO } from '../tun/vnet.js';
import { VPN_FLOW, VPN_GSO_FLOW, type VpnConfig } from '../tun/vpn-wire.js';
import { TunWriteBatch } from '../tun/write-batch.js';

/** Packet counters of the VPN client. */
export interface ClientVpnStats {
  /** Packets read from the TUN and accepted by the session. */
  sent: number;
  /** Packets from the server written to the TUN. */
  received: number;
  /** Packets the session refused (no carrier, queue full). */
  dropped: number;
  /** From the server: not a well-formed IP packet. */
  malformed: number;
  /** From the server: larger than our MTU (a super-packet: a segment larger, too many segments, over 64 KiB). */
  oversize: number;
  /** From the server: destination other than our lease. */
  misrouted: number;
  /** The kernel refused a TUN write. */
  tunDropped: number;
  /** TCP SYNs whose MSS was lowered. */
  clamped: number;
  /** IPv6 packets for this link only (link-local source or multicast destination: RS, MLD): never sent. */
  linkLocal: number;
  /** TCP super-packets among sent and received (offload, see vnet.ts). */
  superPackets: number;
}

/** Options of {@link VpnPacketPath}. */
export interface VpnPacketPathInit {
  /** The device (or anything that takes packet batches like it); `meta`: each packet's offload state (vnet.ts). */
  tun: { readonly mtu: number; readonly closed: boolean; write(packets: readonly Buffer[], meta?: readonly number[]): TunWriteResult };
  mssClamp: boolean;
  /** The session to send on now (it changes when SessionClient renews it). */
  session: () => DatagramSink | undefined;
  /** Where to register the counters (`polytun_client_vpn_*`, read from `counters` when collected). @default nullMetrics */
  metrics?: Metrics;
}

/** See the file comment. */
export class VpnPacketPath {
  readonly counters: ClientVpnStats = { sent: 0, received: 0, dropped: 0, malformed: 0, oversize: 0, misrouted: 0, tunDropped: 0, clamped: 0, linkLocal: 0, superPackets: 0 };
  private readonly info = newPacketInfo();
  private lease4 = 0;
  private lease6: Buffer | undefined;
  private mtu: number;
  private peerOffload = false;
  private stopped = false;
  private readonly toTun: TunWriteBatch;

  constructor(private readonly init: VpnPacketPathInit) {
    this.mtu = init.tun.mtu;
    this.toTun = new TunWriteBatch(init.tun, (r) => {
      this.counters.received += r.written;
      this.counters.tunDropped += r.dropped + r.invalid;
    });
    this.registerMetrics(init.metrics ?? nullMetrics);
  }

  private registerMetrics(m: Metrics): void {
    const k = this.counters;
    m.registerCounterGroup('polytun_client_vpn_packets_total', { help: 'VPN packets (sent: from the TUN into the session; received: from the server onto the TUN)', label: 'direction', collect: () => ({ sent: k.sent, received: k.received }) });
    m.registerCounter('polytun_client_vpn_super_packets_total', { help: 'TCP super-packets among the VPN packets', collect: () => k.superPackets });
    m.registerCounter('polytun_client_vpn_mss_clamped_total', { help: 'TCP SYNs whose MSS was lowered to fit the TUN MTU', collect: () => k.clamped });
    m.registerCounterGroup('polytun_client_vpn_dropped_total', {
      help: 'VPN packets dropped, by reason (dropped: the session refused it; from the server: malformed, oversize, misrouted; linkLocal: never sent; tunDropped: the kernel refused it)',
      label: 'reason',
      collect: () => ({ dropped: k.dropped, malformed: k.malformed, oversize: k.oversize, misrouted: k.misrouted, linkLocal: k.linkLocal, tunDropped: k.tunDropped }),
    });
  }

  /** Takes the addresses and MTU of a (new) config. */
  setLease(c: VpnConfig): void {
    this.lease4 = (parseIpBytes(c.addr4.ip) as Buffer).readUInt32BE(0);
    this.lease6 = c.addr6 ? parseIpBytes(c.addr6.ip) : undefined;
    this.mtu = c.mtu;
    this.peerOffload = c.offload === true;
  }

  /** Stops both directions (packets are then ignored). */
  stop(): void {
    this.stopped = true;
    this.toTun.clear();
  }

  /** A batch read from the TUN, with its offload state when the device has offload. */
  readonly fromTun = (packets: Buffer[], meta?: readonly number[]): void => {
    if (this.stopped) return;
    const k = this.counters;
    const s = this.init.session();
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i] as Buffer;
      // The kernel's own IPv6 chatter on the TUN (router solicitations, MLD) means nothing beyond it.
      if ((p[0] as number) >> 4 === 6 && p.length >= 40 && (p[24] === 0xff || (p[8] === 0xfe && ((p[9] as number) & 0xc0) === 0x80))) {
        k.linkLocal++;
        continue;
      }
      const m = meta?.[i] ?? 0;
      if (this.init.mssClamp && (m & OFF_GSO) === 0) this.clamp(p, (m & OFF_CSUM) !== 0);
      if (s !== undefined && sendPacket(s, VPN_FLOW, VPN_GSO_FLOW, p, m, this.peerOffload, true, this.info)) {
        k.sent++;
        if ((m & OFF_GSO) !== 0) k.superPackets++;
      } else k.dropped++;
    }
  };

  /** A VPN_GSO_FLOW datagram from the server: its header, then the packet as fromServer. */
  fromServerGso(d: Buffer): void {
    const meta = metaOfGsoDatagram(d);
    if (meta < 0) {
      if (!this.stopped) this.counters.malformed++;
      return;
    }
    this.fromServer(d.subarray(GSO_WIRE_HEADER), meta);
  }

  /** One packet from the server (a view into its record: used within this tick only), with its offload state. */
  fromServer(p: Buffer, meta = 0): void {
    if (this.stopped) return;
    const k = this.counters;
    if (p.length > (meta === 0 ? this.mtu : MAX_SUPER_PACKET)) {
      k.oversize++;
      return;
    }
    if (inspectPacket(p, this.info) !== undefined) {
      k.malformed++;
      return;
    }
    if (meta !== 0) {
      const problem = checkOffload(p, this.info, meta, this.mtu);
      if (problem !== undefined) {
        k[problem]++;
        return;
      }
    }
    const ours = this.info.version === 4 ? p.readUInt32BE(V4_DST) === this.lease4 : this.lease6 !== undefined && this.lease6.compare(p, V6_DST, V6_DST + 16) === 0;
    if (!ours) {
      k.misrouted++;
      return;
    }
    if (this.init.mssClamp && (meta & OFF_GSO) === 0 && clampMss(p, this.info, mssFor(this.mtu, this.info.version), (meta & OFF_CSUM) !== 0)) k.clamped++;
    if ((meta & OFF_GSO) !== 0) k.superPackets++;
    this.toTun.push(p, meta);
  }

  private clamp(p: Buffer, partialChecksum: boolean): void {
    if (inspectPacket(p, this.info) === undefined && clampMss(p, this.info, mssFor(this.mtu, this.info.version), partialChecksum)) this.counters.clamped++;
  }
}
