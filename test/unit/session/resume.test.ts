import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { echoStreams, makePair, readAll, type Pair } from '../../helpers/session-pair.js';

const pairs: Pair[] = [];
after(async () => {
  for (const p of pairs) await p.close();
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('resume', () => {
  it('keeps a stream intact while the carrier is cut three times', async () => {
    const p = await makePair();
    pairs.push(p);
    const ss = await p.serverSession;
    echoStreams(ss);
    const data = randomBytes(24 << 20);
    const s = p.clientSession.openStream();
    const got = readAll(s);
    let cuts = 0;
    let resumed = 0;
    p.client.on('resumed', () => resumed++);
    for (let off = 0; off < data.length; off += 256 << 10) {
      if (!s.write(data.subarray(off, off + (256 << 10)))) await once(s, 'drain');
      if (off > 0 && off % (6 << 20) === 0) {
        p.cut();
        cuts++;
      }
    }
    s.end();
    const back = await got;
    assert.equal(cuts, 3);
    assert.ok(resumed >= 1, 'the client resumed the session');
    assert.equal(back.length, data.length);
    assert.equal(sha(back), sha(data));
    // Same session object on both sides: nothing was restarted.
    assert.equal(p.client.session, p.clientSession);
    assert.equal(p.server.sessions.size, 1);
    assert.ok(p.clientSession.stats.attaches >= 2);
  });

  it('opens a new stream while detached; it goes out after resume', async () => {
    const p = await makePair();
    pairs.push(p);
    echoStreams(await p.serverSession);
    const detached = once(p.clientSession, 'detached');
    p.cut();
    await detached;
    assert.equal(p.clientSession.state, 'detached');
    const s = p.clientSession.openStream();
    s.end('queued while detached');
    assert.equal((await readAll(s)).toString(), 'queued while detached');
  });

  it('a server that forgot the session makes the client start a new one', async () => {
    const p = await makePair();
    pairs.push(p);
    echoStreams(await p.serverSession);
    const renewed = once(p.client, 'session');
    // Forget the session server-side without telling the client, then cut.
    for (const e of p.server.sessions.values()) e.session.abort();
    p.cut();
    const [fresh] = await renewed;
    assert.notEqual(fresh, p.clientSession);
    assert.equal(p.clientSession.state, 'closed');
  });

  it('a detached session is closed when the grace period runs out', async () => {
    // The client backs off for a minute, so only the server's grace timer can end this.
    const p = await makePair({ server: { session: { graceMs: 200 } }, client: { backoffBaseMs: 60_000, backoffMaxMs: 60_000 } });
    pairs.push(p);
    const ss = await p.serverSession;
    const closed = once(ss, 'closed');
    p.cut();
    const [err] = (await closed) as [Error];
    assert.match(err.message, /grace/);
    assert.equal(p.server.sessions.size, 0);
  });
});

describe('idle timeout', () => {
  it('the server closes a session with no stream after idleTimeoutMs and the client opens a new one', async () => {
    const p = await makePair({ server: { session: { idleTimeoutMs: 200 } } });
    pairs.push(p);
    const ss = await p.serverSession;
    // A stream keeps it alive; its end starts the idle clock.
    echoStreams(ss);
    const s = p.clientSession.openStream();
    s.end('x');
    await readAll(s);
    const [err] = (await once(ss, 'closed')) as [Error & { closeCode: number }];
    assert.equal(err.closeCode, 1);
    const [fresh] = (await once(p.client, 'session')) as [typeof p.clientSession];
    assert.notEqual(fresh, p.clientSession);
    assert.equal(fresh.state, 'open');
  });
});
