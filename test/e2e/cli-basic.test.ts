/**
 * The built `polytun` command, run as a user runs it: `node bin/polytun.js …`
 * against dist/. The build runs once in before().
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { decodeLink } from '../../src/config/link.js';
import { startStatusServer, type StatusServer } from '../../src/cli/status-server.js';
import { decodeKey, encodeKey, publicKeyOf } from '../../src/secure/keys.js';
import { serverDataDir } from '../helpers/data-dir.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/polytun.js');
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; never rejects on a non-zero exit (the code is part of the result). */
async function polytun(args: string[], bin = BIN): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd: ROOT, timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'polytun-e2e-cli-'));
  // tsc emits even when files owned by other work-in-progress have type
  // errors; ours must have none.
  if (process.env.POLYTUN_DIST_BUILT) return; // scripts/run-tests.mjs built (and type-checked) dist/ already
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const out = await run(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, timeout: 240_000 }).then(
    (r) => r.stdout,
    (err: { stdout?: string }) => err.stdout ?? String(err),
  );
  const ours = out.split('\n').filter((l) => /^src\/(cli|config)\/|^src\/server\/datadir/.test(l));
  assert.deepEqual(ours, [], `type errors in the CLI:\n${ours.join('\n')}`);
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('polytun CLI (built)', () => {
  // Regression: the demo kept its server's data in one fixed dir, and since links are printed
  // only when a user is created, every demo after the first failed with "server printed no link".
  it('the demo works twice in a row and leaves no data dir behind', { timeout: 120_000 }, async () => {
    const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('polytun-demo')));
    for (const round of [1, 2]) {
      const r = await polytun(['demo', '--check', '--socks', '0']);
      assert.equal(r.code, 0, `demo run ${round}: ${r.stderr}`);
      assert.match(r.stdout, /hello through polytun/);
    }
    const left = readdirSync(tmpdir()).filter((n) => n.startsWith('polytun-demo-') && !before.has(n));
    assert.deepEqual(left, []);
  });

  it('--help lists the commands and exits 0', async () => {
    const r = await polytun(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: polytun/);
    for (const cmd of ['link', 'keygen', 'config', 'status']) assert.match(r.stdout, new RegExp(`\\n  ${cmd}\\b`));
  });

  it('every subcommand has --help with its defaults', async () => {
    const r = await polytun(['status', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--status <host:port>.*\(default: "127\.0\.0\.1:1099"\)/);
    const c = await polytun(['config', 'check', '--help']);
    assert.match(c.stdout, /--role <role>/);
  });

  it('client and other commands do not load the server side (store, admin API)', async () => {
    // fastify and better-sqlite3 are CommonJS: once imported, they are in require.cache.
    const probe = `
      const { run } = await import(${JSON.stringify(join(ROOT, 'dist/cli/entry.js'))});
      const code = await run(process.argv.slice(1));
      const { createRequire } = await import('node:module');
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules[\\/](fastify|better-sqlite3|pg)[\\/]/.test(k));
      process.stderr.write('LOADED ' + JSON.stringify(loaded.length) + ' ' + code + '\\n');`;
    for (const args of [['--help'], ['client', '--help'], ['keygen']]) {
      const { stderr } = await run(process.execPath, ['--input-type=module', '-e', probe, '--', ...args], { cwd: ROOT });
      assert.match(stderr, /LOADED 0 0/, `polytun ${args.join(' ')}`);
    }
  });

  it('an unknown command fails with a hint', async () => {
    const r = await polytun(['frobnicate']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });

  it('keygen prints a labelled, matching key pair', async () => {
    const r = await polytun(['keygen']);
    assert.equal(r.code, 0, r.stderr);
    const m = /^private key: ([A-Za-z0-9_-]{43})\npublic key: {2}([A-Za-z0-9_-]{43})\n$/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.equal(encodeKey(publicKeyOf(decodeKey(m[1] ?? ''))), m[2]);
    const j = JSON.parse((await polytun(['keygen', '--json'])).stdout) as { privateKey: string; publicKey: string };
    assert.equal(encodeKey(publicKeyOf(decodeKey(j.privateKey))), j.publicKey);
    assert.notEqual(j.privateKey, m[1]);
  });

  it('link prints the same links on every run, matching the data dir; without --listen it uses the listen URLs the server recorded', async () => {
    const dataDir = join(tmp, 'data');
    await serverDataDir(dataDir, ['tcp://127.0.0.1:4433']);
    const args = ['link', '--data-dir', dataDir, '--listen', 'tcp://127.0.0.1:4433'];
    const first = await polytun(args);
    assert.equal(first.code, 0, first.stderr);
    const second = await polytun(args);
    assert.equal(second.stdout, first.stdout);
    assert.equal((await polytun(['link', '--data-dir', dataDir])).stdout, first.stdout, 'the same from DIR/links.json');
    const lines = first.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1);
    assert.ok(lines.every((l) => l.startsWith('polytun://')), first.stdout);
    const link = decodeLink(lines[0] ?? '');
    assert.deepEqual([link.host, link.port, link.carrier, link.name], ['127.0.0.1', 4433, 'tcp', 'default']);
    const serverKey = decodeKey((await readFile(join(dataDir, 'server.key'), 'utf8')).trim());
    assert.equal(link.serverKey, encodeKey(publicKeyOf(serverKey)));
    const users = JSON.parse(await readFile(join(dataDir, 'users.json'), 'utf8')) as { key: string }[];
    assert.equal(link.credential, users[0]?.key);
  });

  it('link with a mistyped or never-started data dir is an error naming it, and creates nothing', async () => {
    const typo = join(tmp, 'no-such-data');
    const r = await polytun(['link', '--data-dir', typo, '--listen', 'tcp://127.0.0.1:4433']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `polytun: ${typo}: no such directory: not a polytun data dir (check the path; \`polytun server --data-dir ${typo}\` creates one on its first start)\n`);
    assert.equal(existsSync(typo), false, 'nothing created');
    const empty = join(tmp, 'empty-dir');
    await mkdir(empty);
    const e = await polytun(['link', '--data-dir', empty]);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /no server\.key: not a polytun data dir/);
    assert.deepEqual(readdirSync(empty), [], 'nothing created');
  });

  it('link --qr adds a QR code under each link; a data dir without links.json and no --listen is a clear error', async () => {
    const dataDir = join(tmp, 'data-qr');
    await serverDataDir(dataDir);
    const r = await polytun(['link', '--data-dir', dataDir, '--listen', 'tcp://127.0.0.1:4433', '--qr']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.ok(lines[0]?.startsWith('polytun://'));
    assert.ok(lines.slice(1).filter((l) => /[█▀▄]/.test(l)).length > 10, r.stdout);
    await rm(join(dataDir, 'links.json'));
    const none = await polytun(['link', '--data-dir', dataDir]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /links\.json: missing \(`polytun server` writes it at every start\): start the server once, or pass --listen URL/);
  });

  it('config check: ok for a good file, file:line for a bad one', async () => {
    const good = join(tmp, 'server.yaml');
    await writeFile(good, `listen: [tcp://127.0.0.1:4433]\ndataDir: ./data\nlimits: { maxSessions: 10 }\n`);
    const ok = await polytun(['config', 'check', good]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ok: .*server\.yaml is a valid server config\n$/);

    const bad = join(tmp, 'client.yaml');
    await writeFile(bad, `# client\nlink: https://example.com/\nsocks: abc\n`);
    const r = await polytun(['config', 'check', bad, '--role', 'client']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.includes(`${bad}:3: key 'socks': expected HOST:PORT, got "abc"`), r.stderr);
    assert.ok(r.stderr.includes(`${bad}:2: key 'link': not a polytun:// link`), r.stderr);

    const unsure = join(tmp, 'unsure.yaml');
    await writeFile(unsure, 'log: { level: debug }\n');
    const u = await polytun(['config', 'check', unsure]);
    assert.equal(u.code, 1);
    assert.match(u.stderr, /pass --role server\|client/);
  });

  describe('status', () => {
    let server: StatusServer;
    const report = { state: 'open', server: 'vps.example:4433', carrier: 'tcp', rttMs: 41.5, bytesSent: 2048, bytesReceived: 3 * 1024 * 1024, streams: 3 };
    before(async () => {
      server = await startStatusServer({ listen: { host: '127.0.0.1', port: 0 }, getStatus: () => report });
    });
    after(async () => {
      await server.close();
    });

    it('prints a readable summary', async () => {
      const r = await polytun(['status', '--status', `127.0.0.1:${server.address.port}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^state: +open$/m);
      assert.match(r.stdout, /^server: +vps\.example:4433 \(tcp\)$/m);
      assert.match(r.stdout, /^rtt: +42 ms$/m);
      assert.match(r.stdout, /^traffic: +sent 2\.0 KiB, received 3\.0 MiB$/m);
      assert.match(r.stdout, /^streams: +3 open$/m);
    });

    it('--json prints the raw answer', async () => {
      const r = await polytun(['status', '--status', `127.0.0.1:${server.address.port}`, '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), report);
    });

    it('no client listening: exit 1 with a hint', async () => {
      const closed = await startStatusServer({ listen: { host: '127.0.0.1', port: 0 }, getStatus: () => ({}) });
      const port = closed.address.port;
      await closed.close();
      const r = await polytun(['status', '--status', `127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /nothing is listening there.*polytun client/);
    });
  });

  it('the launcher says to build when dist/ is missing', async () => {
    const bin = join(tmp, 'unbuilt/bin/polytun.js');
    await mkdir(join(tmp, 'unbuilt/bin'), { recursive: true });
    await copyFile(BIN, bin);
    const r = await polytun(['--help'], bin);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /npm run build/);
  });
});
