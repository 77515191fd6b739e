/**
 * The packet secure channel runs the record-channel compliance suite over
 * a memory packet pair and over real loopback UDP (the one case that needs a
 * stream — closing on garbage — is skipped by the suite with its reason, and
 * its datagram counterpart runs instead).
 */
import { MemoryPacketCarrier } from '../../../src/carriers/memory-packet.js';
import { MemoryNetwork } from '../../../src/carriers/memory-network.js';
import { UdpPacketCarrier } from '../../../src/carriers/udp.js';
import { packetCarrierPair } from './packet-pairs.js';
import { recordChannelCompliance } from './record-channel-compliance.js';

recordChannelCompliance('packet channel over memory packets', {
  pair: (t) => packetCarrierPair(t, new MemoryPacketCarrier(new MemoryNetwork())),
  reliable: false,
  protection: 'aead',
});

recordChannelCompliance('packet channel over loopback udp', {
  // Both ends live in this process: a roomy receive buffer keeps a burst of 64 datagrams from overflowing it.
  pair: (t) => packetCarrierPair(t, new UdpPacketCarrier({ recvBufferSize: 4 << 20 })),
  reliable: false,
  protection: 'aead',
});
