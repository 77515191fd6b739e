/**
 * Issue 19, end to end: a real `polytun server` with the mtt controller,
 * and an mtt-compatible client written here from the protocols
 * (test/helpers/mtt-client.ts) reaching an echo dst through a user added
 * with the controller — plain (smux_off) and muxed (smux_on, smux v1
 * frames laid out by hand, hex fixtures below).
 *
 *   test client ══ wss://127.0.0.1:P/mtt/… (Sec-WebSocket-Protocol: smux_off|smux_on) ══▶ polytun ─▶ echo
 *   test ──▶ controller 127.0.0.1:C (add, del)
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeLink } from '../../src/config/link.js';
import { ensureBuilt, stopAll } from '../helpers/cli.js';
import { api, echoServer, mtt, startGateway, type GatewayProc } from '../helpers/gateway.js';
import { MttTestClient, smuxFrame } from '../helpers/mtt-client.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** smux v1 frames by hand: ver 01, cmd (00 SYN, 01 FIN, 02 PSH, 03 NOP), length u16 LE, stream id u32 LE. */
const SMUX = {
  syn1: hex('01 00 0000 01000000'),
  psh1Hello: hex('01 02 0500 01000000 68656c6c6f'),
  fin1: hex('01 01 0000 01000000'),
  syn3: hex('01 00 0000 03000000'),
  psh3Bye: hex('01 02 0300 03000000 627965'),
  nop: hex('01 03 0000 00000000'),
};

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Splits a received smux byte stream into frames (by hand, as the client reads them). */
function smuxFrames(b: Buffer): { cmd: number; sid: number; body: Buffer }[] {
  const out: { cmd: number; sid: number; body: Buffer }[] = [];
  let at = 0;
  while (at + 8 <= b.length) {
    assert.equal(b[at], 1, 'smux version');
    const len = (b[at + 2] as number) | ((b[at + 3] as number) << 8);
    if (at + 8 + len > b.length) break;
    out.push({ cmd: b[at + 1] as number, sid: b.readUInt32LE(at + 4), body: b.subarray(at + 8, at + 8 + len) });
    at += 8 + len;
  }
  return out;
}

function streamBytes(b: Buffer, sid: number): Buffer {
  return Buffer.concat(smuxFrames(b).filter((f) => f.cmd === 2 && f.sid === sid).map((f) => f.body));
}

describe('mtt compatibility mode (issue 19)', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gw: GatewayProc;
  let port: number;

  before(async () => {
    ensureBuilt();
    echo = await echoServer();
    // A short idle timeout so the idle test does not take mtt's minute.
    gw = await startGateway({ controller: true, extra: ['--set', 'gateway.mttTimeoutMs=3000'] });
    port = decodeLink(gw.links.find((l) => decodeLink(l).carrier === 'wss') as string).port;
    const add = JSON.stringify({ opt: 1, args_bunch: [{ path: '/mtt/one', dst: `127.0.0.1:${echo.port}` }, { path: '/mtt/two', dst: `127.0.0.1:${echo.port}` }] });
    assert.equal(await mtt(gw, add), '{"res":1}');
  });

  after(async () => {
    await gw?.stop();
    await echo?.close();
    await stopAll();
  });

  it('plain (smux_off): 101 echoes the subprotocol; bytes go to dst as they are; 1 MiB echoes intact', async () => {
    const c = await MttTestClient.open(port, '/mtt/one', 'smux_off');
    assert.equal(c.status, 101);
    assert.equal(c.protocol, 'smux_off');
    c.send(Buffer.from('hello'));
    assert.equal((await c.read(5)).toString(), 'hello');
    const big = randomBytes(1024 * 1024);
    for (let off = 0; off < big.length; off += 16 * 1024) c.send(big.subarray(off, off + 16 * 1024));
    const got = await c.read(5 + big.length);
    assert.equal(sha(got.subarray(5)), sha(big));
    c.close();
    await c.whenClosed();
  });

  it('muxed (smux_on): hand-written smux v1 frames; two streams; 1 MiB intact; FIN answered with FIN', async () => {
    const c = await MttTestClient.open(port, '/mtt/two', 'smux_on');
    assert.equal(c.protocol, 'smux_on');
    c.send(Buffer.concat([SMUX.syn1, SMUX.psh1Hello, SMUX.nop, SMUX.syn3, SMUX.psh3Bye]));
    await c.until(() => streamBytes(c.received(), 1).toString() === 'hello' && streamBytes(c.received(), 3).toString() === 'bye');
    const big = randomBytes(1024 * 1024);
    // mtt-client writes each smux frame as its own message, at most 16 KiB of data.
    for (let off = 0; off < big.length; off += 16 * 1024) c.send(smuxFrame(2, 1, big.subarray(off, off + 16 * 1024)));
    await c.until(() => streamBytes(c.received(), 1).length >= 5 + big.length);
    assert.equal(sha(streamBytes(c.received(), 1).subarray(5)), sha(big));
    c.send(SMUX.fin1);
    await c.until(() => smuxFrames(c.received()).some((f) => f.cmd === 1 && f.sid === 1));
    // Stream 3 lives on.
    c.send(smuxFrame(2, 3, Buffer.from('again')));
    await c.until(() => streamBytes(c.received(), 3).toString() === 'byeagain');
    c.close();
    await c.whenClosed();
  });

  it('EOF from dst ends both: the client gets what dst sent, then Close and the end of the connection', async () => {
    const once1 = net.createServer((s) => s.end('bye from dst'));
    once1.listen(0, '127.0.0.1');
    await once(once1, 'listening');
    const dstPort = (once1.address() as net.AddressInfo).port;
    assert.equal(await mtt(gw, JSON.stringify({ opt: 1, args_bunch: [{ path: '/mtt/eof', dst: `127.0.0.1:${dstPort}` }] })), '{"res":1}');
    const c = await MttTestClient.open(port, '/mtt/eof', 'smux_off');
    await c.whenClosed();
    assert.equal(c.received().toString(), 'bye from dst');
    assert.equal(c.frames.at(-1)?.opcode, 8, 'a Close frame last');
    once1.close();
  });

  it('an idle connection is closed after gateway.mttTimeoutMs', async () => {
    const c = await MttTestClient.open(port, '/mtt/one', 'smux_off');
    c.send(Buffer.from('x'));
    await c.read(1);
    await c.whenClosed();
    assert.equal(c.frames.at(-1)?.opcode, 8);
  });

  it("a deleted user's live connection goes on; a new upgrade gets the decoy", async () => {
    assert.equal(await mtt(gw, JSON.stringify({ opt: 1, args_bunch: [{ path: '/mtt/gone', dst: `127.0.0.1:${echo.port}` }] })), '{"res":1}');
    const c = await MttTestClient.open(port, '/mtt/gone', 'smux_off');
    c.send(Buffer.from('before'));
    await c.read(6);
    assert.equal(await mtt(gw, JSON.stringify({ opt: 2, args_bunch: [{ path: '/mtt/gone' }] })), '{"res":1}');
    c.send(Buffer.from('after'));
    assert.equal((await c.read(11)).toString(), 'beforeafter');
    const again = await MttTestClient.open(port, '/mtt/gone', 'smux_off');
    assert.equal(again.status, 404);
    c.close();
    await c.whenClosed();
  });

  it('mtt mode only on mtt users\' paths: an unknown path gets the decoy even when offering smux_off; no offer means a polytun upgrade', async () => {
    const unknown = await MttTestClient.open(port, '/mtt/nobody', 'smux_off');
    assert.equal(unknown.status, 404);
    const r = await fetch(`http://127.0.0.1:${gw.controllerPort}/`, { method: 'POST', body: '{"opt":9}' });
    assert.equal(await r.text(), '{"res":1,"current_users":3}');
    // Without an offer the upgrade is a polytun one: 101, no subprotocol, and a polytun handshake is expected.
    const polytunStyle = await MttTestClient.open(port, '/mtt/one', undefined);
    assert.equal(polytunStyle.status, 101);
    assert.equal(polytunStyle.protocol, undefined);
    polytunStyle.socket.destroy();
  });

  it('an admin marks a user mtt-compatible with `mtt: true`; without it, the same path refuses mtt-clients', async () => {
    const dst = `127.0.0.1:${echo.port}`;
    const on = await api(gw, 'POST', '/api/users', { name: 'adm-mtt', kind: 'token', wssPath: '/adm/on', dst, mtt: true });
    assert.equal(on.status, 201, JSON.stringify(on.body));
    assert.equal((on.body.user as { mtt: boolean }).mtt, true);
    const off = await api(gw, 'POST', '/api/users', { name: 'adm-plain', kind: 'token', wssPath: '/adm/off', dst });
    assert.equal((off.body.user as { mtt: boolean }).mtt, false);
    const c = await MttTestClient.open(port, '/adm/on', 'smux_off');
    c.send(Buffer.from('admin-made'));
    assert.equal((await c.read(10)).toString(), 'admin-made');
    c.close();
    assert.equal((await MttTestClient.open(port, '/adm/off', 'smux_off')).status, 404);
    // Switched on later: the next upgrade is served.
    const id = (off.body.user as { id: string }).id;
    assert.equal((await api(gw, 'PATCH', `/api/users/${id}`, { mtt: true })).status, 200);
    const later = await eventuallyOpen('/adm/off');
    later.send(Buffer.from('now'));
    assert.equal((await later.read(3)).toString(), 'now');
    later.close();
  });

  /** The cache follows the store a moment after a change: retry the upgrade until it is served. */
  async function eventuallyOpen(path: string): Promise<MttTestClient> {
    for (let i = 0; ; i++) {
      const c = await MttTestClient.open(port, path, 'smux_off');
      if (c.status === 101 || i >= 50) return c;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
