import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, describe, it } from 'node:test';
import { makeDestination } from '../../../src/core/address.js';
import { AbortedError } from '../../../src/core/errors.js';
import { ProxyClient } from '../../../src/client/proxy-client.js';
import { makePair } from '../../helpers/session-pair.js';
import { fakeEgress, tcpEcho } from '../../helpers/fake-egress.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('ProxyClient before the first session', () => {
  it('connect() waits for the session (the client opens its ports before it dials), and honours abort', async () => {
    const pair = await makePair();
    cleanups.push(() => pair.close());
    const egress = fakeEgress(await pair.serverSession);
    cleanups.push(() => egress.close());
    const echo = await tcpEcho();
    cleanups.push(() => echo.close());
    const events = new EventEmitter();
    let connected = false;
    const pc = new ProxyClient({ session: () => (connected ? pair.client.session : undefined), events });
    cleanups.push(() => pc.dispose());
    const dest = makeDestination('127.0.0.1', echo.address.port);

    const ac = new AbortController();
    const aborted = pc.connect(dest, { waitStatus: true, signal: ac.signal });
    const pending = pc.connect(dest, { waitStatus: true });
    let settled = false;
    pending.then(() => (settled = true), () => (settled = true));
    ac.abort();
    await assert.rejects(aborted, AbortedError);
    assert.equal(settled, false, 'no session yet: still waiting');

    connected = true;
    events.emit('session', pair.client.session);
    const conn = await pending;
    assert.equal(conn.status, 0);
    conn.stream.destroy();
  });
});
