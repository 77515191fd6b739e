/**
 * Every port that takes traffic listens with the full backlog (LISTEN_BACKLOG,
 * capped by net.core.somaxconn), not Node's 511: under load, a burst of
 * connections overflowed a 511 queue, and the kernel reset the overflowed
 * ones ~31 s later with nothing sent (the soak under load lost streams so).
 * `ss` shows a listening socket's backlog as its Send-Q.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { LISTEN_BACKLOG } from '../../src/core/limits.js';
import { ensureBuilt, freePort, have, startClient, startServer, stopAll } from '../helpers/cli.js';

before(() => ensureBuilt());
after(() => stopAll());

function backlogOf(port: number): number {
  const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
  const cols = out.split('\n')[0]?.trim().split(/\s+/) ?? [];
  assert.equal(cols[0], 'LISTEN', `nothing listening on ${port}: ${out}`);
  return Number(cols[2]);
}

describe('e2e: listen backlog', { skip: have('ss') ? false : 'no ss (iproute2) on this machine' }, () => {
  it('the server carriers and the client fronts listen with the full backlog', async () => {
    const want = Math.min(LISTEN_BACKLOG, Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8')));
    const [tcp, wss, socks, http, fwd] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const server = await startServer(['--allow', '127.0.0.1'], [`tcp://127.0.0.1:${tcp}`, `wss://127.0.0.1:${wss}`]);
    await startClient(server.links[0] as string, ['--socks', `127.0.0.1:${socks}`, '--http', `127.0.0.1:${http}`, '-L', `127.0.0.1:${fwd}:127.0.0.1:9`], socks);
    for (const [what, port] of [['tcp listener', tcp], ['wss listener', wss], ['SOCKS front', socks], ['HTTP front', http], ['-L forward', fwd]] as const) {
      assert.equal(backlogOf(port), want, `${what} on ${port}`);
    }
  });
});
