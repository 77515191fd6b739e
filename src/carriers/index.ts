/**
 * Carriers: public surface and a factory that builds one from a URL scheme.
 * The factory takes every dependency as an argument (no registry filled at
 * import time), so two configurations can live in one process.
 */
import { ConfigError } from '../core/errors.js';
import { MemoryPacketCarrier, type MemoryPacketInit } from './memory-packet.js';
import type { MemoryNetwork } from './memory-network.js';
import { MemoryStreamCarrier, type MemoryStreamInit } from './memory.js';
import { TcpCarrier, type TcpCarrierInit } from './tcp.js';
import { TlsCarrier, type TlsCarrierInit } from './tls.js';
import type { Carrier } from './types.js';
import { UdpPacketCarrier, type UdpCarrierInit } from './udp.js';

export type * from './types.js';
export { formatEndpoint } from './types.js';
export { TcpCarrier, type TcpCarrierInit } from './tcp.js';
export { TlsCarrier, type TlsCarrierInit } from './tls.js';
export { UdpPacketCarrier, type UdpCarrierInit } from './udp.js';
export { MemoryStreamCarrier, memoryStreamPair, type MemoryStreamInit } from './memory.js';
export { MemoryPacketCarrier, memoryPacketPair, type MemoryPacketInit } from './memory-packet.js';
export { MemoryNetwork } from './memory-network.js';
export type { PacketStats } from './packet-base.js';
export { generateSelfSigned, certFingerprint, type SelfSignedInit, type SelfSignedCert } from './cert.js';
export { DialError, ListenError, ConnectionResetError, CertificateError, errnoOf } from './errors.js';
export { DEFAULT_DIAL_TIMEOUT_MS } from './dial.js';

/** Per-scheme options for {@link carrierForScheme}. */
export interface CarrierOptions {
  /** For `tcp` (and the TCP under `tls`, unless `tls.tcp` is set). */
  tcp?: TcpCarrierInit;
  /** For `tls`. */
  tls?: TlsCarrierInit;
  /** For `udp`. */
  udp?: UdpCarrierInit;
  /** The in-process network for `mem` and `mem+udp` (tests). */
  memory?: { network: MemoryNetwork; stream?: MemoryStreamInit; packet?: MemoryPacketInit };
}

/** The schemes {@link carrierForScheme} knows. ws/wss/webrtc carriers live elsewhere. */
export const CARRIER_SCHEMES = ['tcp', 'tls', 'udp', 'mem', 'mem+udp'] as const;

/**
 * Builds the carrier for `scheme` from `options`. Throws ConfigError for an
 * unknown scheme or a memory scheme without a network.
 */
export function carrierForScheme(scheme: string, options: CarrierOptions = {}): Carrier {
  switch (scheme) {
    case 'tcp':
      return new TcpCarrier(options.tcp);
    case 'tls': {
      const tls: TlsCarrierInit = { ...options.tls };
      if (tls.tcp === undefined && options.tcp !== undefined) tls.tcp = options.tcp;
      return new TlsCarrier(tls);
    }
    case 'udp':
      return new UdpPacketCarrier(options.udp);
    case 'mem':
    case 'mem+udp': {
      const mem = options.memory;
      if (!mem) throw new ConfigError('carrier', `scheme ${scheme} needs a MemoryNetwork (options.memory.network)`);
      return scheme === 'mem' ? new MemoryStreamCarrier(mem.network, mem.stream) : new MemoryPacketCarrier(mem.network, mem.packet);
    }
    default:
      throw new ConfigError('carrier', `unknown carrier scheme "${scheme}" (known: ${CARRIER_SCHEMES.join(', ')})`);
  }
}
