import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { ProtocolError } from '../../../src/core/errors.js';
import { WsCarrier } from '../../../src/carriers/ws.js';
import { WsServer } from '../../../src/carriers/ws-server.js';
import type { StreamConn } from '../../../src/carriers/types.js';
import {
  FrameReader,
  OP_BINARY,
  OP_CLOSE,
  OP_CONTINUATION,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  acceptKey,
  applyMask,
  frameHeader,
  maskedCopy,
} from '../../../src/carriers/ws-frames.js';
import { readAll, sha256, within } from '../../helpers/byte-streams.js';

interface Seen {
  data: Buffer[];
  ends: number[];
  controls: [number, string][];
}

function reader(fromClient: boolean, maxFrame?: number): { r: FrameReader; seen: Seen } {
  const seen: Seen = { data: [], ends: [], controls: [] };
  const r = new FrameReader(
    fromClient,
    {
      data: (s) => seen.data.push(Buffer.from(s)),
      messageEnd: (n) => seen.ends.push(n),
      control: (op, p) => seen.controls.push([op, p.toString('latin1')]),
    },
    maxFrame,
  );
  return { r, seen };
}

/** A whole frame as a peer would send it (masked with `mask` when given). */
function frame(op: number, payload: Buffer, opts: { fin?: boolean; mask?: Buffer; rsv?: number } = {}): Buffer {
  const h = frameHeader(op, opts.fin ?? true, payload.length, opts.mask ?? null);
  if (opts.rsv) h[0] = (h[0] as number) | opts.rsv;
  return Buffer.concat([h, opts.mask ? maskedCopy(payload, opts.mask) : payload]);
}

describe('ws-frames', () => {
  it('Sec-WebSocket-Accept matches RFC 6455 §1.3', () => {
    assert.equal(acceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('headers use the 7-bit, 16-bit and 64-bit length forms at their boundaries', () => {
    for (const [len, size] of [
      [0, 2],
      [125, 2],
      [126, 4],
      [65535, 4],
      [65536, 10],
      [2 ** 32 + 5, 10],
    ] as const) {
      const h = frameHeader(OP_BINARY, true, len, null);
      assert.equal(h.length, size, `length ${len}`);
      assert.equal(frameHeader(OP_BINARY, true, len, Buffer.alloc(4, 1)).length, size + 4);
    }
    assert.equal(frameHeader(OP_BINARY, true, 2 ** 32 + 5, null).readUInt32BE(2), 1);
    assert.equal(frameHeader(OP_BINARY, true, 2 ** 32 + 5, null).readUInt32BE(6), 5);
  });

  it('streams payload fed in pieces of every size, unmasking across the splits', () => {
    const mask = randomBytes(4);
    const payloads = [randomBytes(3), randomBytes(200), randomBytes(70_000), Buffer.alloc(0)];
    const wire = Buffer.concat([...payloads.map((p) => frame(OP_BINARY, p, { mask })), frame(OP_PING, Buffer.from('hi'), { mask })]);
    for (const step of [1, 2, 3, 7, 13, 4096, wire.length]) {
      const { r, seen } = reader(true);
      const copy = Buffer.from(wire); // unmasking happens in place
      for (let at = 0; at < copy.length; at += step) r.push(copy.subarray(at, at + step));
      assert.deepEqual(Buffer.concat(seen.data), Buffer.concat(payloads), `step ${step}`);
      assert.deepEqual(seen.ends, [3, 200, 70_000, 0]);
      assert.deepEqual(seen.controls, [[OP_PING, 'hi']]);
    }
  });

  it('applyMask continues the mask phase where the last piece stopped', () => {
    const mask = randomBytes(4);
    const data = randomBytes(1000);
    const whole = maskedCopy(data, mask);
    const pieces = Buffer.from(data);
    let phase = 0;
    for (const [a, b] of [
      [0, 1],
      [1, 6],
      [6, 500],
      [500, 1000],
    ] as const)
      phase = applyMask(pieces, a, b, mask, phase);
    assert.deepEqual(pieces, whole);
  });

  it('a fragmented message counts as one; an empty final continuation is not an end of stream', () => {
    const { r, seen } = reader(false);
    r.push(Buffer.concat([frame(OP_BINARY, Buffer.from('ab'), { fin: false }), frame(OP_PONG, Buffer.alloc(0)), frame(OP_CONTINUATION, Buffer.alloc(0))]));
    assert.deepEqual(seen.ends, [2]);
    assert.deepEqual(seen.controls, [[OP_PONG, '']]);
  });

  it('refuses what RFC 6455 forbids, each with a ProtocolError naming it', () => {
    const m = Buffer.from([1, 2, 3, 4]);
    const cases: [string, boolean, Buffer, RegExp][] = [
      ['RSV bit', true, frame(OP_BINARY, Buffer.from('x'), { mask: m, rsv: 0x40 }), /RSV/],
      ['unmasked from a client', true, frame(OP_BINARY, Buffer.from('x')), /unmasked/],
      ['masked from a server', false, frame(OP_BINARY, Buffer.from('x'), { mask: m }), /masked frame from a server/],
      ['text', false, frame(OP_TEXT, Buffer.from('x')), /text/],
      ['unknown opcode', false, frame(0x3, Buffer.from('x')), /opcode 3/],
      ['long control', false, frame(OP_PING, Buffer.alloc(126)), /125/],
      ['fragmented control', false, frame(OP_CLOSE, Buffer.alloc(2), { fin: false }), /fragmented control/],
      ['stray continuation', false, frame(OP_CONTINUATION, Buffer.from('x')), /continuation/],
      ['message inside a message', false, Buffer.concat([frame(OP_BINARY, Buffer.from('a'), { fin: false }), frame(OP_BINARY, Buffer.from('b'))]), /inside/],
      ['length over 2^53', false, Buffer.from([0x82, 127, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), /2\^53/],
    ];
    for (const [name, fromClient, wire, why] of cases) {
      const { r } = reader(fromClient);
      assert.throws(() => r.push(wire), (e: unknown) => e instanceof ProtocolError && why.test(e.message), name);
    }
    const { r } = reader(false, 1024);
    assert.throws(() => r.push(frame(OP_BINARY, Buffer.alloc(1025))), /over the 1024-byte limit/);
  });

  it('fuzz: random bytes and mutated frames end in data or a ProtocolError, never another throw', () => {
    const valid = Buffer.concat([frame(OP_BINARY, randomBytes(300), { mask: randomBytes(4) }), frame(OP_PING, Buffer.from('p'), { mask: randomBytes(4) })]);
    for (let i = 0; i < 3000; i++) {
      let wire: Buffer;
      if (i % 2 === 0) wire = randomBytes(1 + (i % 64));
      else {
        wire = Buffer.from(valid);
        for (let k = 0; k < 1 + (i % 4); k++) wire[Math.floor(Math.random() * wire.length)] = Math.floor(Math.random() * 256);
      }
      const { r } = reader(i % 3 !== 0);
      try {
        for (let at = 0; at < wire.length; at += 1 + (i % 17)) r.push(wire.subarray(at, at + 1 + (i % 17)));
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `iteration ${i}: ${String(e)}`);
      }
    }
  });
});

describe('ws interop with the ws package', () => {
  it('our client streams both ways through a stock ws server echoing each message', async (t) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await once(wss, 'listening');
    t.after(
      () =>
        new Promise<void>((r) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => r());
        }),
    );
    wss.on('connection', (ws) => ws.on('message', (m: Buffer, binary) => ws.send(m, { binary })));
    const { port } = wss.address() as { port: number };
    const conn = await new WsCarrier({ tls: false, path: '/echo' }).dial({ host: '127.0.0.1', port });
    conn.stream.on('error', () => undefined); // the server's teardown may reset it first
    t.after(() => conn.stream.destroy());
    const data = randomBytes(3 << 20);
    const got: Buffer[] = [];
    let n = 0;
    const all = new Promise<void>((r) =>
      conn.stream.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n >= data.length) r();
      }),
    );
    conn.stream.write(data);
    await within(all, 20_000, 'echo');
    assert.equal(sha256(Buffer.concat(got)), sha256(data));
  });

  it('our server takes a stock ws client: fragmented messages and pings arrive as one byte stream, an empty message ends it', async (t) => {
    let server: StreamConn | undefined;
    const l = await new WsServer({ route: () => ({ accept: true }) }).listen({ host: '127.0.0.1', port: 0 }, (c) => (server = c));
    t.after(() => l.close());
    const ws = new WebSocket(`ws://127.0.0.1:${l.address.port}/x`, { perMessageDeflate: false });
    t.after(() => ws.terminate());
    await once(ws, 'open');
    while (server === undefined) await new Promise((r) => setImmediate(r));
    server.stream.on('error', () => undefined); // terminate() at the end resets it
    const body = readAll(server.stream);
    ws.send(Buffer.from('frag'), { binary: true, fin: false });
    ws.ping('are you there');
    ws.send(Buffer.from('mented'), { binary: true, fin: true });
    const pong = once(ws, 'pong');
    ws.send(Buffer.alloc(0), { binary: true }); // our end-of-stream
    assert.equal((await within(body, 20_000, 'stream end')).toString(), 'fragmented');
    assert.equal(String((await pong)[0]), 'are you there');
  });
});
