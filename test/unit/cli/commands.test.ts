/**
 * The command line in-process: flags → typed config handed to the injected
 * run functions, flags over --config, and error reporting by `main`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../../src/cli/main.js';
import { guessRole } from '../../../src/cli/cmd-config.js';
import { cliInProcess, SAMPLE_LINK } from '../../helpers/cli-inproc.js';
import { serverDataDir } from '../../helpers/data-dir.js';

const LINK = SAMPLE_LINK;

const cli = cliInProcess;

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'polytun-cli-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('polytun server flags', () => {
  it('every flag lands at its config key; repeatable flags collect', async () => {
    const r = await cli([
      'server', '--listen', 'tcp://0.0.0.0:4433', '--listen', 'tls://[::]:443', '--data-dir', 'rel/data',
      '--allow', '127.0.0.1:8080', '--allow', '10.0.0.0/8', '--deny', '*:25', '--cert', 'c.pem', '--key', 'k.pem',
      '--host', 'vps.example', '--reverse', '--log-level', 'debug', '--log-format', 'json', '--set', 'limits.maxSessions=7',
      '--set', 'reverse.ports=[2000-3000]',
    ]);
    assert.equal(r.code, 0, r.err);
    const s = r.server;
    assert.ok(s);
    assert.deepEqual(s.listen.map((l) => l.url), ['tcp://0.0.0.0:4433', 'tls://[::]:443']);
    assert.equal(s.dataDir, resolve('rel/data'));
    assert.deepEqual(s.policy, { allow: ['127.0.0.1:8080', '10.0.0.0/8'], deny: ['*:25'] });
    assert.deepEqual(s.tls, { cert: resolve('c.pem'), key: resolve('k.pem') });
    assert.equal(s.publicHost, 'vps.example');
    assert.deepEqual(s.reverse, { enabled: true, bindHosts: ['127.0.0.1'], ports: [[2000, 3000]] });
    assert.deepEqual(s.log, { level: 'debug', format: 'json' });
    assert.equal(s.limits.maxSessions, 7);
  });

  it('flags override --config; untouched file keys stay', async () => {
    const file = join(tmp, 'server.yaml');
    await writeFile(file, 'listen: [tcp://127.0.0.1:1]\ndataDir: data\npolicy: { allow: [1.2.3.4], deny: [5.6.7.8] }\nlog: { level: warn }\n');
    const r = await cli(['server', '--config', file, '--allow', '9.9.9.9']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.server?.policy, { allow: ['9.9.9.9'], deny: ['5.6.7.8'] });
    assert.equal(r.server?.dataDir, join(tmp, 'data'));
    // --log-level has a default in --help, but only a typed flag overrides the file.
    assert.equal(r.server?.log.level, 'warn');
  });

  it('errors name the flag or the file line, and exit 1 without running', async () => {
    const file = join(tmp, 'bad-server.yaml');
    await writeFile(file, 'listen: [tcp://127.0.0.1:1]\ndataDir: d\nlimits:\n  maxSessions: lots\n');
    const r = await cli(['server', '--config', file, '--listen', 'sctp://0.0.0.0:1', '--set', 'lmits.x=1']);
    assert.equal(r.code, 1);
    assert.equal(r.server, undefined);
    assert.ok(r.err.startsWith('polytun: '));
    assert.equal(r.err.trimEnd().split('\n').length, 3, r.err);
    assert.match(r.err, /--listen: unknown listen scheme 'sctp'/);
    assert.ok(r.err.includes(`${file}:4: key 'limits.maxSessions': expected an integer`), r.err);
    assert.match(r.err, /--set lmits\.x: unknown key \(did you mean 'limits'\?\)/);
  });

  it('--log-level choices are enforced by the parser', async () => {
    const r = await cli(['server', '--log-level', 'loud']);
    assert.equal(r.code, 1);
    assert.match(r.err, /Allowed choices are trace, debug/);
  });
});

describe('polytun client flags', () => {
  it('LINK and every flag land at their config keys', async () => {
    const r = await cli([
      'client', LINK, '--socks', '127.0.0.1:1081', '--socks-auth', 'alice:pa:ss', '--http', '127.0.0.1:8118',
      '-L', '8080:intranet:80', '-L', '5353:10.0.0.1:53/udp', '-R', '9000:127.0.0.1:22', '--status', '[::1]:1099',
      '--log-level', 'trace',
    ]);
    assert.equal(r.code, 0, r.err);
    const c = r.client;
    assert.ok(c);
    assert.equal(c.link.host, 'vps.example');
    assert.deepEqual(c.socks, { host: '127.0.0.1', port: 1081 });
    assert.deepEqual(c.socksAuth, { username: 'alice', password: 'pa:ss' });
    assert.deepEqual(c.http, { host: '127.0.0.1', port: 8118 });
    assert.deepEqual(c.forwards.map((f) => [f.bindPort, f.host, f.port, f.udp]), [[8080, 'intranet', 80, false], [5353, '10.0.0.1', 53, true]]);
    assert.deepEqual(c.reverse.map((f) => f.spec), ['9000:127.0.0.1:22']);
    assert.deepEqual(c.status, { host: '::1', port: 1099 });
    assert.equal(c.log.level, 'trace');
  });

  it('--retry N lands at reconnect.retry (absent: never give up); a bad N names the flag', async () => {
    assert.equal((await cli(['client', LINK, '--retry', '0'])).client?.reconnect.retry, 0);
    assert.equal((await cli(['client', LINK, '--retry', '5'])).client?.reconnect.retry, 5);
    assert.equal((await cli(['client', LINK])).client?.reconnect.retry, undefined);
    const bad = await cli(['client', LINK, '--retry', 'forever']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--retry/);
  });

  it('--cipher lands at records.cipher on client and server (default auto), takes only the known ciphers, and is in --help', async () => {
    assert.equal((await cli(['client', LINK])).client?.records.cipher, 'auto');
    assert.equal((await cli(['client', LINK, '--cipher', 'aes-256-gcm'])).client?.records.cipher, 'aes-256-gcm');
    assert.equal((await cli(['client', LINK, '--set', 'records.cipher=chacha20-poly1305'])).client?.records.cipher, 'chacha20-poly1305');
    const srv = await cli(['server', '--listen', 'tcp://127.0.0.1:4433', '--data-dir', 'd', '--cipher', 'chacha20-poly1305']);
    assert.equal(srv.server?.records.cipher, 'chacha20-poly1305');
    const bad = await cli(['client', LINK, '--cipher', 'aes-128-gcm']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /Allowed choices are auto, chacha20-poly1305, aes-256-gcm/);
    for (const role of ['client', 'server']) {
      const help = await cli([role, '--help']);
      assert.match(help.out.replace(/\s+/g, ' '), /--cipher <cipher> record cipher: auto = AES-256-GCM when both ends have AES acceleration/);
    }
  });

  it('defaults apply; --no-socks and --no-status turn them off', async () => {
    const d = await cli(['client', LINK]);
    assert.deepEqual(d.client?.socks, { host: '127.0.0.1', port: 1080 });
    assert.deepEqual(d.client?.status, { host: '127.0.0.1', port: 1099 });
    const off = await cli(['client', LINK, '--no-socks', '--no-status']);
    assert.equal(off.client?.socks, false);
    assert.equal(off.client?.status, false);
  });

  it('the link may come from --config, and a LINK argument overrides it', async () => {
    const file = join(tmp, 'client.yaml');
    await writeFile(file, `link: ${LINK.replace('vps.example', 'other.example')}\nsocks: 127.0.0.1:2000\n`);
    const fromFile = await cli(['client', '--config', file]);
    assert.equal(fromFile.client?.link.host, 'other.example');
    assert.deepEqual(fromFile.client?.socks, { host: '127.0.0.1', port: 2000 });
    const overridden = await cli(['client', LINK, '--config', file]);
    assert.equal(overridden.client?.link.host, 'vps.example');
  });

  it('bad values name the flag; the password is never echoed', async () => {
    const r = await cli(['client', LINK, '--socks', 'abc', '--socks-auth', 'nocolon', '--status', '0.0.0.0:1099']);
    assert.equal(r.code, 1);
    assert.equal(r.client, undefined);
    assert.match(r.err, /--socks-auth: expected USER:PASS/);
    const r2 = await cli(['client', LINK, '--socks', 'abc', '--status', '0.0.0.0:1099']);
    assert.match(r2.err, /--socks: expected HOST:PORT, got "abc"/);
    assert.match(r2.err, /--status: must be a loopback address/);
    const secret = 'x'.repeat(300);
    const r3 = await cli(['client', LINK, '--socks-auth', `u:${secret}`]);
    assert.equal(r3.code, 1);
    assert.ok(!r3.err.includes(secret));
  });

  it('a missing link says where it may come from', async () => {
    const r = await cli(['client']);
    assert.equal(r.code, 1);
    assert.match(r.err, /key 'link': is required \(the LINK argument/);
  });
});

describe('main', () => {
  it('no arguments prints help and exits 0', async () => {
    const r = await cli([]);
    assert.equal(r.code, 0);
    assert.match(r.out, /Usage: polytun/);
  });

  it('server and client exist only when their run functions are injected', async () => {
    let err = '';
    const code = await main(['server', '--listen', 'tcp://127.0.0.1:1'], { io: { stdout: { write: () => undefined }, stderr: { write: (s: string) => (err += s) } } });
    assert.equal(code, 1);
    assert.match(err, /unknown command 'server'/);
  });

  it('link prints QR codes only when stdout is a terminal', async () => {
    const dir = join(tmp, 'dd');
    await serverDataDir(dir);
    const plain = await cli(['link', '--data-dir', dir, '--listen', 'tcp://127.0.0.1:4433']);
    assert.equal(plain.code, 0, plain.err);
    assert.equal(plain.out.split('\n').filter(Boolean).length, 1);
    const tty = await cli(['link', '--data-dir', dir, '--listen', 'tcp://127.0.0.1:4433'], true);
    assert.ok(tty.out.startsWith(plain.out), 'the link line comes first');
    assert.ok(tty.out.split('\n').length > 10);
    const forcedOff = await cli(['link', '--data-dir', dir, '--listen', 'tcp://127.0.0.1:4433', '--no-qr'], true);
    assert.equal(forcedOff.out, plain.out);
    const unknownUser = await cli(['link', '--data-dir', dir, '--listen', 'tcp://127.0.0.1:4433', '--user', 'zed']);
    assert.equal(unknownUser.code, 1);
    assert.match(unknownUser.err, /no user 'zed'.*users: default/);
  });

  it('config check guesses the role from role-only keys', () => {
    assert.equal(guessRole({ listen: [] }), 'server');
    assert.equal(guessRole({ link: 'x', limits: {} }), 'client');
    assert.equal(guessRole({ link: 'x', dataDir: 'y' }), undefined);
    assert.equal(guessRole({ log: {} }), undefined);
    assert.equal(guessRole('text'), undefined);
  });
});
