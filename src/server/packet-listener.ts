/**
 * A `udp://` listener of the server: one UDP socket whose associations all
 * go to one packet responder of the session server (handshake, cookies,
 * roaming, then the reliable transport under each session). Closing it
 * stops new associations and ends the responder's.
 */
import type { CcChoice } from '../arq/cc-choice.js';
import type { Endpoint, Listener } from '../carriers/types.js';
import { UdpPacketCarrier } from '../carriers/udp.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { SessionServer } from './session-server.js';

/** Socket buffers of a server's UDP socket: every client's datagrams queue in one. */
const UDP_SERVER_SOCKET_BUFFER = 4 * 1024 * 1024;

export interface PacketListenOptions {
  logger: Logger;
  metrics?: Metrics | undefined;
  cc?: CcChoice | undefined;
  /** Cap on a client's fixed:RATE, bytes per second. */
  maxFixedRate?: number | undefined;
  /** Largest UDP payload sent. @default 1452 */
  datagramSize?: number | undefined;
}

/** Binds `at` and serves it with `server`'s packet responder. */
export async function listenUdp<U>(at: Endpoint, server: SessionServer<U>, opts: PacketListenOptions): Promise<Listener> {
  const carrier = new UdpPacketCarrier({
    logger: opts.logger,
    recvBufferSize: UDP_SERVER_SOCKET_BUFFER,
    sendBufferSize: UDP_SERVER_SOCKET_BUFFER,
    ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
  });
  const responder = server.packetResponder({ carrier: 'udp', ...(opts.cc !== undefined ? { cc: opts.cc } : {}), ...(opts.maxFixedRate !== undefined ? { maxFixedRate: opts.maxFixedRate } : {}), ...(opts.datagramSize !== undefined ? { maxDatagramSize: opts.datagramSize } : {}) });
  const listener = await carrier.listen(at, (conn) => responder.accept(conn));
  return {
    address: listener.address,
    close: async () => {
      responder.close();
      await listener.close();
    },
  };
}
