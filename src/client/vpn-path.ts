/**
 * The VPN client's packet path between its TUN device and the session:
 *
 * ```
 *   TUN read batch ──(MSS clamp)──▶ session.sendDatagram(VPN_FLOW)   refused: dropped
 *   server datagram ──▶ size ─▶ inspect ─▶ dst == our lease ─▶ (MSS clamp) ─▶ TUN write batch
 *                      oversize  malformed   misrouted
 * ```
 *
 * Nothing waits here: while the session has no carrier, sendDatagram
 * refuses and the packet is dropped (the TCP inside the tunnel retransmits
 * once the session is back); writes to the TUN are gathered per tick and
 * handed to the kernel in one call.
 */
import type { TunWriteResult } from '../native/addon.js';
import { parseIpBytes } from '../tun/ipaddr.js';
import { clampMss, inspectPacket, mssFor, newPacketInfo, V4_DST, V6_DST } from '../tun/packet.js';
import { VPN_FLOW, type VpnConfig } from '../tun/vpn-wire.js';

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
  /** From the server: larger than our MTU. */
  oversize: number;
  /** From the server: destination other than our lease. */
  misrouted: number;
  /** The kernel refused a TUN write. */
  tunDropped: number;
  /** TCP SYNs whose MSS was lowered. */
  clamped: number;
  /** IPv6 packets for this link only (link-local source or multicast destination: RS, MLD): never sent. */
  linkLocal: number;
}

/** Options of {@link VpnPacketPath}. */
export interface VpnPacketPathInit {
  /** The device (or anything that takes packet batches like it). */
  tun: { readonly mtu: number; readonly closed: boolean; write(packets: readonly Uint8Array[]): TunWriteResult };
  mssClamp: boolean;
  /** The session to send on now (it changes when SessionClient renews it). */
  session: () => { sendDatagram(flow: number, payload: Buffer): boolean } | undefined;
}

/** See the file comment. */
export class VpnPacketPath {
  readonly counters: ClientVpnStats = { sent: 0, received: 0, dropped: 0, malformed: 0, oversize: 0, misrouted: 0, tunDropped: 0, clamped: 0, linkLocal: 0 };
  private readonly info = newPacketInfo();
  private lease4 = 0;
  private lease6: Buffer | undefined;
  private mtu: number;
  private pending: Buffer[] = [];
  private flushQueued = false;
  private stopped = false;

  constructor(private readonly init: VpnPacketPathInit) {
    this.mtu = init.tun.mtu;
  }

  /** Takes the addresses and MTU of a (new) config. */
  setLease(c: VpnConfig): void {
    this.lease4 = (parseIpBytes(c.addr4.ip) as Buffer).readUInt32BE(0);
    this.lease6 = c.addr6 ? parseIpBytes(c.addr6.ip) : undefined;
    this.mtu = c.mtu;
  }

  /** Stops both directions (packets are then ignored). */
  stop(): void {
    this.stopped = true;
    this.pending = [];
  }

  /** A batch read from the TUN. */
  readonly fromTun = (packets: Buffer[]): void => {
    if (this.stopped) return;
    const k = this.counters;
    const s = this.init.session();
    for (const p of packets) {
      // The kernel's own IPv6 chatter on the TUN (router solicitations, MLD) means nothing beyond it.
      if ((p[0] as number) >> 4 === 6 && p.length >= 40 && (p[24] === 0xff || (p[8] === 0xfe && ((p[9] as number) & 0xc0) === 0x80))) {
        k.linkLocal++;
        continue;
      }
      if (this.init.mssClamp) this.clamp(p);
      if (s?.sendDatagram(VPN_FLOW, p)) k.sent++;
      else k.dropped++;
    }
  };

  /** One packet from the server (a view into its record: used within this tick only). */
  fromServer(p: Buffer): void {
    if (this.stopped) return;
    const k = this.counters;
    if (p.length > this.mtu) {
      k.oversize++;
      return;
    }
    if (inspectPacket(p, this.info) !== undefined) {
      k.malformed++;
      return;
    }
    const ours = this.info.version === 4 ? p.readUInt32BE(V4_DST) === this.lease4 : this.lease6 !== undefined && this.lease6.compare(p, V6_DST, V6_DST + 16) === 0;
    if (!ours) {
      k.misrouted++;
      return;
    }
    if (this.init.mssClamp && clampMss(p, this.info, mssFor(this.mtu, this.info.version))) k.clamped++;
    this.pending.push(p);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
  }

  private clamp(p: Buffer): void {
    if (inspectPacket(p, this.info) === undefined && clampMss(p, this.info, mssFor(this.mtu, this.info.version))) this.counters.clamped++;
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0 || this.stopped || this.init.tun.closed) return;
    const r = this.init.tun.write(batch);
    this.counters.received += r.written;
    this.counters.tunDropped += r.dropped + r.invalid;
  };
}
