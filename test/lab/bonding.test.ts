/**
 * Lab test (root only) for issue "Bonding: one session over several network
 * paths": a real `polytun client` and `polytun server` in two network
 * namespaces joined by three veth links, each shaped with tc tbf and delayed
 * by the userspace relay (see bonding-lab.ts for the drawing):
 *
 *   link 0: 40 Mbit/s, 5 ms one-way     link 1: 20 Mbit/s, 20 ms one-way
 *   link 2: 20 Mbit/s, 10 ms one-way (the backup path of test c)
 *
 * Downloads go through the client's SOCKS5 front with curl. Timing figures
 * (goodput, stalls) are printed, never asserted; what is asserted is the
 * data (SHA-256) and which links carried it (relay byte counters).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { BondingLab, FAST_LIVENESS, mbps, patternSha256, PORTS } from './bonding-lab.js';
import { LabError, labUnavailableReason, type LabProc } from './netns.js';

const SIZE = 40 << 20;
const MiB = 1 << 20;

const skipReason = labUnavailableReason() ?? (execOk('curl', ['--version']) ? undefined : 'curl is not installed');
if (skipReason !== undefined) console.log(`# bonding lab skipped: ${skipReason}`);

function execOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether the client CLI offers server failover yet (the lead adds it). */
function backupServerFlag(): boolean {
  try {
    return execFileSync(process.execPath, [join(ROOT, 'bin/polytun.js'), 'client', '--help'], { encoding: 'utf8' }).includes('--backup-server');
  } catch {
    return false;
  }
}

describe('bonding lab: one session over several shaped, delayed links', { skip: skipReason ?? false }, () => {
  const bl = new BondingLab('bond');
  const expected = patternSha256(SIZE);
  let client: LabProc | undefined;

  before(async () => {
    await bl.build({
      links: [
        { rate: '40mbit', delayMs: 5 },
        { rate: '20mbit', delayMs: 20 },
        { rate: '20mbit', delayMs: 10 },
      ],
      net: 221,
      fileSize: SIZE,
      serverArgs: FAST_LIVENESS,
    });
  });

  after(async () => {
    await client?.stop();
    await bl.cleanup();
  });

  /** Stops this test's client and puts every link back up. */
  async function reset(): Promise<void> {
    await client?.stop();
    client = undefined;
    for (const l of bl.links) await bl.lab.setLink(bl.cli, l.veth.aIf, true);
  }

  /** Runs a test body; a failure carries the client's and the server's logs. */
  const diagnosed = async (body: () => Promise<void>): Promise<void> => {
    try {
      await body();
    } catch (err) {
      const failed = withLogs(err, { client, server: bl.server });
      // Leave the lab as the next case expects it (no client holding the SOCKS port, every link up).
      try {
        await reset();
      } catch (cleanup) {
        console.log(`# reset after the failure failed too: ${String(cleanup)}`);
      }
      throw failed;
    }
  };

  const relayBytes = async (): Promise<number[]> => Promise.all(bl.links.map((l) => bl.relayBytesDown(l.index)));

  it('(a) one download uses both links: right SHA-256, each link carries a real share', () => diagnosed(async () => {
    client = await bl.startClient({ first: 0, paths: [{ link: 1 }], extra: FAST_LIVENESS });
    const before = await relayBytes();
    const r = await bl.download('/file');
    const after = await relayBytes();
    const share = after.map((b, i) => (b - (before[i] ?? 0)) / SIZE);
    console.log(
      `# (a) ${(SIZE / MiB).toFixed(0)} MiB in ${(r.ms / 1000).toFixed(2)} s: goodput ${mbps(r.bytes, r.ms).toFixed(1)} Mbit/s ` +
        `of 40+20 Mbit/s tbf (${((mbps(r.bytes, r.ms) / 60) * 100).toFixed(0)} %); link shares ${share.map((s) => s.toFixed(2)).join(' / ')}`,
    );
    assert.equal(r.bytes, SIZE);
    assert.equal(r.sha256, expected);
    assert.ok((share[0] ?? 0) > 0.1, `link 0 carried ${share[0]} of the file`);
    assert.ok((share[1] ?? 0) > 0.1, `link 1 carried ${share[1]} of the file`);
    assert.ok((share[2] ?? 0) < 0.01, 'link 2 is not part of this session');
    // The client's own per-path counters agree: two paths, both received data.
    const paths = (await bl.status()).paths;
    assert.equal(paths.length, 2);
    for (const p of paths) assert.ok(p.bytesReceived > 0.1 * SIZE, `path ${p.label} received ${p.bytesReceived}`);
    await reset();
  }));

  it('(b) link 1 pulled mid-download: the file still arrives intact over link 0', () => diagnosed(async () => {
    client = await bl.startClient({ first: 0, paths: [{ link: 1 }], extra: FAST_LIVENESS });
    const before = await relayBytes();
    let cutAt: number | undefined;
    let cutBytes = 0;
    let cutting: Promise<void> | undefined;
    let atDown: number[] | undefined;
    const r = await bl.download('/file', { onChunk: (bytes) => {
      if (cutting === undefined && bytes >= 12 * MiB) {
        cutAt = performance.now();
        cutBytes = bytes;
        cutting = (async () => {
          await bl.lab.setLink(bl.cli, bl.linkAt(1).veth.aIf, false);
          atDown = await relayBytes();
        })();
      }
    } });
    await cutting;
    const mid = await relayBytes();
    assert.equal(r.bytes, SIZE);
    assert.equal(r.sha256, expected);
    assert.ok(cutAt !== undefined, 'the cut happened mid-download');
    const afterCut = r.times.map((t, i) => ({ t: t + r.startedAt - (cutAt as number), b: r.totals[i] ?? 0 })).filter((x) => x.t >= 0);
    console.log(
      `# (b) link 1 down at ${(cutBytes / MiB).toFixed(1)} MiB: longest gap between chunks ${r.maxGapMs.toFixed(0)} ms ` +
        `(ended ${(r.maxGapEndMs + r.startedAt - (cutAt as number)).toFixed(0)} ms after the cut); total ${(r.ms / 1000).toFixed(2)} s, ` +
        `${mbps(r.bytes, r.ms).toFixed(1)} Mbit/s; ${afterCut.length} chunks after the cut`,
    );
    // Link 1 carried part of the file until it went down, link 0 everything else. Counted from the
    // relays alone: curl's count at the cut lags what link 1 carried until the link was really down.
    assert.ok(atDown !== undefined);
    const l1 = (atDown[1] ?? 0) - (before[1] ?? 0);
    const l0 = (mid[0] ?? 0) - (before[0] ?? 0);
    assert.ok(l1 > MiB, `link 1 carried ${l1} bytes before the cut`);
    assert.ok(l0 >= SIZE - l1 - MiB, `link 0 carried ${l0} bytes; ${SIZE - l1} remained when link 1 went down`);
    // The client noticed and dropped the dead path.
    const paths = (await bl.status()).paths;
    assert.deepEqual(paths.map((p) => p.label), [`${bl.linkAt(0).entry.host}:${bl.linkAt(0).entry.port}`]);
    assert.match(client.log(), /path lost/);
    await reset();
  }));

  it('(c) a backup path idles until both primaries are cut, then carries the download', () => diagnosed(async () => {
    client = await bl.startClient({ first: 0, paths: [{ link: 1 }, { link: 2, role: 'backup' }], extra: FAST_LIVENESS });
    const before = await relayBytes();
    let atCut: number[] | undefined;
    let atDown: number[] | undefined;
    let cutBytes = 0;
    let cutting: Promise<void> | undefined;
    const r = await bl.download('/file', { onChunk: (bytes) => {
      if (cutting === undefined && bytes >= 10 * MiB) {
        cutBytes = bytes;
        cutting = (async () => {
          atCut = await relayBytes();
          await Promise.all([0, 1].map((i) => bl.lab.setLink(bl.cli, bl.linkAt(i).veth.aIf, false)));
          // The primaries carry on until their links are really down (on a loaded machine, megabytes later).
          atDown = await relayBytes();
        })();
      }
    } });
    await cutting;
    const end = await relayBytes();
    assert.equal(r.bytes, SIZE);
    assert.equal(r.sha256, expected);
    assert.ok(atCut !== undefined, 'the cut happened mid-download');
    const backupBefore = (atCut[2] ?? 0) - (before[2] ?? 0);
    const backupAfter = (end[2] ?? 0) - (atCut[2] ?? 0);
    console.log(
      `# (c) backup carried ${backupBefore} bytes before the cut (at ${(cutBytes / MiB).toFixed(1)} MiB) and ` +
        `${(backupAfter / MiB).toFixed(1)} MiB after; longest gap ${r.maxGapMs.toFixed(0)} ms; total ${(r.ms / 1000).toFixed(2)} s`,
    );
    // Before: pings and pongs only (a few hundred bytes a second), no data.
    assert.ok(backupBefore < 64 * 1024, `backup carried ${backupBefore} bytes while both primaries were up`);
    // After: all that the primaries had not carried by the time they went down. Counted from the
    // relays alone (what curl had read at the cut lags what the primaries carried meanwhile: on a
    // loaded machine, megabytes): the primaries' bytes from the start until down, the backup's
    // after the cut, together at least the file (the relays count record overhead on top).
    assert.ok(atDown !== undefined);
    const primariesUntilDown = [0, 1].reduce((sum, i) => sum + ((atDown as number[])[i] ?? 0) - (before[i] ?? 0), 0);
    const remained = SIZE - primariesUntilDown;
    assert.ok(backupAfter >= remained - MiB, `backup carried ${backupAfter} bytes; ${remained} remained when the primaries went down`);
    const paths = (await bl.status()).paths;
    assert.deepEqual(paths.map((p) => p.role), ['backup']);
    await reset();
  }));

  const hasBackupServer = backupServerFlag();
  const noFlag = hasBackupServer ? false : 'no --backup-server option in `polytun client` yet';
  if (!hasBackupServer) console.log('# (d) skipped: `polytun client --help` has no --backup-server option yet (server failover not built)');
  const serverArgs = (port: number, dataDir: string): string[] =>
    [join(ROOT, 'bin/polytun.js'), 'server', '--listen', `tcp://0.0.0.0:${port}`, '--data-dir', dataDir, '--host', '127.0.0.1', '--allow', '127.0.0.1', ...FAST_LIVENESS];
  let master: LabProc | undefined;

  /**
   * The master is reached through link 0's relay, the backup (a copy of the
   * master's data dir: same key, same users) directly on link 0, so link 0's
   * relay counter says which server a download went to.
   */
  async function failoverCase(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    master ??= bl.server as LabProc;
    if (master.child.exitCode !== null || master.child.signalCode !== null) {
      master = bl.lab.spawn(bl.srv, process.execPath, serverArgs(PORTS.polytun, bl.dataDir), { name: 'master server' });
      await master.waitForLine(/listening listen=/); // a restart prints no links (they are printed once, at creation)
    }
    const dataDir = mkdtempSync(join(tmpdir(), 'polytun-lab-backup-'));
    let backup: LabProc | undefined;
    try {
      cpSync(bl.dataDir, dataDir, { recursive: true });
      const BACKUP_PORT = PORTS.polytun + 10;
      backup = bl.lab.spawn(bl.srv, process.execPath, serverArgs(BACKUP_PORT, dataDir), { name: 'backup server' });
      await backup.waitForLine(/listening listen=/);
      // Same key and users as the master: its link, at the backup's address.
      const backupLink = bl.link0.replace(/@[^/?#]+/, `@${bl.linkAt(0).veth.bAddr}:${BACKUP_PORT}`);
      client = await bl.startClient({ first: 0, extra: [...FAST_LIVENESS, '--backup-server', backupLink, '--failover-after', '1000', '--failback-after', '3000'] });

      let r0 = await bl.relayBytesDown(0);
      assert.equal((await bl.download('/file')).sha256, expected);
      assert.ok((await bl.relayBytesDown(0)) - r0 >= SIZE, 'with the master up, traffic goes to the master');

      master.child.kill(signal);
      await master.stop();
      r0 = await bl.relayBytesDown(0);
      const viaBackup = await eventually(() => bl.download('/file'), 30_000, 500);
      assert.equal(viaBackup.sha256, expected);
      assert.ok((await bl.relayBytesDown(0)) - r0 < MiB, 'with the master stopped, the download went to the backup');

      master = bl.lab.spawn(bl.srv, process.execPath, serverArgs(PORTS.polytun, bl.dataDir), { name: 'master server (restarted)' });
      await master.waitForLine(/listening listen=/); // a restart prints no links (they are printed once, at creation)
      // Once the master has answered for --failback-after, new connections go back to it.
      const back = await eventually(async () => {
        const before = await bl.relayBytesDown(0);
        const r = await bl.download('/file');
        if ((await bl.relayBytesDown(0)) - before < SIZE) throw new LabError('download still went to the backup');
        return r;
      }, 60_000, 500);
      assert.equal(back.sha256, expected);
    } catch (err) {
      throw withLogs(err, { client, backup, master });
    } finally {
      await backup?.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await reset();
    }
  }

  it('(d1) master/backup server: master crashes (SIGKILL) → new connections use the backup; master back and healthy → they return to it', { skip: noFlag }, () =>
    failoverCase('SIGKILL'));

  // Regression: on SIGTERM the master closes its sessions (CloseCode.shutdown)
  // and the client used to renew against it forever without failing over.
  it('(d2) master/backup server: master stopped (SIGTERM) → new connections use the backup; master back → they return to it', {
    skip: noFlag,
  }, () => failoverCase('SIGTERM'));
});

/** Adds the tail of each process's log to a failure, so a lab failure can be read from CI output. */
function withLogs(err: unknown, procs: Record<string, LabProc | undefined>): unknown {
  if (!(err instanceof Error)) return err;
  // Repeated per-connection lines would hide the interesting ones: keep the first of each kind.
  const tail = (p: LabProc | undefined): string => {
    if (!p) return '(not started)';
    const seen = new Set<string>();
    const lines = p.log().split('\n').filter((l) => {
      const kind = l.replace(/^\S+\s+\S+\s+/, '').replace(/[0-9a-f]{8,}|\d+/g, '#');
      if (seen.has(kind)) return false;
      seen.add(kind);
      return true;
    });
    return lines.slice(-60).join('\n');
  };
  const logs = Object.entries(procs).map(([name, p]) => `--- ${name} log (distinct lines) ---\n${tail(p)}`);
  err.message += `\n${logs.join('\n')}`;
  return err;
}

