/**
 * The refusing endpoint that tests dial to provoke ECONNREFUSED. Its port is
 * held by an explicitly bound socket, so bind(0) and connect() elsewhere
 * never pick it (a released port could be re-bound by any process, which
 * made a relay test flaky).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { deadTcpEndpoint } from '../../helpers/net-fixtures.js';

describe('deadTcpEndpoint', () => {
  it('refuses connections', async () => {
    const dead = await deadTcpEndpoint();
    const s = net.connect(dead);
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
  });

  it('still refuses after the port was dialed (the holder keeps it, nobody listens)', async () => {
    const dead = await deadTcpEndpoint();
    for (let i = 0; i < 3; i++) {
      const s = net.connect(dead);
      const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
      assert.equal(err.code, 'ECONNREFUSED');
    }
  });

  it('returns the same port again (one holder per host)', async () => {
    assert.deepEqual(await deadTcpEndpoint(), await deadTcpEndpoint());
  });
});
