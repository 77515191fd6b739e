/**
 * POST /api/wizard/provision against a stand-in provisioning server (the
 * two requests of config/provision-client.ts over plain http): the links
 * come back with their summaries and the saved file; a wrong password and
 * an unreachable server are answers that say what to fix, never echoing
 * the password.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { CSRF_HEADER } from '../../../src/ui/guard.js';
import { buildUiApi } from '../../../src/ui/server.js';
import { HOST, csrfOf, makeLink } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'polytun-ui-prov-'));
const links = [makeLink('vps.example', 4433), makeLink('vps.example', 4433, 'udp')];
let server: http.Server;
let port: number;
let app: FastifyInstance;

before(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.method === 'POST' && req.url === '/token') {
        const f = new URLSearchParams(body);
        if (f.get('username') === 'dave' && f.get('password') === 'right password') return res.end(JSON.stringify({ access_token: 'tok' }));
        res.statusCode = 401;
        return res.end(JSON.stringify({ detail: 'bad credentials' }));
      }
      if (req.method === 'GET' && req.url === '/config' && req.headers.authorization === 'Bearer tok') return res.end(JSON.stringify({ user: { name: 'dave' }, links }));
      res.statusCode = 404;
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  app = buildUiApi({ tunnel: () => undefined, wizard: { configFile: join(dir, 'client.yaml'), provisionFile: (user, host, p) => join(dir, `${user}@${host}_${p}.yaml`) } });
});
after(async () => {
  await app.close();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function provision(body: object) {
  const r = await app.inject({ method: 'POST', url: '/api/wizard/provision', headers: { host: HOST, [CSRF_HEADER]: await csrfOf(app) }, payload: body });
  return { status: r.statusCode, json: r.json() as Record<string, unknown>, text: r.body };
}

describe('wizard: provision', () => {
  it('logs in, fetches the links, saves them 0600 and answers them with masked summaries', async () => {
    const r = await provision({ host: '127.0.0.1', port, user: 'dave', password: 'right password', insecureHttp: true });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.links, links);
    assert.deepEqual(r.json.config, { link: links[0], backupServers: [links[1]] });
    assert.deepEqual((r.json.summaries as { carrier: string }[]).map((s) => s.carrier), ['tcp', 'udp']);
    assert.equal(r.json.file, join(dir, `dave@127.0.0.1_${port}.yaml`));
    assert.equal(statSync(r.json.file as string).mode & 0o777, 0o600);
  });

  it('a wrong password says to check it, without echoing it', async () => {
    const r = await provision({ url: `http://dave:wrong%20secret@127.0.0.1:${port}` });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'provision_refused');
    assert.match(String(r.json.message), /refused the user name or password: check both/);
    assert.ok(!r.text.includes('wrong secret'));
  });

  it('an unreachable server says to check the host and port', async () => {
    const dead = await new Promise<number>((resolve) => {
      const s = http.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const r = await provision({ host: '127.0.0.1', port: dead, user: 'dave', password: 'right password', insecureHttp: true });
    assert.equal(r.status, 502);
    assert.equal(r.json.error, 'unreachable');
    assert.match(String(r.json.message), /ECONNREFUSED: check the host and port/);
  });

  it('a bad URL is a 400 naming what is wrong', async () => {
    const r = await provision({ url: 'ftp://x' });
    assert.equal(r.status, 400);
    assert.match(String(r.json.message), /http:\/\/ or https:\/\//);
  });
});
