import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { loadConfig, mergeFlags, parseConfigText, readConfigFile } from '../../../src/config/load.js';
import { ConfigValidationError, validateConfig } from '../../../src/config/schema.js';
import { encodeKey, generateKeyPair } from '../../../src/secure/keys.js';

const LINK = `polytun://${encodeKey(generateKeyPair().privateKey)}@vps.example:4433?pk=${encodeKey(generateKeyPair().publicKey)}`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'polytun-load-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('loadConfig', () => {
  it('loads a full server file, resolving relative paths against the file folder', async () => {
    const p = await file(
      'server.yaml',
      [
        'listen:',
        '  - tcp://0.0.0.0:4433',
        '  - tls://[::]:443',
        'dataDir: ./data',
        'publicHost: vps.example',
        'tls: { cert: certs/c.pem, key: /etc/k.pem }',
        'policy:',
        "  allow: ['127.0.0.1:8080']",
        "  deny: ['*.example.com', '*:25']",
        'limits: { maxSessions: 50 }',
        'log: { level: debug, format: json }',
      ].join('\n'),
    );
    const c = await loadConfig(p, 'server');
    assert.equal(c.dataDir, join(dir, 'data'));
    assert.deepEqual(c.tls, { cert: join(dir, 'certs/c.pem'), key: '/etc/k.pem' });
    assert.deepEqual(c.listen.map((l) => l.url), ['tcp://0.0.0.0:4433', 'tls://[::]:443']);
    assert.deepEqual(c.policy, { allow: ['127.0.0.1:8080'], deny: ['*.example.com', '*:25'] });
    assert.equal(c.limits.maxSessions, 50);
    assert.equal(c.limits.maxStreams, 1024);
    assert.deepEqual(c.log, { level: 'debug', format: 'json' });
  });

  it('loads a client file', async () => {
    const p = await file('client.yaml', `link: ${LINK}\nsocks: false\nforwards: ['8080:intranet:80']\n`);
    const c = await loadConfig(p, 'client');
    assert.equal(c.socks, false);
    assert.equal(c.forwards[0]?.host, 'intranet');
  });

  it('an empty file is an empty config (required keys then missing)', async () => {
    const p = await file('empty.yaml', '# nothing\n');
    await assert.rejects(loadConfig(p, 'client'), { message: `${p}: key 'link': is required (the LINK argument or \`link:\` in the config file)` });
  });

  it('a missing file is a ConfigError naming it', async () => {
    const p = join(dir, 'nope.yaml');
    await assert.rejects(readConfigFile(p), (err: unknown) => err instanceof ConfigError && err.message === `${p}: cannot read config file: no such file`);
  });

  it('a directory is a ConfigError naming it', async () => {
    await assert.rejects(readConfigFile(dir), (err: unknown) => err instanceof ConfigError && err.where === dir && /is a directory/.test(err.message));
  });

  it('an oversized file is refused before parsing', async () => {
    const p = await file('big.yaml', `# ${'x'.repeat(1 << 20)}\n`);
    await assert.rejects(readConfigFile(p), /larger than 1048576 bytes/);
  });
});

describe('parseConfigText', () => {
  it('YAML syntax errors carry file and line', () => {
    assert.throws(
      () => parseConfigText('listen: [tcp://x:1\ndataDir: /x\n', 'server.yaml'),
      (err: unknown) => err instanceof ConfigValidationError && /^server\.yaml:2: YAML: /.test(err.message),
    );
  });

  it('duplicate keys are errors at the second occurrence', () => {
    assert.throws(() => parseConfigText('socks: a\nhttp: b\nsocks: c\n', 'c.yaml'), /^ConfigValidationError: c\.yaml:3: YAML: Map keys must be unique/);
  });

  it('aliases are followed for values and for locations', () => {
    const src = parseConfigText('x: &bad 5\nlink: *bad\n', 'c.yaml');
    assert.throws(() => validateConfig(src.raw, 'client', src.sourceMap), (err: unknown) => {
      assert.ok(err instanceof ConfigValidationError);
      const msgs = err.issues.map((i) => `${i.where}: ${i.message}`);
      assert.ok(msgs.includes("c.yaml:1: key 'x': unknown key"), msgs.join('\n'));
      assert.ok(msgs.some((m) => m.startsWith("c.yaml:1: key 'link': expected a polytun:// link")), msgs.join('\n'));
      return true;
    });
  });

  it('a billion-laughs alias bomb is refused', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]'].join('\n');
    assert.throws(() => parseConfigText(bomb, 'bomb.yaml'), /alias/i);
  });

  it('an unknown key is located at the key, a bad value at the value', () => {
    const src = parseConfigText(`link: ${LINK}\nlimits:\n  graceMs:\n    -1\n  gracems: 5\n`, 'c.yaml');
    assert.throws(() => validateConfig(src.raw, 'client', src.sourceMap), (err: unknown) => {
      assert.ok(err instanceof ConfigValidationError);
      const msgs = err.issues.map((i) => `${i.where}: ${i.message}`);
      assert.deepEqual(msgs.sort(), [
        "c.yaml:4: key 'limits.graceMs': expected an integer from 0 to 86400000, got -1",
        "c.yaml:5: key 'limits.gracems': unknown key (did you mean 'graceMs'?)",
      ]);
      return true;
    });
  });
});

describe('mergeFlags', () => {
  it('flags replace file values; issues name the flag or the file line', () => {
    const src = parseConfigText(`link: ${LINK}\nsocks: 127.0.0.1:1080\nhttp: nope\nforwards: ['1:a:1']\n`, 'c.yaml');
    const { raw, sourceMap } = mergeFlags(src, [
      { path: ['socks'], value: 'bad', flag: '--socks' },
      { path: ['forwards'], value: ['8080:b:80', 'x'], flag: '-L' },
      { path: ['limits', 'maxStreams'], value: 0, flag: '--set limits.maxStreams' },
    ]);
    assert.throws(() => validateConfig(raw, 'client', sourceMap), (err: unknown) => {
      assert.ok(err instanceof ConfigValidationError);
      assert.deepEqual(err.issues.map((i) => `${i.where}: ${i.message}`).sort(), [
        '--set limits.maxStreams: expected an integer from 1 to 1048576, got 0',
        '--socks: expected HOST:PORT, got "bad"',
        '-L: expected [BIND:]PORT:HOST:PORT[/udp], got "x"',
        'c.yaml:3: key \'http\': expected HOST:PORT, got "nope"',
      ]);
      return true;
    });
    // The file's parsed tree is not modified by merging.
    assert.equal((src.raw as Record<string, unknown>).socks, '127.0.0.1:1080');
  });

  it('without a file, flags alone make the config', () => {
    const { raw, sourceMap } = mergeFlags(undefined, [
      { path: ['listen'], value: ['tcp://127.0.0.1:4433'], flag: '--listen' },
      { path: ['dataDir'], value: '/d', flag: '--data-dir' },
      { path: ['reverse', 'enabled'], value: true, flag: '--reverse' },
    ]);
    const c = validateConfig(raw, 'server', sourceMap);
    assert.equal(c.reverse.enabled, true);
    assert.deepEqual(c.reverse.bindHosts, ['127.0.0.1']);
  });

  it('a flag replaces a file value of the wrong shape', () => {
    const src = parseConfigText(`link: ${LINK}\nlimits: 5\n`, 'c.yaml');
    const { raw, sourceMap } = mergeFlags(src, [{ path: ['limits', 'maxStreams'], value: 9, flag: '--set limits.maxStreams' }]);
    assert.equal(validateConfig(raw, 'client', sourceMap).limits.maxStreams, 9);
  });
});
