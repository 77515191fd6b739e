/**
 * The mtt-mu-server compatible controller: command semantics through
 * `execute` against a real SQLite store, and the HTTP behaviour (methods,
 * paths, the 2 MiB cap) over real loopback HTTP.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import { MTT_MAX_BODY, MttController } from '../../../src/admin/controller.js';
import { nameForPath } from '../../../src/admin/mtt-apply.js';
import type { MuResult } from '../../../src/admin/mtt-command.js';
import { tempStore } from './helpers.js';
import { controllerSequence } from './mtt-fixtures.js';

async function setup(t: TestContext) {
  const { store } = await tempStore(t);
  const ctl = new MttController({ store });
  t.after(() => ctl.close());
  const run = (cmd: unknown) => ctl.execute(typeof cmd === 'string' ? cmd : JSON.stringify(cmd));
  return { store, ctl, run };
}

/** One HTTP exchange with the controller on loopback; the body is streamed in 64 KiB pieces. */
function http(port: number, method: string, path: string, body?: Buffer): Promise<{ status: number; type: string | undefined; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false, headers: body === undefined ? {} : { 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body === undefined) {
      req.end();
      return;
    }
    let off = 0;
    const pump = (): void => {
      while (off < body.length) {
        const piece = body.subarray(off, off + 65536);
        off += piece.length;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** A valid ping command padded with spaces to exactly `size` bytes. */
function paddedPing(size: number): Buffer {
  const cmd = Buffer.from('{"opt":9}');
  return Buffer.concat([cmd, Buffer.alloc(size - cmd.length, 0x20)]);
}

describe('mtt controller: commands', () => {
  it('a fresh controller pings 0 whatever the store holds; add creates a token user per path with its dst', async (t) => {
    const { run, store } = await setup(t);
    await store.createUser({ name: 'default' }); // what a fresh polytun creates itself: not mtt's to count
    assert.deepEqual(await run({ opt: 9 }), { res: 1 });
    const r = await run({ opt: 1, args_bunch: [{ path: '/path_1', dst: '127.0.0.1:10001' }, { path: '/path_2', dst: '[::1]:10002' }] });
    assert.deepEqual(r, { res: 1 });
    const u = await store.findByPath('/path_1', { withSecret: true });
    assert.equal(u?.kind, 'token');
    assert.equal(u?.dst, '127.0.0.1:10001');
    assert.equal(u?.name, 'mtt:/path_1');
    assert.equal(typeof u?.secret, 'string');
    assert.equal((await store.findByPath('/path_2'))?.dst, '[::1]:10002');
    assert.deepEqual(await run({ opt: 9 }), { res: 1, current_users: 2 });
  });

  it('after a restart (a new controller on the same store) ping says 0 until the panel pushes again; users stay served', async (t) => {
    const { store } = await tempStore(t);
    const first = new MttController({ store });
    await first.execute(JSON.stringify({ opt: 1, args_bunch: [{ path: '/keep', dst: '127.0.0.1:1' }] }));
    await first.close();
    const second = new MttController({ store });
    t.after(() => second.close());
    assert.deepEqual(await second.execute('{"opt":9}'), { res: 1 });
    assert.equal((await store.findByPath('/keep'))?.dst, '127.0.0.1:1');
    await second.execute(JSON.stringify({ opt: 1, args_bunch: [{ path: '/keep', dst: '127.0.0.1:2' }] }));
    assert.deepEqual(await second.execute('{"opt":9}'), { res: 1, current_users: 1 });
    assert.equal((await store.findByPath('/keep'))?.dst, '127.0.0.1:2');
  });

  it('opt 1 on a known path overwrites its dst and keeps the user and its token; within a batch the last entry wins', async (t) => {
    const { run, store } = await setup(t);
    await run({ opt: 1, args_bunch: [{ path: '/p', dst: '127.0.0.1:1' }] });
    const before = await store.findByPath('/p', { withSecret: true });
    const r = await run({ opt: 1, args_bunch: [{ path: '/p', dst: '127.0.0.1:2' }, { path: '/q', dst: 'a.example:3' }, { path: '/p', dst: '127.0.0.1:4' }] });
    assert.deepEqual(r, { res: 1 });
    const after = await store.findByPath('/p', { withSecret: true });
    assert.equal(after?.id, before?.id);
    assert.equal(after?.secret, before?.secret);
    assert.equal(after?.dst, '127.0.0.1:4');
    assert.deepEqual(await run({ opt: 9 }), { res: 1, current_users: 2 });
  });

  it('opt 2 deletes the given paths and ignores unknown ones; opt 3 deletes the controller\'s users only', async (t) => {
    const { run, store } = await setup(t);
    await run({ opt: 1, args_bunch: [{ path: '/a', dst: 'h.example:1' }, { path: '/b', dst: 'h.example:2' }, { path: '/c', dst: 'h.example:3' }] });
    const r = await run({ opt: 2, args_bunch: [{ path: '/a' }, { path: '/nope' }, { path: '/c', dst: 'ignored' }] });
    assert.deepEqual(r, { res: 1 });
    assert.equal(await store.findByPath('/a'), undefined);
    assert.notEqual(await store.findByPath('/b'), undefined);
    assert.deepEqual(await run({ opt: 9 }), { res: 1, current_users: 1 });
    await store.createUser({ name: 'admin-made' });
    assert.deepEqual(await run({ opt: 3 }), { res: 1 });
    assert.equal(await store.findByPath('/b'), undefined);
    assert.deepEqual((await store.listUsers()).map((u) => u.name), ['admin-made']);
    assert.deepEqual(await run({ opt: 9 }), { res: 1 });
  });

  it('answers bad commands as mtt does: empty args, invalid opt, and nothing at all when Go cannot unmarshal', async (t) => {
    const { run, store } = await setup(t);
    const cases: [unknown, MuResult | undefined][] = [
      ['{"opt":1,', undefined],
      ['', undefined],
      ['[1,2]', undefined],
      ['{"opt":9} trailing', undefined],
      ['{"opt":3.0}', undefined], // Go refuses a fraction for an int field: no reset happens
      ['{"opt":1e0}', undefined],
      [{ opt: '1' }, undefined],
      ['{"opt":9223372036854775808}', undefined],
      [{ opt: 1, args_bunch: {} }, undefined],
      [{ opt: 1, args_bunch: [7] }, undefined],
      [{ opt: 1, args_bunch: [{ path: 7, dst: '127.0.0.1:1' }] }, undefined],
      ['null', { res: 2, err_string: 'invalid opt' }],
      [{}, { res: 2, err_string: 'invalid opt' }],
      [{ opt: 5 }, { res: 2, err_string: 'invalid opt' }],
      [{ opt: 1 }, { res: 2, err_string: 'empty args' }],
      [{ opt: 2, args_bunch: [] }, { res: 2, err_string: 'empty args' }],
      [{ opt: 1, args_bunch: null }, { res: 2, err_string: 'empty args' }],
    ];
    await store.createUser({ name: 'admin-made' });
    for (const [cmd, want] of cases) assert.deepEqual(await run(cmd), want, JSON.stringify(cmd));
    assert.equal(await store.count(), 1, 'nothing was applied');
  });

  it('accepts what mtt accepts: entries it cannot serve are answered res 1 and counted, but not served', async (t) => {
    const { run, store } = await setup(t);
    await run({ opt: 1, args_bunch: [{ path: '/y', dst: '127.0.0.1:2' }] });
    // A dst-less add takes /y out of service (mtt would keep it and fail every dial); 'no-slash' cannot be a request path.
    const r = await run({ opt: 1, args_bunch: [{ path: '/y' }, { path: 'no-slash', dst: '127.0.0.1:2' }, { path: '/z', dst: 'host-without-port' }, null] });
    assert.deepEqual(r, { res: 1 });
    assert.equal(await store.findByPath('/y'), undefined);
    assert.equal(await store.findByPath('/z'), undefined);
    assert.equal(await store.count(), 0);
    assert.deepEqual(await run({ opt: 9 }), { res: 1, current_users: 4 }, "mtt's table: /y, no-slash, /z and ''");
  });

  it('decodes like Go: keys match case-insensitively, unknown keys are ignored, null keeps the zero value', async (t) => {
    const { run, store } = await setup(t);
    const r = await run({ OPT: 1, Args_Bunch: [{ PATH: '/g', Dst: '127.0.0.1:9', extra: true }], comment: 'x', opt: null });
    assert.deepEqual(r, { res: 1 });
    assert.equal((await store.findByPath('/g'))?.dst, '127.0.0.1:9');
  });

  it('a path whose user name is taken elsewhere still gets a user; long paths get a digest name', async (t) => {
    const { run, store } = await setup(t);
    await store.createUser({ name: nameForPath('/taken') });
    const long = `/${'x'.repeat(200)}`;
    assert.deepEqual(await run({ opt: 1, args_bunch: [{ path: '/taken', dst: 'h.example:1' }, { path: long, dst: 'h.example:2' }] }), { res: 1 });
    assert.match((await store.findByPath('/taken'))?.name ?? '', /^mtt:\/taken~[0-9a-f]{8}$/);
    assert.match((await store.findByPath(long))?.name ?? '', /^mtt:sha256:[0-9a-f]{32}$/);
  });

  it('runs commands one at a time in arrival order', async (t) => {
    const { run, store } = await setup(t);
    const add = { opt: 1, args_bunch: [{ path: '/r', dst: 'h.example:1' }] };
    const ping = { opt: 9 };
    const [, , a, , b] = await Promise.all([run(add), run({ opt: 3 }), run(ping), run(add), run(ping)]);
    assert.deepEqual([a, b], [{ res: 1 }, { res: 1, current_users: 1 }]);
    assert.notEqual(await store.findByPath('/r'), undefined);
  });
});

describe('mtt controller: HTTP', () => {
  it('answers the issue-19 sequence with the raw bytes mtt sends', async (t) => {
    const { ctl, store } = await setup(t);
    await store.createUser({ name: 'default' });
    const { port } = await ctl.listen(0);
    for (const step of controllerSequence('127.0.0.1:10001')) {
      const body = step.method === 'GET' ? undefined : Buffer.from(step.body);
      const r = await http(port, step.method, '/any/path?x=1', body);
      assert.equal(r.status, 200, step.what);
      assert.equal(r.text, step.reply, step.what);
      // Go sniffs a written body as text/plain and sets no type on an empty one.
      assert.equal(r.type, step.reply === '' ? undefined : 'text/plain; charset=utf-8', step.what);
    }
    assert.deepEqual((await store.listUsers()).map((u) => u.name), ['default'], 'reset left the admin-made user alone');
  });

  it('answers other methods with an empty 200', async (t) => {
    const { ctl } = await setup(t);
    const { port } = await ctl.listen(0);
    for (const m of ['GET', 'PUT', 'DELETE']) assert.deepEqual(await http(port, m, '/'), { status: 200, type: undefined, text: '' });
  });

  it('gives no reply to a body of exactly 2 MiB (like mtt), runs 2 MiB - 1', async (t) => {
    const { ctl } = await setup(t);
    const { port } = await ctl.listen(0);
    assert.equal((await http(port, 'POST', '/', paddedPing(MTT_MAX_BODY))).text, '');
    assert.equal((await http(port, 'POST', '/', paddedPing(MTT_MAX_BODY - 1))).text, '{"res":1}');
  });

  it('cuts a sender that goes on past the cap and what Go drains after it', async (t) => {
    const { store } = await tempStore(t);
    const ctl = new MttController({ store, maxBodyBytes: 1024, maxDrainBytes: 4096 });
    t.after(() => ctl.close());
    const { port } = await ctl.listen(0);
    // Either the empty 200 with Connection: close arrives before the cut, or the cut wins the race.
    await http(port, 'POST', '/', Buffer.alloc(1 << 20, 0x20)).then(
      (r) => assert.deepEqual(r, { status: 200, type: undefined, text: '' }),
      (err: NodeJS.ErrnoException) => assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code ?? ''), err.message),
    );
    // The server is still fine afterwards.
    assert.equal((await http(port, 'POST', '/', Buffer.from('{"opt":9}'))).text, '{"res":1}');
  });
});
