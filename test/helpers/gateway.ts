/**
 * Fixtures for the gateway e2e tests: a `polytun server` with the admin API
 * and controller on known loopback ports, a TCP echo target, and small
 * clients for the admin API, the mtt controller and echo round trips.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { clientForLink } from '../../src/config/dial-link.js';
import { decodeLink } from '../../src/config/link.js';
import { freePort, polytun, waitForPort, type Proc } from './cli.js';

/** A TCP echo server on 127.0.0.1. */
export async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy()); // a tunnel reset reaches us as ECONNRESET; nothing to report
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

/** A running gateway server. */
export interface GatewayProc extends Proc {
  dataDir: string;
  /**
   * The default user's links: printed at a first start; on a restart (which
   * prints none) they come from `polytun link --data-dir DIR`, as a user
   * would get them.
   */
  links: string[];
  /** `http(s)://127.0.0.1:PORT` of the admin API, when started with one. */
  admin: string | undefined;
  controllerPort: number | undefined;
  /** The admin bearer token (from the data dir). */
  token: string;
  /** Everything printed on stdout. */
  stdout(): string;
  /** Stops the server; the data dir is kept unless `removeDir`. */
  stop(removeDir?: boolean): Promise<number | null>;
}

/** Options of {@link startGateway}. */
export interface StartGatewayOptions {
  listen?: string[];
  /** Reuse this data dir (a restart); a fresh temp dir otherwise. */
  dataDir?: string;
  /** 'http' (default), 'https' or false for no admin API. */
  admin?: 'http' | 'https' | false;
  controller?: boolean;
  extra?: string[];
}

/** Starts `polytun server` and waits for its links and management ports. */
export async function startGateway(o: StartGatewayOptions = {}): Promise<GatewayProc> {
  const listen = o.listen ?? ['tcp://127.0.0.1:0', 'wss://127.0.0.1:0'];
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'polytun-gw-'));
  const adminMode = o.admin ?? 'http';
  const adminPort = adminMode === false ? undefined : await freePort();
  const controllerPort = o.controller ? await freePort() : undefined;
  const args = ['server', ...listen.flatMap((l) => ['--listen', l]), '--data-dir', dataDir, '--log-level', 'debug'];
  if (adminPort !== undefined) args.push('--admin', `${adminMode === 'https' ? 'https://' : ''}127.0.0.1:${adminPort}`);
  if (controllerPort !== undefined) args.push('--controller', `127.0.0.1:${controllerPort}`);
  const p = polytun([...args, ...(o.extra ?? [])]);
  let out = '';
  const links: string[] = [];
  const rl = createInterface({ input: p.child.stdout as NodeJS.ReadableStream });
  let restarted = false;
  const wanted = new Promise<void>((resolve) => {
    rl.on('line', (line) => {
      out += `${line}\n`;
      if (line.startsWith('polytun://')) links.push(line);
      if (links.length === listen.length) resolve();
      if (/^# \d+ users?; links are printed only when a user is created/.test(line)) {
        restarted = true;
        resolve();
      }
    });
    rl.on('close', () => resolve());
  });
  // A server that never gets to its links fails the test with its log instead of hanging it.
  const late = setTimeout(() => p.child.kill('SIGKILL'), 60_000);
  await wanted;
  clearTimeout(late);
  if (restarted) links.push(...(await linkCommand(dataDir)).slice(0, listen.length));
  if (links.length < listen.length) throw new Error(`server printed ${links.length} links; log:\n${p.log()}`);
  if (adminPort !== undefined) await waitForPort(adminPort, '127.0.0.1', p);
  if (controllerPort !== undefined) await waitForPort(controllerPort, '127.0.0.1', p);
  const stop = p.stop;
  return Object.assign(p, {
    dataDir,
    links,
    admin: adminPort === undefined ? undefined : `${adminMode === 'https' ? 'https' : 'http'}://127.0.0.1:${adminPort}`,
    controllerPort,
    token: adminPort === undefined ? '' : readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
    stdout: () => out,
    async stop(removeDir = true) {
      // A server that does not exit on SIGTERM is a bug: report it with its log rather than hang.
      let hung = false;
      const late = setTimeout(() => {
        hung = true;
        p.child.kill('SIGKILL');
      }, 20_000);
      const code = await stop();
      clearTimeout(late);
      if (removeDir) rmSync(dataDir, { recursive: true, force: true });
      if (hung) throw new Error(`polytun server did not exit within 20 s of SIGTERM; log:\n${p.log()}`);
      return code;
    },
  });
}

/** The links `polytun link --data-dir DIR` prints (the store and listen URLs come from DIR/links.json). */
async function linkCommand(dataDir: string): Promise<string[]> {
  const p = polytun(['link', '--data-dir', dataDir]);
  let text = '';
  p.child.stdout?.on('data', (c: Buffer) => (text += c.toString()));
  // 'close', not 'exit': stdout is complete only then.
  const [code] = (await once(p.child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`polytun link failed (${code}): ${p.log()}`);
  return text.split('\n').filter((l) => l.startsWith('polytun://'));
}

/** A JSON reply. */
export interface ApiReply {
  status: number;
  body: Record<string, unknown>;
}

/** Calls the admin API (http only: fetch cannot pin our self-signed certificate). */
export async function api(gw: GatewayProc, method: string, path: string, body?: unknown, token: string | null = gw.token): Promise<ApiReply> {
  assert.ok(gw.admin?.startsWith('http://'), 'api() needs a plain-http admin listener');
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${gw.admin}${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Posts one command to the mtt controller; returns the raw reply body (mtt's exact bytes, '' when it answers nothing). */
export async function mtt(gw: GatewayProc, body: string | Buffer): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gw.controllerPort}/`, { method: 'POST', body });
  return res.text();
}

/** Connects an in-process client with `link`; resolves once the session is up, rejects with the server's answer. */
export async function handshake(link: string): Promise<void> {
  const c = clientForLink(decodeLink(link), { handshakeTimeoutMs: 5000 });
  try {
    await c.connect();
  } finally {
    c.close();
  }
}
