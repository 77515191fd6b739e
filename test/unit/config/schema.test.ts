import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { parseConfigText } from '../../../src/config/load.js';
import { ConfigValidationError, DEFAULTS, validateConfig, type Role } from '../../../src/config/schema.js';
import { levenshtein, suggest } from '../../../src/config/check.js';
import { encodeKey, generateKeyPair } from '../../../src/secure/keys.js';

const key = (): string => encodeKey(generateKeyPair().privateKey);
const LINK = `polytun://${key()}@vps.example:4433?pk=${encodeKey(generateKeyPair().publicKey)}`;
const SERVER_MIN = { listen: ['tcp://0.0.0.0:4433'], dataDir: '/var/lib/polytun' };
const CLIENT_MIN = { link: LINK };

/** The one issue message a config produces (asserts there is exactly one). */
function issueOf(raw: unknown, role: Role): string {
  try {
    validateConfig(raw, role);
  } catch (err) {
    assert.ok(err instanceof ConfigValidationError, `expected ConfigValidationError, got ${String(err)}`);
    assert.equal(err.issues.length, 1, `expected one issue, got: ${err.message}`);
    const i = err.issues[0];
    assert.ok(i);
    return `${i.where}: ${i.message}`;
  }
  assert.fail(`config was accepted: ${JSON.stringify(raw)}`);
}

function withKey(base: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const out = structuredClone(base);
  const segs = path.split('.');
  let cur: Record<string, unknown> = out;
  for (const s of segs.slice(0, -1)) cur = (cur[s] ??= {}) as Record<string, unknown>;
  cur[segs[segs.length - 1] as string] = value;
  return out;
}

describe('config schema: defaults', () => {
  it('a minimal server config is fully defaulted', () => {
    const c = validateConfig(SERVER_MIN, 'server');
    assert.deepEqual(c, {
      role: 'server',
      listen: [{ scheme: 'tcp', host: '0.0.0.0', port: 4433, url: 'tcp://0.0.0.0:4433' }],
      dataDir: '/var/lib/polytun',
      publicHost: undefined,
      tls: undefined,
      policy: { allow: [], deny: [] },
      reverse: { enabled: false, bindHosts: ['127.0.0.1'], ports: [[1024, 65535]] },
      gateway: { store: '', admin: undefined, controller: undefined, decoy: undefined, trafficFlushMs: 10_000, wsTokenPath: '/', mttTimeoutMs: 60_000, history: true, historyNode: undefined },
      vpn: undefined,
      limits: { ...DEFAULTS.limits },
      liveness: { intervalMs: 10_000, timeoutMs: 5_000, misses: 3 },
      records: { tlsBound: true, cipher: 'auto' },
      udp: { cc: 'bbr', maxRate: undefined, datagramSize: 1452 },
      log: { level: 'info', format: 'text' },
      metrics: { listen: undefined, allowRemote: false, maxLabelValues: 1000 },
    });
  });

  it('a minimal client config is fully defaulted', () => {
    const c = validateConfig(CLIENT_MIN, 'client');
    assert.equal(c.link.host, 'vps.example');
    assert.deepEqual(c.socks, { host: '127.0.0.1', port: 1080 });
    assert.deepEqual(c.status, { host: '127.0.0.1', port: 1099 });
    assert.equal(c.http, false);
    assert.equal(c.socksAuth, undefined);
    assert.deepEqual(c.forwards, []);
    assert.deepEqual(c.reverse, []);
    const { maxPendingHandshakes: _a, maxSessions: _b, ...common } = DEFAULTS.limits;
    assert.deepEqual(c.limits, common);
    assert.deepEqual(c.log, { level: 'info', format: 'text' });
    assert.deepEqual(c.udp, { cc: undefined, mode: 'fast', datagramSize: 1452 });
    assert.deepEqual(c.reconnect, { refusedRetryMs: 60_000 });
    assert.deepEqual(c.metrics, { listen: undefined, allowRemote: false, maxLabelValues: 1000 });
  });

  it('defaults are fresh objects per config', () => {
    const a = validateConfig(SERVER_MIN, 'server');
    a.policy.allow.push('1.2.3.4');
    a.reverse.bindHosts.push('::1');
    const b = validateConfig(SERVER_MIN, 'server');
    assert.deepEqual(b.policy.allow, []);
    assert.deepEqual(b.reverse.bindHosts, ['127.0.0.1']);
  });
});

describe('config schema: every key is validated', () => {
  // [key path, a bad value, text the message must contain]
  const serverBad: [string, unknown, string][] = [
    ['listen', 'tcp://0.0.0.0:1', 'expected a list'],
    ['listen', [], 'at least 1 item'],
    ['listen', ['sctp://0.0.0.0:1'], "unknown listen scheme 'sctp'"],
    ['listen', ['tcp://0.0.0.0'], 'missing port'],
    ['udp', { cc: 'reno' }, "unknown congestion controller 'reno'"],
    ['gateway', { historyNode: 'edge 1' }, 'no spaces'],
    ['gateway', { historyNode: 'n'.repeat(65) }, '1 to 64 printable characters'],
    ['udp', { maxRate: 'lots' }, "bad rate 'lots'"],
    ['udp', { mode: 'fast' }, "key 'udp.mode': unknown key"],
    ['dataDir', 42, 'expected a directory path'],
    ['publicHost', 'not a host!', 'expected a host name or IP address'],
    ['tls', 'cert.pem', 'expected a mapping'],
    ['tls', { cert: 'c.pem' }, "key 'tls.key': is required"],
    ['tls', { cert: '', key: 'k.pem' }, "key 'tls.cert': expected a file path"],
    ['policy.allow', ['10.0.0.0/33'], "key 'policy.allow[0]'"],
    ['policy.deny', 'x', 'expected a list'],
    ['reverse.enabled', 'yes', 'expected true or false'],
    ['reverse.bindHosts', ['in valid'], "key 'reverse.bindHosts[0]'"],
    ['reverse.ports', ['0-10'], "bad port '0-10'"],
    ['limits.handshakeTimeoutMs', 5, 'from 100 to'],
    ['limits.maxPendingHandshakes', 0, 'from 1 to'],
    ['limits.maxSessions', 1.5, 'an integer'],
    ['limits.streamWindow', '1MiB', 'an integer'],
    ['limits.sessionWindow', 1024, 'from 16384'],
    ['limits.maxStreams', 0, 'from 1'],
    ['limits.graceMs', -1, 'from 0'],
    ['limits.idleTimeoutMs', null, 'got null'],
    ['liveness.intervalMs', 10, 'from 100'],
    ['liveness.timeoutMs', 'soon', 'an integer'],
    ['liveness.misses', 0, 'from 1'],
    ['log.level', 'verbose', 'one of trace, debug, info'],
    ['log.format', 'xml', 'one of text, json'],
    ['gateway.wsTokenPath', 'tunnel', "a URL path starting with '/'"],
    ['gateway.wsTokenPath', '/t?x=1', "no '?' or '#'"],
    ['reconnect', { refusedRetryMs: 1 }, 'is a client setting'],
  ];
  for (const [path, bad, text] of serverBad) {
    it(`server ${path} = ${JSON.stringify(bad)}`, () => {
      const msg = issueOf(withKey(SERVER_MIN, path, bad), 'server');
      assert.ok(msg.includes(text), msg);
      assert.ok(msg.startsWith(`key '${path.split('.')[0] ?? ''}`), msg);
    });
  }

  const clientBad: [string, unknown, string][] = [
    ['link', 'https://example.com', 'not a polytun:// link'],
    ['link', 7, 'expected a polytun:// link'],
    ['socks', 'abc', 'expected HOST:PORT, got "abc"'],
    ['socks', true, 'expected HOST:PORT'],
    ['socksAuth', { username: 'u' }, "key 'socksAuth.password': is required"],
    ['socksAuth', { username: 'u', password: 'p'.repeat(256) }, 'longer than 255 bytes'],
    ['socksAuth', { username: '', password: 'p' }, 'expected a username'],
    ['http', '127.0.0.1', 'expected HOST:PORT'],
    ['forwards', ['8080:host'], 'expected [BIND:]PORT:HOST:PORT[/udp]'],
    ['forwards', ['8080:host:0'], 'bad target port'],
    ['forwards', ['8080:host:80/sctp'], "unknown suffix '/sctp'"],
    ['reverse', ['9000:127.0.0.1:22/udp'], "unknown suffix '/udp'"],
    ['status', '0.0.0.0:1099', 'must be a loopback address'],
    ['udp', { mode: 'turbo' }, 'normal'],
    ['udp', { cc: 'fixed:x' }, "bad rate 'x'"],
    ['limits.streamWindow', 0, 'from 16384'],
    ['liveness.misses', 1000, 'to 100'],
    ['log.level', 3, 'one of'],
    ['reconnect.refusedRetryMs', -1, 'from 0'],
    ['reconnect.refusedRetryMs', '60s', 'an integer'],
    ['reconnect.retry', -1, 'from 0'],
    ['reconnect.retry', 'forever', 'an integer'],
  ];
  for (const [path, bad, text] of clientBad) {
    it(`client ${path} = ${JSON.stringify(bad).slice(0, 40)}`, () => {
      const msg = issueOf(withKey(CLIENT_MIN, path, bad), 'client');
      assert.ok(msg.includes(text), msg);
    });
  }

  it('good values of every client kind are parsed into typed values', () => {
    const c = validateConfig(
      {
        link: LINK,
        socks: false,
        socksAuth: { username: 'alice', password: 's3cret' },
        http: '[::1]:8118',
        forwards: ['8080:intranet:80', '0.0.0.0:5353:[2001:db8::1]:53/udp'],
        reverse: ['[::1]:9000:localhost:22'],
        status: false,
        liveness: { misses: 5 },
      },
      'client',
    );
    assert.equal(c.socks, false);
    assert.equal(c.status, false);
    assert.deepEqual(c.http, { host: '::1', port: 8118 });
    assert.deepEqual(c.forwards[0], { bindHost: '127.0.0.1', bindPort: 8080, host: 'intranet', port: 80, udp: false, spec: '8080:intranet:80' });
    assert.deepEqual(c.forwards[1], { bindHost: '0.0.0.0', bindPort: 5353, host: '2001:db8::1', port: 53, udp: true, spec: '0.0.0.0:5353:[2001:db8::1]:53/udp' });
    assert.deepEqual(c.reverse[0]?.bindHost, '::1');
    assert.deepEqual(c.liveness, { intervalMs: 10_000, timeoutMs: 5_000, misses: 5 });
  });

  it('good server values are parsed: tls, reverse ports, IPv6 listen', () => {
    const c = validateConfig(
      { ...SERVER_MIN, listen: ['tls://[::]:443'], tls: { cert: 'c.pem', key: 'k.pem' }, reverse: { enabled: true, ports: [8080, '9000-9100'] } },
      'server',
    );
    assert.deepEqual(c.listen[0], { scheme: 'tls', host: '::', port: 443, url: 'tls://[::]:443' });
    assert.deepEqual(c.tls, { cert: 'c.pem', key: 'k.pem' });
    assert.deepEqual(c.reverse.ports, [[8080, 8080], [9000, 9100]]);
  });
});

describe('config schema: cross-field rules and roles', () => {
  it('two forwards on the same listen address are refused', () => {
    const msg = issueOf({ ...CLIENT_MIN, forwards: ['8080:a:80', '127.0.0.1:8080:b:80'] }, 'client');
    assert.match(msg, /forwards\[1\].*same address as forwards\[0\]/);
  });

  it('a tcp and a udp forward may share a port', () => {
    assert.equal(validateConfig({ ...CLIENT_MIN, forwards: ['53:a:53', '53:a:53/udp'] }, 'client').forwards.length, 2);
  });

  it('sessionWindow below streamWindow is refused', () => {
    assert.match(issueOf({ ...SERVER_MIN, limits: { streamWindow: 1 << 20, sessionWindow: 1 << 16 } }, 'server'), /sessionWindow.*at least/);
  });

  it("keys of the other role are named as such", () => {
    assert.match(issueOf({ ...CLIENT_MIN, dataDir: '/x' }, 'client'), /key 'dataDir': is a server setting/);
    assert.match(issueOf({ ...SERVER_MIN, socks: '127.0.0.1:1' }, 'server'), /key 'socks': is a client setting/);
    assert.match(issueOf({ ...CLIENT_MIN, limits: { maxSessions: 5 } }, 'client'), /limits.maxSessions': is a server setting/);
  });

  it('required keys are reported with where else they may come from', () => {
    assert.match(issueOf({}, 'client'), /key 'link': is required \(the LINK argument/);
    assert.match(issueOf({ dataDir: '/x' }, 'server'), /key 'listen': is required/);
  });

  it('a non-mapping root is refused', () => {
    assert.match(issueOf(['a'], 'server'), /^config: expected a mapping, got a list/);
  });

  it('every issue is reported at once', () => {
    try {
      validateConfig({ socks: 'x', http: 'y', lmits: {} }, 'client');
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigValidationError);
      assert.ok(err instanceof ConfigError, 'a ConfigValidationError is a ConfigError');
      assert.equal(err.code, 'ERR_CONFIG');
      assert.equal(err.issues.length, 4, err.message); // lmits, link, socks, http
      assert.equal(err.message.split('\n').length, 4);
    }
  });

  it('secrets are never echoed in messages', () => {
    const secret = 'p'.repeat(300);
    const msg = issueOf({ ...CLIENT_MIN, socksAuth: { username: 'u', password: secret } }, 'client');
    assert.ok(!msg.includes(secret));
    const badLink = LINK.replace('pk=', 'pk=x');
    const linkMsg = issueOf({ link: badLink }, 'client');
    assert.ok(!linkMsg.includes(badLink.slice(10, 53)), linkMsg);
  });
});

describe('config schema: unknown keys', () => {
  it('suggests the closest key', () => {
    assert.equal(issueOf({ ...CLIENT_MIN, sock: '127.0.0.1:1' }, 'client'), "key 'sock': unknown key (did you mean 'socks'?)");
    assert.match(issueOf({ ...SERVER_MIN, limits: { maxSesions: 1 } }, 'server'), /limits.maxSesions': unknown key \(did you mean 'maxSessions'\?\)/);
    assert.match(issueOf({ ...SERVER_MIN, 'data-dir': '/x' }, 'server'), /did you mean 'dataDir'/);
  });

  it('offers no suggestion for a key unlike any other', () => {
    assert.equal(issueOf({ ...CLIENT_MIN, zebra: 1 }, 'client'), "key 'zebra': unknown key");
  });

  it('levenshtein and suggest', () => {
    assert.equal(levenshtein('kitten', 'sitting'), 3);
    assert.equal(levenshtein('', 'abc'), 3);
    assert.equal(levenshtein('same', 'same'), 0);
    assert.equal(suggest('DataDir', ['dataDir', 'listen']), 'dataDir');
    assert.equal(suggest('lisen', ['dataDir', 'listen']), 'listen');
    assert.equal(suggest('q', ['dataDir', 'listen']), undefined);
  });
});

describe('config schema: file and line in errors', () => {
  const yaml = [
    '# client config', // 1
    `link: ${LINK}`, // 2
    'socks: abc', // 3
    'limits:', // 4
    '  maxStreams: 0', // 5
    'forwards:', // 6
    '  - 8080:intranet:80', // 7
    '  - nonsense', // 8
    'sockz: 1', // 9
  ].join('\n');

  it('each message names file:line and the key', () => {
    const src = parseConfigText(yaml, 'client.yaml');
    try {
      validateConfig(src.raw, 'client', src.sourceMap);
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigValidationError);
      const lines = err.issues.map((i) => `${i.where}: ${i.message}`).sort();
      assert.deepEqual(lines, [
        "client.yaml:3: key 'socks': expected HOST:PORT, got \"abc\"",
        "client.yaml:5: key 'limits.maxStreams': expected an integer from 1 to 1048576, got 0",
        "client.yaml:8: key 'forwards[1]': expected [BIND:]PORT:HOST:PORT[/udp], got \"nonsense\"",
        "client.yaml:9: key 'sockz': unknown key (did you mean 'socks'?)",
      ]);
    }
  });

  it('a missing nested key points at its parent mapping', () => {
    const src = parseConfigText('listen: [tcp://127.0.0.1:1]\ndataDir: /x\n\ntls:\n  cert: c.pem\n', 'server.yaml');
    assert.throws(() => validateConfig(src.raw, 'server', src.sourceMap), { message: "server.yaml:5: key 'tls.key': is required (or --key)" });
  });

  it('a missing top-level key names the file without a line', () => {
    const src = parseConfigText('dataDir: /x\n', 'server.yaml');
    assert.throws(() => validateConfig(src.raw, 'server', src.sourceMap), /^ConfigValidationError: server\.yaml: key 'listen': is required/);
  });
});
