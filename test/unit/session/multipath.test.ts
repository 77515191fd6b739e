import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import type { PathRole } from '../../../src/session/multipath/path.js';
import type { TcpRelay } from '../../tools/relay.js';
import { echoStreams, makeBondedPair, readAll, type Pair } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A session whose two paths each run through their own relay. */
async function bonded(roles: [PathRole, PathRole] = ['primary', 'primary']): Promise<{ p: Pair; relays: TcpRelay[] }> {
  const b = await makeBondedPair({ roles });
  cleanups.push(b.close);
  return b;
}

async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function transfer(p: Pair, data: Buffer, midway?: () => void): Promise<Buffer> {
  const s = p.clientSession.openStream();
  const got = readAll(s);
  for (let off = 0; off < data.length; off += 256 << 10) {
    if (!s.write(data.subarray(off, off + (256 << 10)))) await once(s, 'drain');
    if (off === data.length / 2) midway?.();
  }
  s.end();
  return got;
}

describe('bonding: one session over several paths', () => {
  it('spreads one stream over two paths and loses nothing when one is cut', async () => {
    const { p, relays } = await bonded();
    echoStreams(await p.serverSession);
    await waitFor(() => p.clientSession.pathCount === 2, 'the second path to join');
    let detached = false;
    p.clientSession.on('detached', () => (detached = true));
    const data = randomBytes(32 << 20);
    const back = await transfer(p, data, () => (relays[1] as TcpRelay).cutAll({ mode: 'reset' }));
    assert.equal(sha(back), sha(data));
    assert.equal(detached, false, 'the session kept a path the whole time');
    const st = (relays[0] as TcpRelay).stats;
    const st2 = (relays[1] as TcpRelay).stats;
    assert.ok(st.bytesUp > 1 << 20 && st2.bytesUp > 1 << 20, `both paths carried data (A ${st.bytesUp}, B ${st2.bytesUp})`);
    // The cut path is redialed and joins again.
    await waitFor(() => p.clientSession.pathCount === 2, 'path B to rejoin');
  });

  it('a backup path carries data only while no primary is up', async () => {
    const { p, relays } = await bonded(['primary', 'backup']);
    echoStreams(await p.serverSession);
    await waitFor(() => p.clientSession.pathCount === 2, 'the backup path to join');
    const before = (relays[1] as TcpRelay).stats.bytesUp;
    const data = randomBytes(8 << 20);
    assert.equal(sha(await transfer(p, data)), sha(data));
    const onBackup = (relays[1] as TcpRelay).stats.bytesUp - before;
    assert.ok(onBackup < 64 * 1024, `backup carried ${onBackup} bytes while the primary was up`);
    // Primary refuses new connections and is cut: everything moves to the backup.
    (relays[0] as TcpRelay).refuse(true);
    const data2 = randomBytes(8 << 20);
    const back2 = await transfer(p, data2, () => (relays[0] as TcpRelay).cutAll({ mode: 'reset' }));
    assert.equal(sha(back2), sha(data2));
    assert.ok((relays[1] as TcpRelay).stats.bytesUp - before > 2 << 20, 'the backup took over');
  });
});
