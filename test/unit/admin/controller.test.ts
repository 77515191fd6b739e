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
import { tempStore } from './helpers.js';

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
  it('opt 9 counts users; opt 1 adds a token user per path with its dst', async (t) => {
    const { run, store } = await setup(t);
    assert.deepEqual(await run({ opt: 9 }), { res: 1, err_string: '', current_users: 0 });
    const r = await run({ opt: 1, args_bunch: [{ path: '/path_1', dst: '127.0.0.1:10001' }, { path: '/path_2', dst: '[::1]:10002' }] });
    assert.deepEqual(r, { res: 1, err_string: '', current_users: 2 });
    const u = await store.findByPath('/path_1', { withSecret: true });
    assert.equal(u?.kind, 'token');
    assert.equal(u?.dst, '127.0.0.1:10001');
    assert.equal(u?.name, 'mtt:/path_1');
    assert.equal(typeof u?.secret, 'string');
    assert.equal((await store.findByPath('/path_2'))?.dst, '[::1]:10002');
    assert.equal((await run({ opt: 9 })).current_users, 2);
  });

  it('opt 1 on a known path overwrites its dst and keeps the user and its token; within a batch the last entry wins', async (t) => {
    const { run, store } = await setup(t);
    await run({ opt: 1, args_bunch: [{ path: '/p', dst: '127.0.0.1:1' }] });
    const before = await store.findByPath('/p', { withSecret: true });
    const r = await run({ opt: 1, args_bunch: [{ path: '/p', dst: '127.0.0.1:2' }, { path: '/q', dst: 'a.example:3' }, { path: '/p', dst: '127.0.0.1:4' }] });
    assert.deepEqual(r, { res: 1, err_string: '', current_users: 2 });
    const after = await store.findByPath('/p', { withSecret: true });
    assert.equal(after?.id, before?.id);
    assert.equal(after?.secret, before?.secret);
    assert.equal(after?.dst, '127.0.0.1:4');
  });

  it('opt 2 deletes the given paths and ignores unknown ones; opt 3 deletes every user', async (t) => {
    const { run, store } = await setup(t);
    await run({ opt: 1, args_bunch: [{ path: '/a', dst: 'h.example:1' }, { path: '/b', dst: 'h.example:2' }, { path: '/c', dst: 'h.example:3' }] });
    const r = await run({ opt: 2, args_bunch: [{ path: '/a' }, { path: '/nope' }, { path: '/c', dst: 'ignored' }] });
    assert.deepEqual(r, { res: 1, err_string: '', current_users: 1 });
    assert.equal(await store.findByPath('/a'), undefined);
    assert.notEqual(await store.findByPath('/b'), undefined);
    await store.createUser({ name: 'admin-made' });
    assert.deepEqual(await run({ opt: 3 }), { res: 1, err_string: '', current_users: 0 });
    assert.equal(await store.count(), 0);
  });

  it('refuses malformed commands with res 2 and a reason, applying nothing', async (t) => {
    const { run, store } = await setup(t);
    const cases: [unknown, RegExp][] = [
      ['{"opt":1,', /^body: invalid json/],
      ['[1,2]', /^body: invalid json: expected an object/],
      ['null', /invalid opt/],
      [{ opt: 5 }, /^opt: invalid opt$/],
      [{}, /invalid opt/],
      [{ opt: '1' }, /^opt: expected an integer/],
      [{ opt: 1 }, /empty args/],
      [{ opt: 2, args_bunch: [] }, /empty args/],
      [{ opt: 1, args_bunch: {} }, /^args_bunch: expected an array/],
      [{ opt: 1, args_bunch: [{ path: '/ok', dst: '127.0.0.1:1' }, { path: 'no-slash', dst: '127.0.0.1:2' }] }, /^args_bunch\[1\]\.path: bad path/],
      [{ opt: 1, args_bunch: [{ path: '/ok', dst: '127.0.0.1:1' }, { path: '/x?q', dst: '127.0.0.1:2' }] }, /^args_bunch\[1\]\.path/],
      [{ opt: 1, args_bunch: [{ path: '/ok', dst: '127.0.0.1:1' }, { path: '/y' }] }, /^args_bunch\[1\]\.dst: dst is required/],
      [{ opt: 1, args_bunch: [{ path: '/ok', dst: 'host-without-port' }] }, /^args_bunch\[0\]\.dst: bad dst/],
      [{ opt: 1, args_bunch: [{ path: 7, dst: '127.0.0.1:1' }] }, /^args_bunch\[0\]\.path: expected a string/],
      [{ opt: 2, args_bunch: [null] }, /^args_bunch\[0\]\.path: path is required/],
    ];
    for (const [cmd, reason] of cases) {
      const r = await run(cmd);
      assert.equal(r.res, 2, JSON.stringify(cmd));
      assert.match(r.err_string, reason, JSON.stringify(cmd));
      assert.equal(r.current_users, 0);
    }
    assert.equal(await store.count(), 0, 'no partial batch was applied');
  });

  it("decodes like Go: keys match case-insensitively, unknown keys are ignored", async (t) => {
    const { run, store } = await setup(t);
    const r = await run({ OPT: 1, Args_Bunch: [{ PATH: '/g', Dst: '127.0.0.1:9', extra: true }], comment: 'x' });
    assert.equal(r.res, 1);
    assert.equal((await store.findByPath('/g'))?.dst, '127.0.0.1:9');
  });

  it('a path whose user name is taken elsewhere still gets a user; long paths get a digest name', async (t) => {
    const { run, store } = await setup(t);
    await store.createUser({ name: nameForPath('/taken') });
    const long = `/${'x'.repeat(200)}`;
    assert.equal((await run({ opt: 1, args_bunch: [{ path: '/taken', dst: 'h.example:1' }, { path: long, dst: 'h.example:2' }] })).res, 1);
    assert.match((await store.findByPath('/taken'))?.name ?? '', /^mtt:\/taken~[0-9a-f]{8}$/);
    assert.match((await store.findByPath(long))?.name ?? '', /^mtt:sha256:[0-9a-f]{32}$/);
  });

  it('runs commands one at a time in arrival order', async (t) => {
    const { run } = await setup(t);
    const add = { opt: 1, args_bunch: [{ path: '/r', dst: 'h.example:1' }] };
    const [a, b] = await Promise.all([run(add), run({ opt: 3 })]);
    assert.deepEqual([a.current_users, b.current_users], [1, 0]);
    const [c, d] = await Promise.all([run({ opt: 3 }), run(add)]);
    assert.deepEqual([c.current_users, d.current_users], [0, 1]);
  });
});

describe('mtt controller: HTTP', () => {
  it('answers POST on any path, an empty 200 to other methods', async (t) => {
    const { ctl } = await setup(t);
    const { port } = await ctl.listen(0);
    const post = await http(port, 'POST', '/any/path?x=1', Buffer.from('{"opt":9}'));
    assert.deepEqual(post, { status: 200, type: 'text/plain; charset=utf-8', text: '{"res":1,"err_string":"","current_users":0}' });
    for (const m of ['GET', 'PUT', 'DELETE']) assert.deepEqual(await http(port, m, '/'), { status: 200, type: undefined, text: '' });
    const bad = await http(port, 'POST', '/', Buffer.from('not json'));
    assert.equal((JSON.parse(bad.text) as { res: number }).res, 2);
  });

  it('refuses a body of 2 MiB + 1 byte (and of exactly 2 MiB, like mtt), accepts 2 MiB - 1', async (t) => {
    const { ctl } = await setup(t);
    const { port } = await ctl.listen(0);
    const over = await http(port, 'POST', '/', paddedPing(MTT_MAX_BODY + 1));
    assert.deepEqual(JSON.parse(over.text), { res: 2, err_string: 'body is larger than 2m', current_users: 0 });
    const exact = await http(port, 'POST', '/', paddedPing(MTT_MAX_BODY));
    assert.deepEqual(JSON.parse(exact.text), JSON.parse(over.text));
    const under = await http(port, 'POST', '/', paddedPing(MTT_MAX_BODY - 1));
    assert.deepEqual(JSON.parse(under.text), { res: 1, err_string: '', current_users: 0 });
  });

  it('cuts a sender that goes on far past the cap', async (t) => {
    const { store } = await tempStore(t);
    const ctl = new MttController({ store, maxBodyBytes: 1024, maxDrainBytes: 4096 });
    t.after(() => ctl.close());
    const { port } = await ctl.listen(0);
    await assert.rejects(http(port, 'POST', '/', Buffer.alloc(1 << 20, 0x20)), (err: NodeJS.ErrnoException) => ['ECONNRESET', 'EPIPE'].includes(err.code ?? ''));
    // The server is still fine afterwards.
    assert.equal((JSON.parse((await http(port, 'POST', '/', Buffer.from('{"opt":9}'))).text) as { res: number }).res, 1);
  });
});
