/**
 * What a short exchange costs on the wire, in records and frame types: each
 * record is a socket write and a wake-up of the peer, which is most of a new
 * connection's latency. Counted by spying on SecureChannel.write.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { SecureChannel } from '../../../src/secure/channel.js';
import { F_ACK, F_DATA, F_OPEN, F_WINDOW } from '../../../src/session/frames.js';
import { makePair, type Pair } from '../../helpers/session-pair.js';
import { sessionsQuiet } from '../../helpers/session-quiet.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});

/** Frame types in a record plaintext (type byte first), walking the frame headers. */
function frameTypes(pt: Buffer, len: number): number[] {
  const types: number[] = [];
  for (let off = 1; off < len; ) {
    const t = pt[off] as number;
    types.push(t);
    // sizes from src/session/frames.ts: DATA/OPEN carry a u16 length after type+seq+sid
    if (t === 0x01 || t === 0x02) off += 13 + pt.readUInt16BE(off + 11);
    else if (t === 0x03) off += 11;
    else if (t === 0x04) off += 15;
    else if (t === F_WINDOW) off += 11;
    else if (t === 0x11) off += 7;
    else if (t === 0x12 || t === 0x13) off += 5;
    else break; // others do not occur in this exchange
  }
  return types;
}

describe('records per exchange', () => {
  it('a small request/response on a new stream sends no WINDOW frame and no ACK-only record for what a reply can carry', async () => {
    const p = await makePair();
    pairs.push(p);
    const ss = await p.serverSession;
    ss.onStream((s) => s.pipe(s)); // an echo, as a relay to a target would read and write
    await sessionsQuiet(p.clientSession, ss); // let the handshake's own records pass
    const sent: number[][] = [];
    const orig = SecureChannel.prototype.write;
    SecureChannel.prototype.write = function (this: SecureChannel, buf: Buffer, len: number): boolean {
      sent.push(frameTypes(buf, len));
      return orig.call(this, buf, len);
    };
    try {
      const s = p.clientSession.openStream(Buffer.from('x'));
      s.write(Buffer.alloc(64, 1));
      const [echo] = (await once(s, 'data')) as [Buffer];
      assert.equal(echo.length, 64);
      await delay(30); // both sides have read; any credit update would have gone out by now
      s.end();
      s.resume();
      await once(s, 'end');
    } finally {
      SecureChannel.prototype.write = orig;
    }
    assert.ok(sent.length > 0, 'records were seen');
    assert.ok(!sent.flat().includes(F_WINDOW), `no WINDOW frame expected, saw records ${JSON.stringify(sent)}`);
    // The reply carries the acknowledgement of the request (no ACK-only
    // record from the server); only the client, idle for 30 ms above, sends one.
    const reply = sent.find((r) => r[0] === F_DATA && !r.includes(F_OPEN));
    assert.ok(reply?.includes(F_ACK), `the reply record should carry an ACK, saw records ${JSON.stringify(sent)}`);
    assert.ok(sent.filter((r) => r.length === 1 && r[0] === F_ACK).length <= 1, `ACK-only records: ${JSON.stringify(sent)}`);
  });
});
