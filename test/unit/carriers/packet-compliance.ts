/**
 * The compliance suite every packet carrier runs: a carrier's test file
 * calls `packetCarrierCompliance(name, setup)`. Packets may be lost in
 * general, but on loopback and in memory (loss 0) with modest batches they
 * are not, so the suite expects every packet back.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { LimitError } from '../../../src/core/errors.js';
import type { Endpoint, Listener, PacketCarrier, PacketConn } from '../../../src/carriers/types.js';
import { delay, within } from '../../helpers/byte-streams.js';
import { waitUntil } from '../../helpers/eventually.js';

/** What a packet carrier's test file provides to the suite. */
export interface PacketCarrierFixture {
  server: PacketCarrier;
  client: PacketCarrier;
  /** Where to listen (port 0 is fine). */
  listenAt: Endpoint;
  /** The maxPacketSize both carriers were configured with. */
  maxPacketSize: number;
}

const LIVENESS_MS = 20_000;

/** Collects what a conn receives; `waitFor(n)` resolves once n packets arrived. */
class Inbox {
  readonly packets: Buffer[] = [];
  batches = 0;
  constructor(conn: PacketConn) {
    conn.onPackets((batch) => {
      this.batches++;
      this.packets.push(...batch);
    });
  }
  async waitFor(n: number, what: string): Promise<Buffer[]> {
    await within(
      (async () => {
        while (this.packets.length < n) await delay(2);
      })(),
      LIVENESS_MS,
      what,
    );
    return this.packets;
  }
}

async function start(
  t: TestContext,
  fx: PacketCarrierFixture,
  handler: (conn: PacketConn) => void,
): Promise<{ listener: Listener; serverConns: PacketConn[]; dial(): Promise<PacketConn> }> {
  const serverConns: PacketConn[] = [];
  const clientConns: PacketConn[] = [];
  const listener = await fx.server.listen(fx.listenAt, (conn) => {
    serverConns.push(conn);
    handler(conn);
  });
  t.after(async () => {
    for (const c of [...clientConns, ...serverConns]) c.close();
    await listener.close();
  });
  return {
    listener,
    serverConns,
    dial: async () => {
      const c = await fx.client.dial(listener.address);
      clientConns.push(c);
      return c;
    },
  };
}

const echo = (conn: PacketConn): void => conn.onPackets((batch) => conn.send(batch));
const key = (packets: readonly Buffer[]): string[] => packets.map((p) => p.toString('hex')).sort();

/** Runs the packet carrier contract against the carriers `setup` returns. */
export function packetCarrierCompliance(name: string, setup: () => Promise<PacketCarrierFixture>): void {
  describe(`packet carrier compliance: ${name}`, () => {
    it('batches round trip through an echo listener', async (t) => {
      const fx = await setup();
      const h = await start(t, fx, echo);
      const conn = await h.dial();
      const inbox = new Inbox(conn);
      const sent: Buffer[] = [];
      for (let round = 0; round < 3; round++) {
        const batch = Array.from({ length: 40 }, (_, i) => randomBytes(1 + ((i * 37 + round * 101) % fx.maxPacketSize)));
        assert.equal(conn.send(batch), true);
        sent.push(...batch);
        await inbox.waitFor(sent.length, `echo of round ${round}`);
      }
      assert.deepEqual(key(inbox.packets), key(sent));
      assert.equal(h.serverConns.length, 1);
    });

    it('maxPacketSize is enforced on send, and a packet of exactly that size goes through', async (t) => {
      const fx = await setup();
      const h = await start(t, fx, echo);
      const conn = await h.dial();
      assert.equal(conn.maxPacketSize, fx.maxPacketSize);
      const inbox = new Inbox(conn);
      const tooBig = Buffer.alloc(fx.maxPacketSize + 1);
      assert.throws(() => conn.send([tooBig]), LimitError);
      // an oversize packet fails the whole batch: the good one before it is not sent either
      assert.throws(() => conn.send([Buffer.from('not sent'), tooBig]), LimitError);
      const full = randomBytes(fx.maxPacketSize);
      conn.send([full]);
      const [first] = await inbox.waitFor(1, 'max-size echo');
      assert.deepEqual(first, full);
    });

    it('many peers are demultiplexed on one listener', async (t) => {
      const fx = await setup();
      const h = await start(t, fx, (conn) => conn.onPackets((batch) => conn.send(batch.map((p) => Buffer.concat([p, Buffer.from('|ack')])))));
      const peers = await Promise.all(Array.from({ length: 20 }, () => h.dial()));
      const inboxes = peers.map((p) => new Inbox(p));
      peers.forEach((p, i) => p.send([Buffer.from(`peer ${i}`)]));
      for (const [i, inbox] of inboxes.entries()) {
        const got = await inbox.waitFor(1, `reply to peer ${i}`);
        assert.deepEqual(got.map(String), [`peer ${i}|ack`]);
      }
      assert.equal(h.serverConns.length, 20);
      assert.equal(new Set(h.serverConns.map((c) => c.remote)).size, 20);
    });

    it('close() fires onClose exactly once, without an error; send after close returns false', async (t) => {
      const fx = await setup();
      const h = await start(t, fx, echo);
      const conn = await h.dial();
      const calls: unknown[] = [];
      conn.onClose((err) => calls.push(err));
      conn.close();
      conn.close();
      const late: unknown[] = [];
      conn.onClose((err) => late.push(err)); // registered after the fact: still told, once
      // Wait for the notifications however late they come, then one more turn for a duplicate.
      await waitUntil(() => calls.length > 0 && late.length > 0, 'both close callbacks');
      await delay(10);
      assert.deepEqual(calls, [undefined]);
      assert.deepEqual(late, [undefined]);
      assert.equal(conn.send([Buffer.from('x')]), false);
    });

    it('listener close() ignores new peers but keeps existing associations', async (t) => {
      const fx = await setup();
      const h = await start(t, fx, echo);
      const old = await h.dial();
      const oldInbox = new Inbox(old);
      old.send([Buffer.from('hello')]);
      await oldInbox.waitFor(1, 'first echo');
      await h.listener.close();
      await h.listener.close(); // idempotent
      const newcomer = await h.dial();
      newcomer.send([Buffer.from('anyone?')]);
      old.send([Buffer.from('still here')]);
      const got = await oldInbox.waitFor(2, 'echo after listener close');
      assert.equal(got[1]?.toString(), 'still here');
      // the newcomer's datagram was sent first, so it has been seen and ignored by now
      assert.equal(h.serverConns.length, 1);
    });
  });
}
