import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  Socks5Error,
  Socks5Method,
  Socks5Reply,
  Socks5ServerParser,
  decodeUdpDatagram,
  encodeAuthReply,
  encodeMethodSelection,
  encodeReply,
  encodeUdpDatagram,
  encodeUdpHeader,
  socks5ErrorReply,
} from '../../../src/client/socks5-codec.js';
import type { Socks5Event, Socks5ParserInit } from '../../../src/client/socks5-codec.js';
import { encodeDestination, makeDestination } from '../../../src/core/address.js';
import type { Destination } from '../../../src/core/address.js';
import { ClosedError, ProtocolError } from '../../../src/core/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

interface Outcome {
  events: Socks5Event[];
  replies: string[];
  /** Remainder of the request event followed by everything fed after it. */
  tail: Buffer;
  error: unknown;
}

/**
 * Plays the server: feeds chunks, answers each event the way a front would
 * (userPass when offered, else noAuth, else no acceptable method).
 */
function drive(chunks: Buffer[], opts: { authOk?: boolean; init?: Socks5ParserInit } = {}): Outcome {
  const p = new Socks5ServerParser(opts.init);
  const out: Outcome = { events: [], replies: [], tail: Buffer.alloc(0), error: undefined };
  const after: Buffer[] = [];
  try {
    for (const chunk of chunks) {
      if (p.state === 'done') {
        after.push(chunk);
        continue;
      }
      let ev = p.push(chunk);
      while (ev) {
        out.events.push(ev);
        if (ev.type === 'greeting') {
          const m = ev.methods.includes(2) ? 2 : ev.methods.includes(0) ? 0 : 0xff;
          out.replies.push(p.selectMethod(m).toString('hex'));
          ev = p.resume();
        } else if (ev.type === 'auth') {
          out.replies.push(p.authResult(opts.authOk ?? true).toString('hex'));
          ev = p.resume();
        } else {
          after.unshift(ev.remainder);
          ev = null;
        }
      }
    }
  } catch (err) {
    out.error = err;
  }
  out.tail = Buffer.concat(after);
  // Normalize for comparison: the remainder is checked through `tail`.
  out.events = out.events.map((e) => (e.type === 'request' ? { ...e, remainder: Buffer.alloc(0) } : e));
  return out;
}

function bytewise(buf: Buffer): Buffer[] {
  return [...buf].map((b) => Buffer.from([b]));
}

function socksError(err: unknown): Socks5Error {
  assert.ok(err instanceof Socks5Error, `expected Socks5Error, got ${String(err)}`);
  assert.ok(err instanceof ProtocolError);
  assert.equal(err.code, 'ERR_PROTOCOL');
  return err;
}

describe('SOCKS5 handshake fixtures', () => {
  test('no-auth greeting + domain CONNECT', () => {
    const o = drive([hex('050100'), hex('05010003 0b 6578616d706c652e636f6d 01bb')]);
    assert.equal(o.error, undefined);
    assert.deepEqual(o.events, [
      { type: 'greeting', methods: [0] },
      { type: 'request', cmd: 'connect', dest: { host: 'example.com', port: 443, kind: 'domain' }, remainder: Buffer.alloc(0) },
    ]);
    assert.deepEqual(o.replies, ['0500']);
  });

  test('user/pass greeting, RFC 1929 auth, IPv4 CONNECT', () => {
    const o = drive([hex('05020002'), hex('01 04 75736572 04 70617373'), hex('05010001 7f000001 0050')]);
    assert.equal(o.error, undefined);
    assert.deepEqual(o.events.slice(0, 2), [
      { type: 'greeting', methods: [0, 2] },
      { type: 'auth', username: 'user', password: 'pass' },
    ]);
    assert.deepEqual(o.events[2], { type: 'request', cmd: 'connect', dest: { host: '127.0.0.1', port: 80, kind: 'ipv4' }, remainder: Buffer.alloc(0) });
    assert.deepEqual(o.replies, ['0502', '0100']);
  });

  test('empty password is accepted (curl sends PLEN 0 for "user:")', () => {
    const o = drive([hex('050102 01 01 61 00')]);
    assert.deepEqual(o.events[1], { type: 'auth', username: 'a', password: '' });
  });

  test('IPv6 CONNECT, UDP ASSOCIATE, BIND and unknown commands', () => {
    const cases: [string, Socks5Event & { type: 'request' }][] = [
      ['05010004 00000000000000000000000000000001 1f90', { type: 'request', cmd: 'connect', dest: { host: '::1', port: 8080, kind: 'ipv6' }, remainder: Buffer.alloc(0) }],
      ['05030001 00000000 0000', { type: 'request', cmd: 'udp-associate', dest: { host: '0.0.0.0', port: 0, kind: 'ipv4' }, remainder: Buffer.alloc(0) }],
      ['05020001 0a000001 0016', { type: 'request', cmd: 'bind', dest: { host: '10.0.0.1', port: 22, kind: 'ipv4' }, remainder: Buffer.alloc(0) }],
      ['05090001 0a000001 0016', { type: 'request', cmd: 9, dest: { host: '10.0.0.1', port: 22, kind: 'ipv4' }, remainder: Buffer.alloc(0) }],
    ];
    for (const [h, want] of cases) assert.deepEqual(drive([hex('050100'), hex(h)]).events[1], want, h);
  });

  test('UDP ASSOCIATE accepts any address form: PySocks sends the domain "0"', () => {
    // RFC 1928 §7 lets the server ignore the address; refusing it as unreachable broke PySocks.
    const o = drive([hex('050100'), hex('05030003 01 30 0000')]);
    assert.equal(o.error, undefined);
    assert.deepEqual(o.events[1], { type: 'request', cmd: 'udp-associate', dest: { host: '0.0.0.0', port: 0, kind: 'ipv4' }, remainder: Buffer.alloc(0) });
    // CONNECT to the same unusable name is still refused.
    assert.notEqual(drive([hex('050100'), hex('05010003 01 30 0050')]).error, undefined);
  });

  test('data pipelined after CONNECT is kept, in one chunk and byte by byte', () => {
    const wire = hex('050100 05010001 7f000001 0050 deadbeef');
    for (const chunks of [[wire], bytewise(wire)]) {
      const o = drive(chunks);
      assert.equal(o.error, undefined);
      assert.equal(o.tail.toString('hex'), 'deadbeef');
    }
    // The remainder itself (not the driver's later chunks) carries it when sent at once.
    const p = new Socks5ServerParser();
    assert.equal(p.push(wire)?.type, 'greeting');
    p.selectMethod(Socks5Method.noAuth);
    const ev = p.resume();
    assert.equal(ev?.type, 'request');
    assert.equal(ev.type === 'request' && ev.remainder.toString('hex'), 'deadbeef');
  });

  test('a large pipelined chunk after the request is not a limit violation', () => {
    const big = Buffer.alloc(64 * 1024, 7);
    const o = drive([Buffer.concat([hex('050100 05010001 7f000001 0050'), big])]);
    assert.equal(o.error, undefined);
    assert.deepEqual(o.tail, big);
  });

  test('the parser waits for the decision before parsing pipelined messages', () => {
    const p = new Socks5ServerParser();
    assert.equal(p.push(hex('050102 01 01 61 01 62 05010001 7f000001 0050'))?.type, 'greeting');
    assert.equal(p.state, 'await-method');
    assert.equal(p.resume(), null);
    assert.deepEqual(p.selectMethod(Socks5Method.userPass), hex('0502'));
    assert.deepEqual(p.resume(), { type: 'auth', username: 'a', password: 'b' });
    assert.equal(p.resume(), null, 'request must wait for authResult');
    assert.deepEqual(p.authResult(true), hex('0100'));
    assert.equal(p.resume()?.type, 'request');
    assert.equal(p.state, 'done');
    assert.throws(() => p.push(hex('00')), ClosedError);
  });

  test('no acceptable method / failed auth close the parser', () => {
    const o = drive([hex('050101'), hex('05010001 7f000001 0050')]);
    assert.deepEqual(o.replies, ['05ff']);
    assert.equal(o.events.length, 1);
    const a = drive([hex('050102'), hex('01 01 61 01 62'), hex('05010001 7f000001 0050')], { authOk: false });
    assert.deepEqual(a.replies, ['0502', '0101']);
    assert.equal(a.events.length, 2);
  });

  test('decision misuse is a ProtocolError', () => {
    const p = new Socks5ServerParser();
    assert.throws(() => p.selectMethod(0), ProtocolError);
    p.push(hex('050100'));
    assert.throws(() => p.selectMethod(Socks5Method.userPass), ProtocolError); // not offered
    assert.throws(() => p.authResult(true), ProtocolError);
  });
});

describe('SOCKS5 errors', () => {
  function fail(chunks: Buffer[], init?: Socks5ParserInit): Socks5Error {
    return socksError(drive(chunks, init ? { init } : {}).error);
  }

  test('wrong greeting version: no reply, just close (fails on the first byte)', () => {
    const e = fail([hex('04')]);
    assert.equal(e.stage, 'greeting');
    assert.equal(e.canReply, false);
    assert.equal(socks5ErrorReply(e), null);
  });

  test('greeting with no methods → method 0xFF', () => {
    const e = fail([hex('0500')]);
    assert.equal(e.canReply, true);
    assert.deepEqual(socks5ErrorReply(e), hex('05ff'));
  });

  test('auth errors', () => {
    const v = fail([hex('050102'), hex('05 01 61 01 62')]);
    assert.equal(v.stage, 'auth');
    assert.equal(socks5ErrorReply(v), null);
    const u = fail([hex('050102'), hex('01 00 01 62')]);
    assert.deepEqual(socks5ErrorReply(u), hex('0101'));
    const utf = fail([hex('050102'), hex('01 01 ff 01 62')]);
    assert.deepEqual(socks5ErrorReply(utf), hex('0101'));
  });

  test('request errors carry the reply code', () => {
    const cases: [string, number, string | null][] = [
      ['05010002 7f000001 0050', Socks5Reply.addressTypeNotSupported, '05080001000000000000'],
      ['05010103 7f000001 0050', Socks5Reply.generalFailure, '05010001000000000000'],
      ['04010001 7f000001 0050', Socks5Reply.generalFailure, null],
      ['05010003 00 0050', Socks5Reply.hostUnreachable, '05040001000000000000'],
      ['05010003 03 610062 0050', Socks5Reply.hostUnreachable, '05040001000000000000'],
    ];
    for (const [h, code, reply] of cases) {
      const e = fail([hex('050100'), hex(h)]);
      assert.equal(e.stage, 'request', h);
      assert.equal(e.replyCode, code, h);
      assert.equal(socks5ErrorReply(e)?.toString('hex') ?? null, reply, h);
    }
  });

  test('more than 1 KiB while waiting for a decision → generalFailure', () => {
    const p = new Socks5ServerParser();
    p.push(hex('050100'));
    p.push(Buffer.alloc(1000));
    const e = socksError(captured(() => p.push(Buffer.alloc(25))));
    assert.equal(e.replyCode, Socks5Reply.generalFailure);
    assert.deepEqual(socks5ErrorReply(e), hex('05ff'));
    assert.equal(p.state, 'failed');
    assert.equal(captured(() => p.push(hex('00'))), e, 'the error sticks');

    const q = new Socks5ServerParser();
    q.push(hex('050102'));
    q.selectMethod(Socks5Method.userPass);
    q.push(hex('01 01 61 01 62'));
    const ea = socksError(captured(() => q.push(Buffer.alloc(1025))));
    assert.equal(ea.stage, 'auth');
    assert.equal(ea.replyCode, Socks5Reply.generalFailure);
  });

  test('an incomplete message beyond maxBuffered → generalFailure', () => {
    const e = fail([hex('050100'), hex('05010003 ff'), Buffer.alloc(20, 0x61)], { maxBuffered: 16 });
    assert.equal(e.stage, 'request');
    assert.deepEqual(socks5ErrorReply(e), hex('05010001000000000000'));
  });
});

function captured(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected a throw');
}

describe('SOCKS5 encoders', () => {
  test('fixtures', () => {
    assert.deepEqual(encodeMethodSelection(Socks5Method.noAuth), hex('0500'));
    assert.deepEqual(encodeMethodSelection(Socks5Method.noAcceptable), hex('05ff'));
    assert.deepEqual(encodeAuthReply(true), hex('0100'));
    assert.deepEqual(encodeAuthReply(false), hex('0101'));
    assert.deepEqual(encodeReply(Socks5Reply.succeeded, makeDestination('10.0.0.1', 1080)), hex('050000 01 0a000001 0438'));
    assert.deepEqual(encodeReply(Socks5Reply.connectionRefused, makeDestination('::1', 1)), hex('050500 04 00000000000000000000000000000001 0001'));
    assert.deepEqual(encodeReply(Socks5Reply.notAllowed), hex('050200 01 00000000 0000'));
    assert.equal(Socks5Reply.ttlExpired, 6);
    assert.equal(Socks5Reply.networkUnreachable, 3);
    assert.equal(Socks5Reply.commandNotSupported, 7);
  });
});

describe('SOCKS5 UDP datagrams', () => {
  test('decode fixture', () => {
    const d = decodeUdpDatagram(hex('0000 00 01 7f000001 0035 68656c6c6f'));
    assert.equal(d.frag, 0);
    assert.deepEqual(d.dest, { host: '127.0.0.1', port: 53, kind: 'ipv4' });
    assert.equal(d.payload.toString(), 'hello');
  });

  test('encode fixture and header + payload equals the whole datagram', () => {
    const dest = makeDestination('example.com', 53);
    const whole = encodeUdpDatagram(dest, Buffer.from('hi'));
    assert.deepEqual(whole, hex('0000 00 03 0b 6578616d706c652e636f6d 0035 6869'));
    assert.deepEqual(Buffer.concat([encodeUdpHeader(dest), Buffer.from('hi')]), whole);
    assert.deepEqual(decodeUdpDatagram(whole).dest, dest);
  });

  test('fragments, bad reserved bytes and truncation are typed errors', () => {
    for (const h of ['0000 01 01 7f000001 0035 00', '0100 00 01 7f000001 0035', '0000', '0000 00 01 7f00', '0000 00 09 7f000001 0035']) {
      const e = socksError(captured(() => decodeUdpDatagram(hex(h))));
      assert.equal(e.stage, 'udp');
      assert.equal(e.canReply, false);
    }
  });

  test('random datagrams only raise Socks5Error; valid ones round-trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        try {
          const d = decodeUdpDatagram(Buffer.from(bytes));
          assert.deepEqual(decodeUdpDatagram(encodeUdpDatagram(d.dest, d.payload)).payload, d.payload);
        } catch (err) {
          socksError(err);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

// ---- property tests over whole handshakes ----

const arbDest: fc.Arbitrary<Destination> = fc
  .tuple(
    fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain().filter((d) => d.length <= 255)),
    fc.integer({ min: 0, max: 65535 }),
  )
  .map(([h, port]) => makeDestination(h, port));

const arbHandshake = fc
  .record({
    methods: fc.uniqueArray(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 255 }),
    auth: fc.boolean(),
    user: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 255 }),
    pass: fc.string({ unit: 'grapheme-ascii', maxLength: 255 }),
    cmd: fc.integer({ min: 1, max: 3 }),
    dest: arbDest,
    data: fc.uint8Array({ maxLength: 64 }),
  })
  .map((h) => {
    const methods = h.methods.filter((m) => m !== 0 && m !== 2).concat(h.auth ? [2] : [0]);
    const parts: Buffer[] = [Buffer.from([5, methods.length, ...methods])];
    if (h.auth) parts.push(Buffer.from([1, h.user.length]), Buffer.from(h.user), Buffer.from([h.pass.length]), Buffer.from(h.pass));
    parts.push(Buffer.from([5, h.cmd, 0]), encodeDestination(h.dest), Buffer.from(h.data));
    return { wire: Buffer.concat(parts), h, methods };
  });

/** Splits `buf` at the given cut points (any order, duplicates allowed). */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

describe('SOCKS5 parser properties', () => {
  test('valid handshakes parse to the expected events, however they are chunked', () => {
    fc.assert(
      fc.property(arbHandshake, fc.array(fc.nat(), { maxLength: 20 }), ({ wire, h, methods }, cuts) => {
        const whole = drive([wire]);
        assert.equal(whole.error, undefined);
        assert.deepEqual(whole.events[0], { type: 'greeting', methods });
        const req = whole.events[whole.events.length - 1];
        assert.ok(req?.type === 'request');
        assert.deepEqual(req.dest, h.dest);
        assert.deepEqual(whole.tail, Buffer.from(h.data));
        if (h.auth) assert.deepEqual(whole.events[1], { type: 'auth', username: h.user, password: h.pass });
        assert.deepEqual(drive(split(wire, cuts)), whole);
        assert.deepEqual(drive(bytewise(wire)), whole);
      }),
      { numRuns: 300 },
    );
  });

  test('random bytes and mutated handshakes only raise Socks5Error, identically for any chunking', () => {
    const mutated = fc
      .tuple(arbHandshake, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
      .map(([{ wire }, muts]) => {
        const w = Buffer.from(wire);
        for (const [at, v] of muts) w[at % w.length] = v;
        return w;
      });
    const input = fc.oneof(mutated, fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)));
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 20 }), (wire, cuts) => {
        const whole = drive([wire]);
        if (whole.error !== undefined) socksError(whole.error);
        const pieces = drive(split(wire, cuts));
        const bytes = drive(bytewise(wire));
        assert.deepEqual(pieces.events, whole.events);
        assert.deepEqual(bytes.events, whole.events);
        assert.deepEqual(bytes.replies, whole.replies);
        assert.equal((bytes.error as Error | undefined)?.message, (whole.error as Error | undefined)?.message);
        assert.equal((pieces.error as Error | undefined)?.message, (whole.error as Error | undefined)?.message);
      }),
      { numRuns: 1000 },
    );
  });
});
