/**
 * The wizard's routes over fastify inject: a link is summarized without its
 * secret; a bad link or config says what is wrong and where; apply writes
 * an atomic 0600 YAML that the real loader reads back, and starts it; the
 * checks explain failures (fake dialer) and never claim a figure they did
 * not measure; the history route reads what the recorder wrote.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { DialError } from '../../../src/carriers/errors.js';
import { TimeoutError } from '../../../src/core/errors.js';
import { loadConfig } from '../../../src/config/load.js';
import type { ClientConfig } from '../../../src/config/schema.js';
import { CSRF_HEADER } from '../../../src/ui/guard.js';
import { buildUiApi } from '../../../src/ui/server.js';
import { openPathHistory } from '../../../src/ui/history-file.js';
import { readUiPassword } from '../../../src/ui/start.js';
import type { TunnelStarter } from '../../../src/ui/types.js';
import { HOST, csrfOf, fakeTunnel, makeLink } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'polytun-ui-wizard-'));
const apps: FastifyInstance[] = [];
after(async () => {
  await Promise.all(apps.map((a) => a.close()));
  rmSync(dir, { recursive: true, force: true });
});

function build(init: Partial<Parameters<typeof buildUiApi>[0]> = {}, wizard: Partial<NonNullable<Parameters<typeof buildUiApi>[0]['wizard']>> = {}): FastifyInstance {
  const app = buildUiApi({ tunnel: () => undefined, wizard: { configFile: join(dir, 'client.yaml'), ...wizard }, ...init });
  apps.push(app);
  return app;
}

async function post(app: FastifyInstance, url: string, payload: unknown) {
  const r = await app.inject({ method: 'POST', url, headers: { host: HOST, [CSRF_HEADER]: await csrfOf(app) }, payload: payload as object });
  return { status: r.statusCode, json: r.json() as Record<string, unknown> };
}

describe('wizard: link', () => {
  it('summarizes a link with its secret masked', async () => {
    const link = makeLink('vps.example', 4433, 'udp');
    const credential = link.slice('polytun://'.length, link.indexOf('@'));
    const r = await post(build(), '/api/wizard/link', { link: `  ${link}\n` });
    assert.equal(r.status, 200);
    const s = r.json.summary as Record<string, unknown>;
    assert.equal(s.server, 'vps.example:4433');
    assert.equal(s.carrier, 'udp');
    assert.match(String(s.serverKeyFingerprint), /^[0-9a-f]{16}$/);
    assert.ok(!JSON.stringify(r.json).includes(credential), 'the credential is not in the answer');
  });

  it('says what is wrong with a bad link, naming the field', async () => {
    const r = await post(build(), '/api/wizard/link', { link: 'polytun://abc@host:4433' });
    assert.equal(r.status, 400);
    assert.equal(r.json.field, 'body.link');
    assert.match(String(r.json.message), /pk/);
    assert.match(String(r.json.message), /paste the whole/);
  });
});

describe('wizard: apply', () => {
  it('refuses an invalid config with every issue located, and writes nothing', async () => {
    const file = join(dir, 'bad.yaml');
    const r = await post(build({}, { configFile: file }), '/api/wizard/apply', { config: { link: makeLink(), socks: 'nowhere:x', limits: { maxStreams: 0 }, bogus: 1 } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_config');
    const where = (r.json.issues as { where: string }[]).map((i) => i.where).sort();
    assert.deepEqual(where, ['config.bogus', 'config.limits.maxStreams', 'config.socks']);
    assert.throws(() => statSync(file), /ENOENT/);
    const noLink = await post(build({}, { configFile: file }), '/api/wizard/apply', { config: {} });
    assert.match(String(noLink.json.message), /config\.link/);
    const notObject = await post(build({}, { configFile: file }), '/api/wizard/apply', { config: 'link: x' });
    assert.match(String(notObject.json.message), /expected an object/);
  });

  it('does not write shell commands or file paths (any local user may reach a loopback API)', async () => {
    const file = join(dir, 'hooks.yaml');
    const config = { link: makeLink(), bonding: { onUp: 'touch /tmp/pwned' }, vpn: { enabled: true, resolvConf: '/etc/passwd' }, ui: { history: '/etc/shadow' } };
    const r = await post(build({}, { configFile: file }), '/api/wizard/apply', { config });
    assert.equal(r.status, 400);
    const where = (r.json.issues as { where: string }[]).map((i) => i.where).sort();
    assert.deepEqual(where, ['config.bonding.onUp', 'config.ui.history', 'config.vpn.resolvConf']);
    assert.match(String(r.json.message), /add it to the config file by hand/);
    assert.throws(() => statSync(file), /ENOENT/);
    const check = await post(build({}, { configFile: file, dial: (async () => undefined) as never }), '/api/wizard/check', { config });
    assert.equal(check.status, 400);
    const off = await post(build({}, { configFile: file }), '/api/wizard/apply', { config: { link: makeLink(), ui: { history: false } } });
    assert.equal(off.status, 200, JSON.stringify(off.json));
  });

  it('writes a 0600 YAML the loader reads back, and starts it when it can', async () => {
    const file = join(dir, 'sub', 'client.yaml');
    const link = makeLink('vps.example', 4433);
    let started: { config: ClientConfig; file: string } | undefined;
    const starter: TunnelStarter = {
      async start(config, f) {
        started = { config, file: f };
      },
      state: () => ({ state: started ? 'starting' : 'none' }),
    };
    const config = { link, socks: '127.0.0.1:1081', forwards: ['8080:intranet:80'], ui: { listen: '127.0.0.1:7080' } };
    const r = await post(build({ starter }, { configFile: file }), '/api/wizard/apply', { config });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.started, true);
    assert.equal(r.json.file, file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const loaded = await loadConfig(file, 'client');
    assert.equal(loaded.link.host, 'vps.example');
    assert.deepEqual(loaded.socks, { host: '127.0.0.1', port: 1081 });
    assert.equal(loaded.forwards[0]?.host, 'intranet');
    assert.equal(started?.file, file);
    assert.equal(started?.config.forwards[0]?.bindPort, 8080);
    assert.match(readFileSync(file, 'utf8'), /^# polytun client config, written by the setup wizard/);

    // Without a starter (a running client's dashboard) it only writes, and says how to start it.
    const plain = await post(build({}, { configFile: file }), '/api/wizard/apply', { config });
    assert.equal(plain.json.started, false);
    assert.match(String(plain.json.message), new RegExp(`polytun client --config ${file}`));
  });
});

describe('wizard: start', () => {
  it('runs the config file as it is, and says what is wrong with a missing or bad one', async () => {
    const file = join(dir, 'start.yaml');
    const started: string[] = [];
    const starter: TunnelStarter = { start: async (_c, f) => void started.push(f), state: () => ({ state: 'starting' }) };
    const app = build({ starter }, { configFile: file });
    const missing = await post(app, '/api/wizard/start', {});
    assert.equal(missing.status, 400);
    assert.match(String(missing.json.message), /no such file.*POST \/api\/wizard\/apply/);
    writeFileSync(file, `link: ${makeLink()}\nsocks: nowhere\n`);
    const bad = await post(app, '/api/wizard/start', {});
    assert.equal(bad.status, 400);
    assert.match(String(bad.json.message), /start\.yaml:2: key 'socks'/);
    writeFileSync(file, `link: ${makeLink()}\n`);
    const ok = await post(app, '/api/wizard/start', {});
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.deepEqual(started, [file]);
    const noStarter = await post(build({}, { configFile: file }), '/api/wizard/start', {});
    assert.equal(noStarter.status, 404);
  });
});

describe('wizard: check', () => {
  it('passes what answered, explains what did not, and says which figures were not measured', async () => {
    const ok = makeLink('127.0.0.1', 4433);
    const refused = makeLink('127.0.0.1', 4434);
    const udp = makeLink('127.0.0.1', 4435, 'udp');
    const dial = async (init: { endpoint: { port: number } }): Promise<void> => {
      if (init.endpoint.port === 4434) throw new DialError('127.0.0.1:4434', 'ECONNREFUSED');
      if (init.endpoint.port === 4435) throw new TimeoutError('handshake timed out');
    };
    const r = await post(build({}, { dial: dial as never }), '/api/wizard/check', { config: { link: ok, backupServers: [refused, udp] } });
    assert.equal(r.status, 200);
    const items = r.json.items as { id: string; result: string; fix?: string; detail: string }[];
    const by = (id: string) => items.find((i) => i.id === id);
    assert.equal(by('reach:link')?.result, 'pass');
    assert.equal(by('reach:backup0')?.result, 'fail');
    assert.match(by('reach:backup0')?.fix ?? '', /nothing listens on 127\.0\.0\.1:4434/);
    assert.equal(by('reach:backup1')?.result, 'fail');
    assert.match(by('reach:backup1')?.fix ?? '', /4435\/udp/);
    assert.equal(by('udp')?.result, 'fail');
    assert.equal(by('mtu')?.result, 'not_measured');
    // A fake dial leaves no session: the speed is not measured, and no figure is claimed; nothing is tried where the dial failed.
    assert.equal(by('speed:link')?.result, 'not_measured');
    assert.equal(by('speed:backup0'), undefined);
    assert.ok(!/\d+ ?(mbit|Mbit|MB\/s)/.test(JSON.stringify(items)), 'no speed figure is claimed');
    assert.equal(r.json.ok, false);

    const tcpOnly = await post(build({}, { dial: (async () => undefined) as never }), '/api/wizard/check', { config: { link: ok } });
    const udpItem = (tcpOnly.json.items as { id: string; result: string }[]).find((i) => i.id === 'udp');
    assert.equal(udpItem?.result, 'not_offered');
    assert.equal(tcpOnly.json.ok, true);
  });
});

describe('wizard: check, path MTU', () => {
  const pass = (async () => undefined) as never;
  const mtuOf = async (app: FastifyInstance, config: object) => {
    const r = await post(app, '/api/wizard/check', { config });
    return (r.json.items as { id: string; result: string; detail: string; fix?: string }[]).find((i) => i.id === 'mtu');
  };

  it('warns when udp datagrams do not fit through the first hop, and says which size does', async () => {
    const hop = async () => ({ iface: 'ppp0', mtu: 1400, family: 'IPv4' as const });
    const item = await mtuOf(build({}, { dial: pass, firstHop: hop }), { link: makeLink('127.0.0.1', 4433, 'udp') });
    assert.equal(item?.result, 'warn');
    assert.match(item?.detail ?? '', /ppp0 with MTU 1400/);
    assert.equal(item?.fix, 'set udp.datagramSize to 1372 or less');
    const fits = await mtuOf(build({}, { dial: pass, firstHop: hop }), { link: makeLink('127.0.0.1', 4433, 'udp'), udp: { datagramSize: 1300 } });
    assert.equal(fits?.result, 'not_measured', 'a first hop that fits proves nothing about the path beyond');
    assert.match(fits?.detail ?? '', /fit through it/);
    const tcp = await mtuOf(build({}, { dial: pass, firstHop: hop }), { link: makeLink('127.0.0.1', 4433, 'tcp') });
    assert.equal(tcp?.result, 'not_measured');
    const none = await mtuOf(build({}, { dial: pass, firstHop: async () => undefined }), { link: makeLink() });
    assert.equal(none?.result, 'not_measured');
    assert.match(none?.detail ?? '', /could not be found/);
  });

  it('finds the real first hop toward a loopback server: the loopback interface', async () => {
    const { firstHop } = await import('../../../src/ui/first-hop.js');
    const hop = await firstHop('127.0.0.1', 9);
    if (hop === undefined) return; // no /sys/class/net here (not Linux)
    const lo = (await import('node:os')).networkInterfaces()[hop.iface];
    assert.ok(lo?.some((a) => a.address === '127.0.0.1'), hop.iface);
    assert.ok(hop.mtu > 0);
  });
});

describe('wizard: interfaces and state', () => {
  it('lists this machine\'s interfaces, loopback marked internal', async () => {
    const app = build();
    const r = await app.inject({ method: 'GET', url: '/api/wizard/interfaces', headers: { host: HOST } });
    const list = (r.json() as { interfaces: { name: string; internal: boolean; addresses: { address: string }[] }[] }).interfaces;
    const lo = list.find((i) => i.addresses.some((a) => a.address === '127.0.0.1'));
    assert.equal(lo?.internal, true);
  });
});

describe('history route', () => {
  it('answers the points the history holds for one path, and checks the range', async () => {
    const h = openPathHistory(join(dir, 'h.db'));
    const t0 = 1_700_000_040_000;
    h.history.record('path', 'tcp://vps:4433', 10, 20, t0);
    h.history.record('path', 'tcp://vps:4433', 5, 5, t0 + 60_000);
    h.history.record('path', 'udp://vps:4433', 1, 1, t0);
    await h.history.flush();
    const tunnel = { ...fakeTunnel(), history: h.history };
    const app = build({ tunnel: () => tunnel });
    const r = await app.inject({ method: 'GET', url: `/api/history?path=${encodeURIComponent('tcp://vps:4433')}&from=${t0 - 60_000}&to=${t0 + 120_000}&res=60`, headers: { host: HOST } });
    assert.equal(r.statusCode, 200, r.body);
    const body = r.json() as { path: string; resolution: number; points: { at: number; up: number; down: number }[] };
    assert.equal(body.resolution, 60);
    assert.deepEqual(body.points, [
      { at: t0 - (t0 % 60_000), up: 10, down: 20 },
      { at: t0 - (t0 % 60_000) + 60_000, up: 5, down: 5 },
    ]);
    const bad = await app.inject({ method: 'GET', url: `/api/history?path=x&from=10&to=5`, headers: { host: HOST } });
    assert.equal(bad.statusCode, 400);
    const noPath = await app.inject({ method: 'GET', url: '/api/history?res=60', headers: { host: HOST } });
    assert.equal(noPath.statusCode, 400);
    assert.match((noPath.json() as { message: string }).message, /path/);
    await h.close();
  });
});

describe('ui password', () => {
  it('is the first line of the password file, and a short or missing one says what to fix', async () => {
    const f = join(dir, 'pw');
    writeFileSync(f, 'long enough secret\nsecond line\n');
    assert.equal(await readUiPassword({ password: undefined, passwordFile: f }), 'long enough secret');
    writeFileSync(f, 'short\n');
    await assert.rejects(readUiPassword({ password: undefined, passwordFile: f }), /shorter than 8 characters/);
    await assert.rejects(readUiPassword({ password: undefined, passwordFile: join(dir, 'none') }), /no such file.*first line/);
  });
});
