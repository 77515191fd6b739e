import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../../src/core/errors.js';
import { ChangeJournal, SystemChangeError, describe as describeChange, type Exec } from '../../../src/tun/changes.js';

const dir = mkdtempSync(join(tmpdir(), 'polytun-changes-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const stateFile = (): string => join(dir, `state-${n++}.json`);

/** A fake `ip`/`iptables`: records calls, answers from `script`. */
function fakeExec(script: (cmd: string, args: readonly string[]) => string | Error = () => '') {
  const calls: string[] = [];
  const exec: Exec = (cmd, args) => {
    calls.push(`${cmd} ${args.join(' ')}`);
    const r = script(cmd, args);
    return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
  };
  const execSync = (cmd: string, args: readonly string[]): void => {
    calls.push(`sync ${cmd} ${args.join(' ')}`);
  };
  return { calls, exec, execSync };
}

function recorded(file: string): unknown[] {
  return (JSON.parse(readFileSync(file, 'utf8')) as { changes: unknown[] }).changes;
}

describe('ChangeJournal', () => {
  it('records a route before adding it (write-ahead) and deletes it on undo', async () => {
    const file = stateFile();
    let seenAtAdd: unknown[] = [];
    const f = fakeExec((_cmd, args) => {
      if (args.includes('add')) seenAtAdd = recorded(file);
      return '';
    });
    const { journal, recovered } = await ChangeJournal.open(file, f);
    assert.equal(recovered, 0);
    assert.equal(await journal.apply({ kind: 'route', dst: '0.0.0.0/1', dev: 'tun7' }), true);
    assert.deepEqual(seenAtAdd, [{ kind: 'route', dst: '0.0.0.0/1', dev: 'tun7' }]);
    await journal.apply({ kind: 'route', dst: '::/1', dev: 'tun7' });
    await journal.undoAll();
    assert.deepEqual(f.calls, [
      'ip -4 route add 0.0.0.0/1 dev tun7',
      'ip -6 route add ::/1 dev tun7',
      'ip -6 route del ::/1 dev tun7',
      'ip -4 route del 0.0.0.0/1 dev tun7',
    ]);
    assert.equal(existsSync(file), false);
  });

  it('ifExists: skip leaves an existing route alone (and never removes it)', async () => {
    const f = fakeExec((_c, args) => (args.includes('exact') ? '[{"dst":"192.0.2.1","gateway":"10.0.0.1"}]' : ''));
    const { journal } = await ChangeJournal.open(stateFile(), f);
    assert.equal(await journal.apply({ kind: 'route', dst: '192.0.2.1/32', via: '10.0.0.1', dev: 'eth0', ifExists: 'skip' }), false);
    await journal.undoAll();
    assert.deepEqual(f.calls, ['ip -4 -j route show exact 192.0.2.1/32']);
  });

  it('iptables: adds only a rule that is absent, removes exactly that rule', async () => {
    const rule = { kind: 'iptables' as const, binary: 'iptables' as const, table: 'nat', chain: 'POSTROUTING', rule: ['-s', '10.8.0.0/24', '!', '-o', 'tun0', '-j', 'MASQUERADE'] };
    const absent = fakeExec((_c, args) => (args.includes('-C') ? new Error('Bad rule') : ''));
    const j1 = (await ChangeJournal.open(stateFile(), absent)).journal;
    assert.equal(await j1.apply(rule), true);
    await j1.undoAll();
    assert.deepEqual(absent.calls, [
      'iptables -w 5 -t nat -C POSTROUTING -s 10.8.0.0/24 ! -o tun0 -j MASQUERADE',
      'iptables -w 5 -t nat -A POSTROUTING -s 10.8.0.0/24 ! -o tun0 -j MASQUERADE',
      'iptables -w 5 -t nat -D POSTROUTING -s 10.8.0.0/24 ! -o tun0 -j MASQUERADE',
    ]);
    const present = fakeExec();
    const j2 = (await ChangeJournal.open(stateFile(), present)).journal;
    assert.equal(await j2.apply(rule), false);
    await j2.undoAll();
    assert.equal(present.calls.length, 1);
    assert.equal(describeChange(rule), 'iptables -t nat -A POSTROUTING -s 10.8.0.0/24 ! -o tun0 -j MASQUERADE');
  });

  it('sysctl: written only when different, restored on undo', async () => {
    const procSys = join(dir, `proc-${n++}`);
    mkdirSync(join(procSys, 'net/ipv4'), { recursive: true });
    const key = join(procSys, 'net/ipv4/ip_forward');
    writeFileSync(key, '0\n');
    const { journal } = await ChangeJournal.open(stateFile(), { ...fakeExec(), procSys });
    assert.equal(await journal.apply({ kind: 'sysctl', key: 'net/ipv4/ip_forward', value: '1' }), true);
    assert.equal(readFileSync(key, 'utf8'), '1\n');
    assert.equal(await journal.apply({ kind: 'sysctl', key: 'net/ipv4/ip_forward', value: '1' }), false);
    await journal.undoAll();
    assert.equal(readFileSync(key, 'utf8'), '0\n');
  });

  it('files: content and mode restored; a symlink comes back as the symlink; a new file goes away', async () => {
    const plain = join(dir, `resolv-${n++}.conf`);
    writeFileSync(plain, 'nameserver 192.0.2.53\n', { mode: 0o640 });
    const link = join(dir, `resolv-${n++}.conf`);
    symlinkSync('../run/stub-resolv.conf', link);
    const none = join(dir, `resolv-${n++}.conf`);
    const { journal } = await ChangeJournal.open(stateFile(), fakeExec());
    for (const p of [plain, link, none]) await journal.apply({ kind: 'file', path: p, content: 'nameserver 10.8.0.1\n' });
    for (const p of [plain, link, none]) assert.equal(readFileSync(p, 'utf8'), 'nameserver 10.8.0.1\n');
    assert.equal(lstatSync(link).isSymbolicLink(), false);
    await journal.undoAll();
    assert.equal(readFileSync(plain, 'utf8'), 'nameserver 192.0.2.53\n');
    assert.equal(statSync(plain).mode & 0o777, 0o640);
    assert.equal(readlinkSync(link), '../run/stub-resolv.conf');
    assert.equal(existsSync(none), false);
  });

  it('a failing command leaves nothing recorded', async () => {
    const file = stateFile();
    const f = fakeExec((_c, args) => (args.includes('add') ? new SystemChangeError('ip route add', 'File exists') : ''));
    const { journal } = await ChangeJournal.open(file, f);
    await assert.rejects(journal.apply({ kind: 'route', dst: '10.20.0.0/16', dev: 'tun0' }), SystemChangeError);
    assert.deepEqual(journal.changes, []);
    assert.equal(existsSync(file), false);
  });

  it('after a crash, the next open undoes what the state file lists', async () => {
    const file = stateFile();
    const procSys = join(dir, `proc-${n++}`);
    mkdirSync(join(procSys, 'net/ipv4'), { recursive: true });
    writeFileSync(join(procSys, 'net/ipv4/ip_forward'), '1\n');
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(file, JSON.stringify({
      version: 1,
      pid: dead,
      changes: [
        { kind: 'sysctl', key: 'net/ipv4/ip_forward', value: '1', previous: '0' },
        { kind: 'route', dst: '192.0.2.1/32', via: '10.0.0.1', dev: 'eth0' },
      ],
    }));
    const f = fakeExec();
    const { journal, recovered } = await ChangeJournal.open(file, { ...f, procSys });
    assert.equal(recovered, 2);
    assert.deepEqual(f.calls, ['ip -4 route del 192.0.2.1/32 via 10.0.0.1 dev eth0']);
    assert.equal(readFileSync(join(procSys, 'net/ipv4/ip_forward'), 'utf8'), '0\n');
    assert.equal(existsSync(file), false);
    assert.deepEqual(journal.changes, []);
  });

  it('refuses a state file that a live process owns', async () => {
    const file = stateFile();
    writeFileSync(file, JSON.stringify({ version: 1, pid: process.ppid, changes: [] }));
    await assert.rejects(ChangeJournal.open(file, fakeExec()), ConfigError);
  });

  it('undoAllSync (the exit hook) undoes with synchronous commands', async () => {
    const file = stateFile();
    const f = fakeExec();
    const { journal } = await ChangeJournal.open(file, f);
    await journal.apply({ kind: 'route', dst: '10.20.0.0/16', dev: 'tun0' });
    journal.undoAllSync();
    assert.equal(f.calls.at(-1), 'sync ip -4 route del 10.20.0.0/16 dev tun0');
    assert.equal(existsSync(file), false);
  });
});
