/**
 * Issue 14 item 4: every link the gateway hands out works. A gateway listens
 * on tcp, tls, ws and wss at once; for each kind of user (key, token, key with
 * a provisioning password) every link from the admin API, from provisioning
 * (/config) and from `polytun link --data-dir` is given to a real
 * `polytun client` process, and bytes go through its -L forward to an echo
 * server on loopback (allowed with --allow 127.0.0.1).
 *
 *   polytun client LINK -L P:echo ══ tcp|tls|ws|wss ══▶ polytun server ─▶ echo 127.0.0.1
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeLink } from '../../src/config/link.js';
import { ensureBuilt, freePort, startClient, stopAll, runCli } from '../helpers/cli.js';
import { api, echoServer, startGateway, type GatewayProc } from '../helpers/gateway.js';
import { RawConn } from '../helpers/net-fixtures.js';

const CARRIERS = ['tcp', 'tls', 'ws', 'wss'] as const;

const cli = (args: string[]): ReturnType<typeof runCli> => runCli(args, 60_000);

describe('every link the gateway hands out works with a real client', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gw: GatewayProc;

  before(async () => {
    ensureBuilt();
    echo = await echoServer();
    gw = await startGateway({ listen: CARRIERS.map((c) => `${c}://127.0.0.1:0`), extra: ['--allow', '127.0.0.1'] });
  });
  after(async () => {
    await stopAll();
    await gw.stop();
    await echo.close();
  });

  /** Moves bytes through a client started with `link`; `what` names the case in failures. */
  async function works(link: string, what: string): Promise<void> {
    const port = await freePort();
    const client = await startClient(link, ['-L', `127.0.0.1:${port}:127.0.0.1:${echo.port}`, '--no-socks', '--no-status'], port);
    try {
      const conn = await RawConn.open(port);
      const text = `through ${what}`;
      assert.equal(await conn.roundTrip(text), text, `${what}; client log:\n${client.log()}`);
      conn.end();
    } catch (err) {
      throw new Error(`${what} (${link}) failed: ${(err as Error).message}\nclient log:\n${client.log()}`);
    } finally {
      await client.stop();
    }
  }

  /** Asserts one link per carrier and that each one moves bytes. */
  async function allWork(links: readonly string[], who: string): Promise<void> {
    assert.deepEqual(links.map((l) => decodeLink(l).carrier).sort(), [...CARRIERS].sort(), `${who}: one link per listener: ${links.join(' ')}`);
    for (const l of links) await works(l, `${who} over ${decodeLink(l).carrier}`);
  }

  for (const kind of ['key', 'token'] as const) {
    it(`a ${kind} user made with POST /api/users {name, kind} alone: every link of the reply and of GET …/links moves bytes`, async () => {
      const name = `plain-${kind}`;
      const made = await api(gw, 'POST', '/api/users', { name, kind });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      await allWork(made.body.links as string[], `${kind} user (create reply)`);
      const again = await api(gw, 'GET', `/api/users/${name}/links`);
      assert.deepEqual(again.body.links, made.body.links);
    });
  }

  it('a user with a provisioning password: the links of /config move bytes', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'router', kind: 'key', provisionPassword: 'correct horse battery' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const tok = await fetch(`${gw.admin}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'router', password: 'correct horse battery' }) });
    const { access_token: accessToken } = (await tok.json()) as { access_token: string };
    const cfg = (await (await fetch(`${gw.admin}/config`, { headers: { authorization: `Bearer ${accessToken}` } })).json()) as { links: string[]; server: { endpoints: unknown[] } };
    assert.equal(cfg.server.endpoints.length, CARRIERS.length, JSON.stringify(cfg));
    await allWork(cfg.links, 'provisioned user');
  });

  it('a key user made with wssPath null has no ws/wss links rather than ones that cannot work', async () => {
    const made = await api(gw, 'POST', '/api/users', { name: 'no-path', kind: 'key', wssPath: null });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.deepEqual((made.body.links as string[]).map((l) => decodeLink(l).carrier).sort(), ['tcp', 'tls']);
  });

  it('`polytun link --data-dir DIR` alone (no --listen) prints links that move bytes, for every user', async () => {
    const r = await cli(['link', '--data-dir', gw.dataDir, '--user', 'plain-key']);
    assert.equal(r.code, 0, r.stderr);
    await allWork(r.stdout.trim().split('\n'), 'polytun link');
    const tok = await cli(['link', '--data-dir', gw.dataDir, '--user', 'plain-token']);
    assert.equal(tok.code, 0, tok.stderr);
    assert.deepEqual(tok.stdout.trim().split('\n'), (await api(gw, 'GET', '/api/users/plain-token/links')).body.links);
  });
});
