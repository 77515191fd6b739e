/**
 * `polytun user add|list|disable|enable|del` beside a running server on the
 * same SQLite store: the new user's links are printed once by `add` and work
 * at once (the server notices the other process's write), `disable` and
 * `del` refuse new sessions, and a mistyped data dir creates nothing.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { RejectCode, RejectedError } from '../../src/core/errors.js';
import { decodeLink } from '../../src/config/link.js';
import { ensureBuilt, freePort, startClient, stopAll, runCli } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { echoServer, startGateway, type GatewayProc, handshake } from '../helpers/gateway.js';
import { RawConn } from '../helpers/net-fixtures.js';

const cli = (args: string[]): ReturnType<typeof runCli> => runCli(args, 60_000);

describe('polytun user beside a running server', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gw: GatewayProc;
  before(async () => {
    ensureBuilt();
    echo = await echoServer();
    gw = await startGateway({ listen: ['tcp://127.0.0.1:0', 'wss://127.0.0.1:0'], admin: false, extra: ['--allow', '127.0.0.1'] });
  });
  after(async () => {
    await stopAll();
    await gw.stop();
    await echo.close();
  });

  it('add prints working links once; list shows the user without its secret; disable, enable and del take effect on the running server', async () => {
    const add = await cli(['user', 'add', 'carol', '--data-dir', gw.dataDir, '--quota', '1G', '--udp-max-rate', '50mbit']);
    assert.equal(add.code, 0, add.stderr);
    const links = add.stdout.trim().split('\n');
    assert.deepEqual(links.map((l) => decodeLink(l).carrier), ['tcp', 'wss'], add.stdout);
    assert.match(add.stderr, /added key user 'carol'/);
    for (const link of links) {
      const port = await freePort();
      // The running server sees the new user within about a second; a client
      // faster than that is refused once, so it retries soon instead of in 60 s.
      const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--no-socks', '--no-status', '--refused-retry', '500'], port);
      const conn = await RawConn.open(port);
      assert.equal(await conn.roundTrip(`carol over ${decodeLink(link).carrier}`), `carol over ${decodeLink(link).carrier}`, client.log());
      conn.end();
      await client.stop();
    }
    assert.match(gw.log(), /session opened session=[0-9a-f]{8} user=carol /);

    const list = await cli(['user', 'list', '--data-dir', gw.dataDir]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^NAME +KIND +ENABLED .* UDP CAP /);
    assert.match(list.stdout, /^carol +key +yes +1073741824 +\d+ +- +50mbit /m);
    assert.equal(list.stdout.includes(decodeLink(links[0] as string).credential), false, 'no secret in the list');

    assert.equal((await cli(['user', 'disable', 'carol', '--data-dir', gw.dataDir])).code, 0);
    await eventually(() => assert.rejects(handshake(links[0] as string), (e: unknown) => e instanceof RejectedError && e.reject === RejectCode.disabled));
    assert.equal((await cli(['user', 'enable', 'carol', '--data-dir', gw.dataDir])).code, 0);
    await eventually(() => handshake(links[0] as string));
    const del = await cli(['user', 'del', 'carol', '--data-dir', gw.dataDir]);
    assert.equal(del.code, 0, del.stderr);
    assert.match(del.stderr, /deleted user 'carol'; a session it has open goes on until it ends/);
    await eventually(() => assert.rejects(handshake(links[0] as string), (e: unknown) => e instanceof RejectedError && e.reject === RejectCode.unauthorized));
    const again = await cli(['user', 'del', 'carol', '--data-dir', gw.dataDir]);
    assert.deepEqual([again.code, again.stderr], [1, "polytun: user: no user 'carol'\n"]);
  });

  it('a token user; a public-key-only user gets no link but is told why', async () => {
    const tok = await cli(['user', 'add', 'tom', '--token', '--data-dir', gw.dataDir]);
    assert.equal(tok.code, 0, tok.stderr);
    const links = tok.stdout.trim().split('\n');
    assert.deepEqual(links.map((l) => [decodeLink(l).carrier, decodeLink(l).credentialKind]), [['tcp', 'token'], ['wss', 'token']]);
    await eventually(() => handshake(links[1] as string));
    const pub = await cli(['user', 'add', 'pat', '--public-key', 'A'.repeat(43), '--data-dir', gw.dataDir]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.equal(pub.stdout, '');
    assert.match(pub.stderr, /only its public key is stored/);
  });

  it('a mistyped data dir is an error naming it; nothing is created', async () => {
    const typo = `${gw.dataDir}-typo`;
    const r = await cli(['user', 'add', 'x', '--data-dir', typo]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^polytun: ${typo.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: no such directory: not a polytun data dir`));
    assert.equal(existsSync(typo), false);
  });
});
