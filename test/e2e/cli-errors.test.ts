/**
 * The CLI's own mistakes-of-the-user, as a user meets them (real processes
 * over dist/): a busy local port, an open SOCKS proxy without a password,
 * and a reader that stops reading our output (`polytun client --help | head`).
 * Each must be one line (or nothing), exit status as documented, no stack.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeLink } from '../../src/config/link.js';
import { encodeKey, generateKeyPair } from '../../src/secure/keys.js';
import { ensureBuilt, freePort, startClient, startServer, stopAll } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';

const BIN = join(resolve(import.meta.dirname, '../..'), 'bin/polytun.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its end (60 s at most: a client that would dial forever is a failure here). */
async function polytun(args: string[], opts: { closeStdout?: boolean } = {}): Promise<Run> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '';
  let stderr = '';
  // Closing our end before the child writes: its writes fail with EPIPE, as under `| head`.
  if (opts.closeStdout) child.stdout.destroy();
  else child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(kill);
  return { code, stdout, stderr };
}

/** A stand-in server that only counts connections: the client must not dial it when a local port fails. */
let fakeServer: net.Server;
let dials = 0;
let link: string;
/** A port something else already listens on. */
let busy: net.Server;
let busyPort: number;

before(async () => {
  ensureBuilt();
  fakeServer = net.createServer((s) => {
    dials++;
    s.destroy();
  });
  fakeServer.listen(0, '127.0.0.1');
  await once(fakeServer, 'listening');
  const server = generateKeyPair();
  const user = generateKeyPair();
  link = encodeLink({
    credential: encodeKey(user.privateKey),
    credentialKind: 'key',
    host: '127.0.0.1',
    port: (fakeServer.address() as net.AddressInfo).port,
    serverKey: encodeKey(server.publicKey),
    carrier: 'tcp',
  });
  busy = net.createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  busyPort = (busy.address() as net.AddressInfo).port;
});
after(async () => {
  await stopAll();
  await new Promise((r) => fakeServer.close(r));
  await new Promise((r) => busy.close(r));
});

function assertOneLine(r: Run, want: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /, 'no stack trace');
  const lines = r.stderr.trimEnd().split('\n').filter((l) => !/ (INFO|DEBUG) /.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0] ?? '', want);
}

describe('polytun client: local ports are checked before the server is dialed', () => {
  it('a busy --socks port: one line naming the flag, exit 1, no dial', async () => {
    const r = await polytun(['client', link, '--socks', `127.0.0.1:${busyPort}`, '--no-status']);
    assertOneLine(r, new RegExp(`^polytun: --socks 127\\.0\\.0\\.1:${busyPort}: address already in use`));
    assert.equal(dials, 0);
  });

  it('a busy --http, -L or --status port: the same, naming that flag', async () => {
    const free = await freePort();
    const cases: [string[], RegExp][] = [
      [['--http', `127.0.0.1:${busyPort}`], new RegExp(`^polytun: --http 127\\.0\\.0\\.1:${busyPort}: address already in use`)],
      [['-L', `${busyPort}:127.0.0.1:22`], new RegExp(`^polytun: -L ${busyPort}:127\\.0\\.0\\.1:22: 127\\.0\\.0\\.1:${busyPort}: address already in use`)],
      [['--status', `127.0.0.1:${busyPort}`], new RegExp(`^polytun: --status 127\\.0\\.0\\.1:${busyPort}: address already in use`)],
    ];
    for (const [flags, want] of cases) {
      const r = await polytun(['client', link, '--socks', `127.0.0.1:${free}`, ...(flags[0] === '--status' ? [] : ['--no-status']), ...flags]);
      assertOneLine(r, want);
    }
    assert.equal(dials, 0);
  });

  it('--socks 0.0.0.0 without --socks-auth: refused before dialing, naming the flag and the fix', async () => {
    const r = await polytun(['client', link, '--socks', '0.0.0.0:0', '--no-status']);
    assertOneLine(r, /^polytun: --socks 0\.0\.0\.0:0: refusing to listen on 0\.0\.0\.0 without authentication .*--socks-auth USER:PASS/);
    assert.equal(dials, 0);
  });
});

describe('a reader that closes our stdout early (EPIPE)', () => {
  for (const args of [['client', '--help'], ['--help'], ['server', '--help'], ['keygen']]) {
    it(`polytun ${args.join(' ')} | head: clean exit, nothing on stderr`, async () => {
      const r = await polytun(args, { closeStdout: true });
      assert.equal(r.stderr, '');
      assert.equal(r.code, 0);
    });
  }
});

describe('a -R the server refuses', () => {
  it('names its spec and --reverse on both sides, and the client keeps running', async () => {
    const server = await startServer(); // without --reverse
    const socks = await freePort();
    const client = await startClient(server.links[0] as string, ['--socks', `127.0.0.1:${socks}`, '--no-status', '-R', '2222:127.0.0.1:9'], socks);
    await eventually(async () => assert.match(client.log(), /ERROR -R 2222:127\.0\.0\.1:9: the server refuses to listen on 127\.0\.0\.1:2222: reverse forwards need --reverse on the server/));
    await eventually(async () => assert.match(server.log(), /INFO {2}refused a -R listener on 127\.0\.0\.1:2222: reverse forwards are disabled; start the server with --reverse/));
    // The fronts say ready once the -R binds are answered; under load that line may still be on its way.
    await eventually(async () => assert.match(client.log(), /INFO {2}socks5 ready/));
    assert.equal(client.child.exitCode, null, client.log());
    assert.equal(await client.stop(), 0);
    await server.stop();
  });
});
