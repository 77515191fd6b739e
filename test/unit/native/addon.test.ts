import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import {
  ADDON_PATH,
  closeFd,
  loadAddon,
  nativeAvailable,
  nativeErrnoOf,
  NativeUnavailableError,
  openTun,
  TunError,
  writePackets,
} from '../../../src/native/addon.js';
import { TunDevice } from '../../../src/tun/device.js';

const built = existsSync(ADDON_PATH);
const noAddon = built ? false : `addon not built (${ADDON_PATH}); run npm run build:native`;
if (noAddon) console.log(`# ${noAddon}`);

describe('native addon loader', () => {
  it('loads the built addon with every export', { skip: noAddon }, () => {
    const state = loadAddon();
    assert.ok(state.available, state.available ? '' : state.reason);
    assert.equal(nativeAvailable, true);
    for (const fn of ['openTun', 'writePackets', 'closeFd', 'tunReaderStart', 'tunReaderStop', 'connectStart', 'connectCancel', 'socketInfo', 'mptcpProbe']) {
      assert.equal(typeof (state.binding as unknown as Record<string, unknown>)[fn], 'function', fn);
    }
  });

  it('reports a missing addon as unavailable with the reason, never throwing', () => {
    const state = loadAddon('/nonexistent/polytun_native.node');
    assert.equal(state.available, false);
    assert.match(state.available ? '' : state.reason, /nonexistent\/polytun_native\.node not found/);
  });

  it('NativeUnavailableError is typed and says how to build the addon', () => {
    const err = new NativeUnavailableError('TUN devices', 'x not found');
    assert.ok(err instanceof NativeUnavailableError);
    assert.equal(err.code, 'ERR_NATIVE_UNAVAILABLE');
    assert.equal(err.feature, 'TUN devices');
    assert.match(err.message, /npm run build:native/);
  });
});

describe('native TUN errors are typed', { skip: noAddon }, () => {
  it('rejects a bad device name with TunError EINVAL', () => {
    for (const name of ['', 'a/b', 'x'.repeat(16)]) {
      assert.throws(() => openTun(name), (e: unknown) => e instanceof TunError && e.errno === 'EINVAL' && /1-15 characters/.test(e.message), name);
    }
  });

  it('maps a missing privilege to "needs root or CAP_NET_ADMIN"', (t) => {
    if (!existsSync('/dev/net/tun')) return t.skip('/dev/net/tun missing');
    // The child needs nothing from the checkout, which may sit in a folder the
    // unprivileged user cannot enter (a clone under a 0700 home): it loads a
    // copy of the addon from a fresh world-readable temp dir with a plain .mjs
    // script. The wrapper's errno → TunError mapping is checked in-process
    // (EBADF below), and on these fields via nativeErrnoOf.
    const dir = mkdtempSync(join(tmpdir(), 'polytun-addon-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    copyFileSync(ADDON_PATH, join(dir, 'polytun_native.node'));
    chmodSync(join(dir, 'polytun_native.node'), 0o644);
    const script = `import { createRequire } from 'node:module';
      const b = createRequire(import.meta.url)('./polytun_native.node');
      try { const h = b.openTun(undefined, 0); b.closeFd(h.fd); console.log('{"opened":true}'); }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, syscall: e.syscall, message: e.message })); }
    `;
    writeFileSync(join(dir, 'child.mjs'), script, { mode: 0o644 });
    // As root, drop to nobody in a child; otherwise we are unprivileged already.
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const r = spawnSync(process.execPath, [join(dir, 'child.mjs')], { cwd: dir, encoding: 'utf8', ...asNobody });
    if (r.error !== undefined && (r.error as NodeJS.ErrnoException).code === 'EACCES') {
      return t.skip(`uid 65534 may not run ${process.execPath}`);
    }
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { name: string; code: string; syscall: string; message: string; opened?: boolean };
    if (out.opened) return t.skip('this unprivileged user may open TUN devices (CAP_NET_ADMIN granted)');
    const fields = nativeErrnoOf(Object.assign(new Error(out.message), { code: out.code, syscall: out.syscall }));
    assert.ok(fields !== undefined, `the addon's error lacks errno fields: ${r.stdout}`);
    assert.ok(['EACCES', 'EPERM'].includes(fields.code), fields.code);
    assert.match(fields.message, /needs root or CAP_NET_ADMIN/);
    const mapped = new TunError(fields.code, fields.syscall, fields.message);
    assert.equal(mapped.code, 'ERR_TUN');
    assert.equal(mapped.errno, fields.code);
  });

  it('throws TunError EBADF when writing or closing a bad fd, and rejects non-buffers', () => {
    assert.throws(() => writePackets(-1, [Buffer.alloc(20)]), (e: unknown) => e instanceof TunError && e.errno === 'EBADF' && e.syscall === 'write');
    assert.throws(() => closeFd(-1), (e: unknown) => e instanceof TunError && e.errno === 'EBADF');
    assert.throws(() => writePackets(-1, ['nope' as unknown as Buffer]), TypeError);
  });

  it('an empty batch writes nothing and does not touch the fd', () => {
    assert.deepEqual(writePackets(-1, []), { written: 0, dropped: 0, invalid: 0 });
  });
});

describe('TunDevice.create (no addon or privilege needed)', () => {
  it('validates MTU and addresses before opening anything', async () => {
    await assert.rejects(TunDevice.create({ mtu: 10 }), ConfigError);
    await assert.rejects(TunDevice.create({ mtu: 1400, addresses: ['10.0.0.1/33'] }), /invalid CIDR/);
    await assert.rejects(TunDevice.create({ mtu: 1400, addresses: ['not-an-ip/24'] }), ConfigError);
  });
});
