/**
 * The ui: section and its flags: a dashboard off loopback without a password
 * is one line at start naming the flag and the fix; the flags land on their
 * keys; `polytun ui` refuses the same.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main } from '../../../src/cli/main.js';
import { validateConfig, type ClientConfig } from '../../../src/config/schema.js';
import type { UiCommandOptions } from '../../../src/cli/cmd-ui.js';
import { makeLink } from './helpers.js';

function io() {
  let out = '';
  let err = '';
  return { io: { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } }, out: () => out, err: () => err };
}

describe('ui config', () => {
  it('defaults to off, with the wizard routes on', () => {
    const c = validateConfig({ link: makeLink() }, 'client');
    assert.deepEqual(c.ui, { listen: undefined, password: undefined, passwordFile: undefined, history: undefined, wizard: true });
  });

  it('refuses a non-loopback listen without a password, and both password kinds at once', () => {
    assert.throws(() => validateConfig({ link: makeLink(), ui: { listen: '0.0.0.0:7080' } }, 'client'), /ui\.listen.*0\.0\.0\.0 is not a loopback address: set a password \(--ui-password-file FILE/);
    assert.throws(() => validateConfig({ link: makeLink(), ui: { listen: '127.0.0.1:7080', password: 'longpassword', passwordFile: '/x' } }, 'client'), /not both/);
    assert.throws(() => validateConfig({ link: makeLink(), ui: { listen: '127.0.0.1:7080', password: 'short' } }, 'client'), /shorter than 8/);
    const ok = validateConfig({ link: makeLink(), ui: { listen: '0.0.0.0:7080', passwordFile: '/etc/polytun/ui.pw' } }, 'client');
    assert.deepEqual(ok.ui.listen, { host: '0.0.0.0', port: 7080 });
  });

  it('polytun client --ui 0.0.0.0:PORT without a password is one line naming --ui, and nothing runs', async () => {
    const o = io();
    let ran = false;
    const code = await main(['client', makeLink(), '--ui', '0.0.0.0:7080'], { io: o.io, runClient: async () => void (ran = true) });
    assert.equal(code, 1);
    assert.equal(ran, false);
    assert.equal(o.err().trim().split('\n').length, 1, o.err());
    assert.match(o.err(), /^polytun: --ui: 0\.0\.0\.0 is not a loopback address: set a password/);
  });

  it('--ui and --ui-password-file land on ui.listen and ui.passwordFile (absolute)', async () => {
    const o = io();
    let cfg = undefined as ClientConfig | undefined;
    const code = await main(['client', makeLink(), '--ui', '192.0.2.1:7080', '--ui-password-file', 'pw.txt'], { io: o.io, runClient: async (c) => void (cfg = c) });
    assert.equal(code, 0, o.err());
    assert.deepEqual(cfg?.ui.listen, { host: '192.0.2.1', port: 7080 });
    assert.equal(cfg?.ui.passwordFile, `${process.cwd()}/pw.txt`);
  });

  it('polytun ui refuses an address off loopback without a password; defaults to 127.0.0.1:7080', async () => {
    const o = io();
    const seen: { opts?: UiCommandOptions } = {};
    assert.equal(await main(['ui', '--listen', '0.0.0.0:7080'], { io: o.io, runUi: async (u) => void (seen.opts = u) }), 1);
    assert.match(o.err(), /needs a password: add --ui-password-file FILE/);
    assert.deepEqual(Object.keys(seen), [], 'nothing ran');
    assert.equal(await main(['ui'], { io: o.io, runUi: async (u) => void (seen.opts = u) }), 0);
    assert.deepEqual(seen.opts?.listen, { host: '127.0.0.1', port: 7080 });
  });
});
