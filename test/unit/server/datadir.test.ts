import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { decodeLink } from '../../../src/config/link.js';
import { linksFor } from '../../../src/config/links.js';
import { openDataDir } from '../../../src/server/datadir.js';
import { decodeKey, encodeKey, publicKeyOf } from '../../../src/secure/keys.js';
import type { Logger } from '../../../src/core/logger.js';

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polytun-datadir-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = (): string => join(root, `d${n++}`);
const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const l = {
    warnings,
    debug: () => undefined,
    info: () => undefined,
    warn: (_o: object, msg?: string) => void warnings.push(msg ?? ''),
    error: () => undefined,
    child: () => l,
  };
  return l;
}

describe('openDataDir', () => {
  it('first start creates the dir (0700), server.key (0600) and a default user (0600)', async () => {
    const dir = join(fresh(), 'nested');
    const d = await openDataDir(dir);
    assert.equal(d.dir, dir);
    assert.equal(await mode(dir), 0o700);
    assert.equal(await mode(join(dir, 'server.key')), 0o600);
    assert.equal(await mode(join(dir, 'users.json')), 0o600);

    const keyText = await readFile(join(dir, 'server.key'), 'utf8');
    assert.match(keyText, /^[A-Za-z0-9_-]{43}\n$/);
    assert.ok(decodeKey(keyText.trim()).equals(d.serverKeyPair.privateKey));
    assert.ok(publicKeyOf(d.serverKeyPair.privateKey).equals(d.serverKeyPair.publicKey));
    assert.equal(d.serverPublicKey, encodeKey(d.serverKeyPair.publicKey));

    const users = JSON.parse(await readFile(join(dir, 'users.json'), 'utf8')) as { name: string; key: string; created: string }[];
    assert.equal(users.length, 1);
    assert.equal(users[0]?.name, 'default');
    assert.ok(!Number.isNaN(Date.parse(users[0]?.created ?? '')));
    const u = d.users.listUsers()[0];
    assert.ok(u);
    assert.equal(u.key, users[0]?.key);
    assert.equal(u.publicKey, encodeKey(publicKeyOf(decodeKey(u.key))));
    // No temporary files are left behind.
    assert.deepEqual((await readdir(dir)).sort(), ['server.key', 'users.json']);
  });

  it('restarting with the same dir keeps the same keys and users', async () => {
    const dir = fresh();
    const a = await openDataDir(dir);
    const added = await a.users.addUser('alice');
    const b = await openDataDir(dir);
    assert.ok(a.serverKeyPair.privateKey.equals(b.serverKeyPair.privateKey));
    assert.deepEqual(b.users.listUsers(), a.users.listUsers());
    assert.deepEqual(b.users.listUsers().map((u) => u.name), ['default', 'alice']);
    assert.deepEqual(b.users.findByPublicKey(added.publicKey), added);
  });

  it('two opens racing on an empty dir agree on one server key', async () => {
    const dir = fresh();
    const [a, b] = await Promise.all([openDataDir(dir), openDataDir(dir)]);
    assert.ok(a.serverKeyPair.privateKey.equals(b.serverKeyPair.privateKey));
    assert.equal(a.users.listUsers()[0]?.key, b.users.listUsers()[0]?.key);
  });

  it('a corrupt server.key is a ConfigError naming it, and the file is left untouched', async () => {
    const dir = fresh();
    await mkdir(dir, { mode: 0o700 });
    const corrupt = 'this is not a key\n';
    await writeFile(join(dir, 'server.key'), corrupt, { mode: 0o600 });
    await assert.rejects(openDataDir(dir), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.where, join(dir, 'server.key'));
      assert.match(err.message, /corrupt server key .*left untouched/);
      return true;
    });
    assert.equal(await readFile(join(dir, 'server.key'), 'utf8'), corrupt);
  });

  it('a corrupt users.json is a ConfigError naming it, and the file is left untouched', async () => {
    const dir = fresh();
    await openDataDir(dir);
    const file = join(dir, 'users.json');
    for (const bad of ['{not json', '{"name":"x"}', '[{"name":"a b","key":"x","created":"t"}]', '[{"name":"a","key":"short","created":"t"}]']) {
      await writeFile(file, bad);
      await assert.rejects(openDataDir(dir), (err: unknown) => err instanceof ConfigError && err.message.startsWith(file), bad);
      assert.equal(await readFile(file, 'utf8'), bad);
    }
  });

  it('duplicate user names or keys in users.json are refused', async () => {
    const dir = fresh();
    const d = await openDataDir(dir);
    const u = d.users.listUsers()[0];
    assert.ok(u);
    const file = join(dir, 'users.json');
    await writeFile(file, JSON.stringify([u, { ...u, name: 'twin' }]));
    await assert.rejects(openDataDir(dir), /same key as another user/);
    await writeFile(file, JSON.stringify([u, { ...u, key: encodeKey(Buffer.alloc(32, 7)) }]));
    await assert.rejects(openDataDir(dir), /duplicate user name 'default'/);
  });

  it('an unreadable users.json is a ConfigError naming it', async () => {
    const dir = fresh();
    await openDataDir(dir);
    // A directory in its place: unreadable even for root (chmod 000 is not).
    await rm(join(dir, 'users.json'));
    await mkdir(join(dir, 'users.json'));
    await assert.rejects(openDataDir(dir), (err: unknown) => err instanceof ConfigError && err.where === join(dir, 'users.json') && /cannot read/.test(err.message));
  });

  it('a data dir path that is a file is refused', async () => {
    const p = fresh();
    await writeFile(p, 'x');
    await assert.rejects(openDataDir(p), /not a directory/);
  });

  it('a group-readable dir is tightened to 0700 with a warning; loose key files are warned about', async () => {
    const dir = fresh();
    await openDataDir(dir);
    await chmod(dir, 0o755);
    await chmod(join(dir, 'server.key'), 0o644);
    const log = recordingLogger();
    await openDataDir(dir, { logger: log });
    assert.equal(await mode(dir), 0o700);
    assert.equal(log.warnings.length, 2, log.warnings.join('\n'));
  });
});

describe('UserStore', () => {
  it('addUser saves atomically, findByPublicKey finds by raw or text key', async () => {
    const dir = fresh();
    const d = await openDataDir(dir);
    const [bob, carol] = await Promise.all([d.users.addUser('bob'), d.users.addUser('carol')]);
    const saved = JSON.parse(await readFile(join(dir, 'users.json'), 'utf8')) as { name: string }[];
    assert.deepEqual(saved.map((u) => u.name), ['default', 'bob', 'carol']);
    assert.equal(d.users.findByPublicKey(Buffer.from(bob.publicKey, 'base64url'))?.name, 'bob');
    assert.equal(d.users.findByPublicKey(carol.publicKey)?.name, 'carol');
    assert.equal(d.users.findByPublicKey(Buffer.alloc(32)), undefined);
    assert.equal(await mode(join(dir, 'users.json')), 0o600);
    assert.deepEqual((await readdir(dir)).sort(), ['server.key', 'users.json']);
  });

  it('addUser refuses bad and taken names without writing', async () => {
    const dir = fresh();
    const d = await openDataDir(dir);
    const before = await readFile(join(dir, 'users.json'), 'utf8');
    await assert.rejects(d.users.addUser('default'), /already exists/);
    await assert.rejects(d.users.addUser('bad name'), /bad name/);
    await assert.rejects(d.users.addUser(''), /bad name/);
    assert.equal(await readFile(join(dir, 'users.json'), 'utf8'), before);
    assert.equal((await d.users.addUser('ok-after-errors')).name, 'ok-after-errors');
  });
});

describe('linksFor', () => {
  const ifs = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [
      { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
      { address: '2001:db8::5', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: '2001:db8::5/64', scopeid: 0 },
      { address: '192.0.2.10', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '192.0.2.10/24' },
    ],
  });

  it('one link per user per listen URL, with the server key, carrier and user key', async () => {
    const d = await openDataDir(fresh());
    await d.users.addUser('alice');
    const links = linksFor(d, ['tcp://127.0.0.1:4433', 'tls://127.0.0.1:443']);
    assert.equal(links.length, 4);
    const parsed = links.map((l) => decodeLink(l));
    assert.deepEqual(parsed.map((p) => [p.name, p.carrier, p.port]), [
      ['default', 'tcp', 4433],
      ['default', 'tls', 443],
      ['alice', 'tcp', 4433],
      ['alice', 'tls', 443],
    ]);
    for (const p of parsed) {
      assert.equal(p.serverKey, d.serverPublicKey);
      assert.equal(p.host, '127.0.0.1');
      assert.equal(p.credential, d.users.listUsers().find((u) => u.name === p.name)?.key);
    }
  });

  it('wildcard listen hosts use publicHost, else the first public interface address', async () => {
    const d = await openDataDir(fresh());
    assert.equal(decodeLink(linksFor(d, ['tcp://0.0.0.0:1'], undefined, { interfaces: ifs })[0] ?? '').host, '192.0.2.10');
    assert.equal(decodeLink(linksFor(d, ['tcp://[::]:1'], undefined, { interfaces: ifs })[0] ?? '').host, '192.0.2.10');
    const v6only = (): ReturnType<typeof ifs> => ({ eth0: (ifs().eth0 ?? []).filter((i) => i.family === 'IPv6') });
    assert.equal(decodeLink(linksFor(d, ['tcp://[::]:1'], undefined, { interfaces: v6only })[0] ?? '').host, '2001:db8::5');
    const tls = decodeLink(linksFor(d, ['tls://0.0.0.0:443'], 'vps.example', { interfaces: ifs })[0] ?? '');
    assert.equal(tls.host, 'vps.example');
    assert.equal(tls.sni, 'vps.example');
    assert.throws(() => linksFor(d, ['tcp://0.0.0.0:1'], undefined, { interfaces: () => ({ lo: ifs().lo }) }), /pass --host/);
  });

  it('port 0 and bad URLs are refused', async () => {
    const d = await openDataDir(fresh());
    assert.throws(() => linksFor(d, ['tcp://127.0.0.1:0']), /port 0/);
    assert.throws(() => linksFor(d, ['sctp://127.0.0.1:80']), /unknown listen scheme/);
    // users.json users have no WebSocket path: ws/wss links come from the user store.
    assert.throws(() => linksFor(d, ['wss://127.0.0.1:443']), /WebSocket path/);
  });
});
