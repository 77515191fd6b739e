/**
 * Packet secure channel pairs for the tests: a hand-driven datagram port
 * (everything sent is kept until the test delivers it, so loss, duplication
 * and reordering are the test's choice), and connected channel pairs made by
 * the real handshake over a packet carrier (memory or loopback UDP) for the
 * record-channel compliance suite.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { PacketCarrier, PacketConn } from '../../../src/carriers/types.js';
import { ManualClock, realClock } from '../../../src/core/clock.js';
import type { Admission } from '../../../src/secure/handshake.js';
import { generateKeyPair } from '../../../src/secure/keys.js';
import type { DatagramPort, PacketRecordChannel } from '../../../src/secure/packet-channel.js';
import { packetClientHandshake, type PacketClientInit } from '../../../src/secure/packet-handshake.js';
import { PacketResponder, type PacketResponderInit } from '../../../src/secure/packet-responder.js';
import type { RecordChannelPair } from './record-channel-compliance.js';

export const serverKeys = generateKeyPair();
export const clientKeys = generateKeyPair();
export const windows = { streamWindow: 1 << 20, sessionWindow: 1 << 24 };
export const admitAll = (): Admission => ({ accept: true, sessionId: randomBytes(16), recvSeq: 0, resumed: false, ...windows });

/** A datagram port driven by hand: `sent` keeps what was sent, `deliver` hands a datagram to the handler. */
export class HandPort implements DatagramPort {
  sent: Buffer[] = [];
  bytesSent = 0;
  closed = false;
  #handler: ((packets: Buffer[]) => void) | undefined;
  #closeHandlers: ((err?: Error) => void)[] = [];

  constructor(
    readonly remote: string,
    readonly local = 'here',
    readonly maxPacketSize = 1452,
  ) {}

  send(packets: readonly Buffer[]): boolean {
    if (this.closed) return false;
    for (const p of packets) {
      this.sent.push(Buffer.from(p));
      this.bytesSent += p.length;
    }
    return true;
  }

  onPackets(handler: (packets: Buffer[]) => void): void {
    this.#handler = handler;
  }

  onClose(handler: (err?: Error) => void): void {
    this.#closeHandlers.push(handler);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.#closeHandlers) h();
  }

  /** Hands `d` (a copy: receivers decrypt in place) to the handler. */
  deliver(d: Buffer): void {
    this.#handler?.([Buffer.from(d)]);
  }

  /** Takes what was sent so far. */
  take(): Buffer[] {
    const s = this.sent;
    this.sent = [];
    return s;
  }
}

/** Moves everything `from` sent to `to` (the other end of the wire); returns how many datagrams. */
export function pump(from: HandPort, to: HandPort): number {
  const ds = from.take();
  for (const d of ds) to.deliver(d);
  return ds.length;
}

/** Wraps `port` so that its datagrams can be held (a stalled reader) and let go. */
function stallable(port: PacketConn): { port: DatagramPort; stall: () => () => void } {
  let handler: (packets: Buffer[]) => void = () => undefined;
  let held: Buffer[] | undefined;
  port.onPackets((batch) => (held !== undefined ? held.push(...batch) : handler(batch)));
  const wrapped: DatagramPort = {
    get remote() {
      return port.remote;
    },
    get local() {
      return port.local;
    },
    maxPacketSize: port.maxPacketSize,
    send: (p) => port.send(p),
    onPackets: (h) => (handler = h),
    onClose: (h) => port.onClose(h),
    close: () => port.close(),
  };
  return {
    port: wrapped,
    stall: () => {
      held = [];
      return () => {
        const batch = held ?? [];
        held = undefined;
        if (batch.length > 0) handler(batch);
      };
    },
  };
}

/** A pair made by the real handshake over `carrier`: `a` the client's channel, `b` the server's. */
export async function packetCarrierPair(t: TestContext, carrier: PacketCarrier, extra: Partial<PacketResponderInit> = {}): Promise<RecordChannelPair> {
  const responder = new PacketResponder({ clock: realClock, staticKeyPair: serverKeys, admit: admitAll, ...extra });
  let stall: () => () => void = () => () => undefined;
  const session = new Promise<PacketRecordChannel>((resolve) => responder.onSession((s) => resolve(s.channel)));
  const listener = await carrier.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
    const s = stallable(conn);
    stall = s.stall;
    responder.accept(s.port);
  });
  const conn = await carrier.dial(listener.address);
  const [c, b] = await Promise.all([
    packetClientHandshake(conn, { clock: realClock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, carrier: carrier.scheme, ...windows }),
    session,
  ]);
  t.after(async () => {
    c.channel.abort();
    b.abort();
    responder.close();
    await listener.close();
  });
  return { a: c.channel, b, injectToB: (bytes) => void conn.send([bytes]), stallB: () => stall() };
}

/** A client and a server channel over hand-driven ports under a ManualClock; `init` applies to both ends' channels. */
export async function handPair(init: Partial<PacketClientInit> = {}, serverInit: Partial<PacketResponderInit> = init) {
  const clock = new ManualClock();
  const responder = new PacketResponder({ clock, staticKeyPair: serverKeys, admit: admitAll, ...serverInit });
  let server: PacketRecordChannel | undefined;
  responder.onSession((s) => (server = s.channel));
  const cp = new HandPort('server', 'client');
  const sp = new HandPort('client', 'server');
  responder.accept(sp);
  const result = packetClientHandshake(cp, { clock, serverPublicKey: serverKeys.publicKey, clientKeyPair: clientKeys, ...windows, ...init });
  const initiation = cp.sent[0] as Buffer;
  pump(cp, sp);
  const response = sp.sent[0] as Buffer;
  pump(sp, cp);
  const client = (await result).channel;
  return { clock, responder, cp, sp, client, server: server as PacketRecordChannel, initiation, response };
}
