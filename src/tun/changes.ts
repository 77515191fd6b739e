/**
 * A journal of the changes the VPN makes to the system (routes, iptables
 * rules, sysctls, resolv.conf), so that each one is undone exactly:
 *
 * - on a clean exit (`undoAll()`, reverse order);
 * - on an abrupt one that still runs JS (uncaught exception, process.exit):
 *   a process 'exit' hook undoes them synchronously;
 * - after a crash (SIGKILL, power loss): each change is recorded in a state
 *   file *before* it is made (write-ahead), and the next start with the same
 *   state file undoes what the file lists before doing anything else.
 *
 * Only what we changed is recorded: a route or rule that is already there is
 * left alone (and so never removed by us), a sysctl that already has the
 * value is not touched. Undo of a change that is already gone (the TUN
 * vanished and took its routes along) is not an error.
 *
 * State file: `{ "version": 1, "pid": 123, "changes": [ …Change ] }`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync, symlinkSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { ConfigError, PolytunError, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { readJsonFile, removeFile, removeFileSync, writeJsonAtomic } from './state-file.js';

/** What a file looked like before we replaced it. */
export type FileSnapshot = { type: 'file'; content: string; mode: number } | { type: 'symlink'; target: string } | { type: 'absent' };

/** A change the journal can make and undo. */
export type ChangeRequest =
  /**
   * `ip route add DST [via GW] [dev DEV] [metric M]`. With `ifExists: 'skip'`
   * an existing route for exactly DST is left alone (nothing recorded);
   * otherwise adding fails as `ip` does ("File exists").
   */
  | { kind: 'route'; dst: string; via?: string; dev?: string; metric?: number; ifExists?: 'skip' | 'fail' }
  /** `iptables -t TABLE -A CHAIN RULE…` (or ip6tables). */
  | { kind: 'iptables'; binary: 'iptables' | 'ip6tables'; table: string; chain: string; rule: string[] }
  /** Writes `value` to /proc/sys/KEY (KEY like `net/ipv4/ip_forward`). */
  | { kind: 'sysctl'; key: string; value: string }
  /** Replaces a file's content (resolv.conf). */
  | { kind: 'file'; path: string; content: string };

/** A change as recorded: the request plus what is needed to undo it. */
export type Change =
  | Extract<ChangeRequest, { kind: 'route' | 'iptables' }>
  | { kind: 'sysctl'; key: string; value: string; previous: string }
  | { kind: 'file'; path: string; previous: FileSnapshot };

/** A system command failed while making a change. */
export class SystemChangeError extends PolytunError {
  constructor(what: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_SYSTEM_CHANGE', `${what} failed: ${detail}`, options);
  }
}

/** Runs a command, resolving with stdout; rejects with its stderr. Injected in tests. */
export type Exec = (cmd: string, args: readonly string[]) => Promise<string>;
/** Synchronous twin of Exec (for the exit hook). */
export type ExecSync = (cmd: string, args: readonly string[]) => void;

/** Options of {@link ChangeJournal.open}. */
export interface ChangeJournalInit {
  /** @default nullLogger */
  logger?: Logger;
  /** @default execFile */
  exec?: Exec;
  /** @default execFileSync */
  execSync?: ExecSync;
  /** Root of the sysctl tree. @default '/proc/sys' */
  procSys?: string;
}

const defaultExec: Exec = (cmd, args) =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout);
      else reject(new SystemChangeError(`${cmd} ${args.join(' ')}`, (stderr || err.message).trim(), { cause: err }));
    });
  });

const defaultExecSync: ExecSync = (cmd, args) => {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
};

function family(dst: string): string[] {
  return net.isIP(dst.split('/')[0] ?? '') === 6 ? ['-6'] : ['-4'];
}

function routeArgs(verb: 'add' | 'del', c: Extract<Change, { kind: 'route' }>): string[] {
  const a = [...family(c.dst), 'route', verb, c.dst];
  if (c.via !== undefined) a.push('via', c.via);
  if (c.dev !== undefined) a.push('dev', c.dev);
  if (c.metric !== undefined) a.push('metric', String(c.metric));
  return a;
}

function iptArgs(op: '-A' | '-D' | '-C', c: Extract<Change, { kind: 'iptables' }>): string[] {
  return ['-w', '5', '-t', c.table, op, c.chain, ...c.rule];
}

function snapshotFile(path: string): FileSnapshot {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return { type: 'symlink', target: readlinkSync(path) };
    return { type: 'file', content: readFileSync(path, 'utf8'), mode: st.mode & 0o7777 };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { type: 'absent' };
    throw err;
  }
}

function restoreFile(path: string, prev: FileSnapshot): void {
  // Ours is a plain file; where there was a symlink or nothing, remove it first.
  if (prev.type !== 'file') removeFileSync(path);
  if (prev.type === 'symlink') symlinkSync(prev.target, path);
  else if (prev.type === 'file') {
    writeFileSync(path, prev.content);
    chmodSync(path, prev.mode);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** See the file comment. */
export class ChangeJournal {
  private readonly list: Change[] = [];
  private readonly log: Logger;
  private readonly exec: Exec;
  private readonly execSync: ExecSync;
  private readonly procSys: string;
  private hooked = false;
  private readonly exitHook = (): void => this.undoAllSync();

  private constructor(readonly file: string, init: ChangeJournalInit) {
    this.log = init.logger ?? nullLogger;
    this.exec = init.exec ?? defaultExec;
    this.execSync = init.execSync ?? defaultExecSync;
    this.procSys = init.procSys ?? '/proc/sys';
  }

  /**
   * Opens the journal kept in `file`. Changes a previous run left behind
   * (it crashed) are undone first. Returns how many were.
   * @throws ConfigError when a live process still owns the file
   */
  static async open(file: string, init: ChangeJournalInit = {}): Promise<{ journal: ChangeJournal; recovered: number }> {
    const j = new ChangeJournal(file, init);
    const raw = (await readJsonFile(file)) as { version?: unknown; pid?: unknown; changes?: unknown } | undefined;
    if (raw === undefined) return { journal: j, recovered: 0 };
    if (raw.version !== 1 || !Array.isArray(raw.changes)) throw new ConfigError(file, 'unknown VPN state file format; check the system by hand, then delete it');
    if (typeof raw.pid === 'number' && raw.pid !== process.pid && pidAlive(raw.pid)) {
      throw new ConfigError(file, `process ${raw.pid} is running with this VPN state; stop it first (or use another TUN name)`);
    }
    const stale = raw.changes as Change[];
    j.log.warn({ file, changes: stale.length }, 'a previous VPN run did not exit cleanly; undoing what it changed');
    j.list.push(...stale);
    await j.undoAll();
    return { journal: j, recovered: stale.length };
  }

  /** What is recorded now, oldest first. */
  get changes(): readonly Change[] {
    return this.list;
  }

  /**
   * Makes a change and records it (the record is on disk before the change
   * is made). Returns false when there was nothing to do (already so).
   * @throws SystemChangeError when the command fails (nothing stays recorded)
   */
  async apply(req: ChangeRequest): Promise<boolean> {
    const change = await this.prepare(req);
    if (change === undefined) return false;
    this.list.push(change);
    await this.persist();
    this.hook();
    try {
      await this.perform(change, req);
    } catch (err) {
      this.list.pop();
      await this.persist();
      throw err instanceof PolytunError ? err : new SystemChangeError(describe(req), toError(err).message, { cause: err });
    }
    return true;
  }

  /** Undoes every recorded change, newest first, then removes the state file. Never throws: failures are logged. */
  async undoAll(): Promise<void> {
    while (this.list.length > 0) {
      const c = this.list[this.list.length - 1] as Change;
      try {
        await this.undo(c);
      } catch (err) {
        this.log.warn({ change: describe(c), err: toError(err).message }, 'could not undo a VPN system change (already gone?)');
      }
      this.list.pop();
      await this.persist().catch((err: unknown) => this.log.warn({ file: this.file, err: toError(err).message }, 'cannot update the VPN state file'));
    }
    await removeFile(this.file);
    this.unhook();
  }

  /** Synchronous undoAll, for the process 'exit' hook. */
  undoAllSync(): void {
    while (this.list.length > 0) {
      const c = this.list.pop() as Change;
      try {
        this.undoSync(c);
      } catch (err) {
        this.log.warn({ change: describe(c), err: toError(err).message }, 'could not undo a VPN system change at exit');
      }
    }
    removeFileSync(this.file);
    this.unhook();
  }

  private async prepare(req: ChangeRequest): Promise<Change | undefined> {
    switch (req.kind) {
      case 'route': {
        if (req.ifExists !== 'skip') return req;
        // A route that is already there is not ours to add (nor to remove later).
        const out = await this.exec('ip', [...family(req.dst), '-j', 'route', 'show', 'exact', req.dst]);
        const existing = out.trim() === '' ? [] : (JSON.parse(out) as unknown[]);
        if (existing.length === 0) return req;
        this.log.info({ route: req.dst }, 'route already present; leaving it as it is');
        return undefined;
      }
      case 'iptables':
        try {
          await this.exec(req.binary, iptArgs('-C', req));
          this.log.info({ rule: describe(req) }, 'iptables rule already present; leaving it as it is');
          return undefined;
        } catch {
          return req; // -C fails when the rule is absent: that is the usual case
        }
      case 'sysctl': {
        const previous = readFileSync(join(this.procSys, req.key), 'utf8').trim();
        return previous === req.value ? undefined : { ...req, previous };
      }
      case 'file':
        return { kind: 'file', path: req.path, previous: snapshotFile(req.path) };
    }
  }

  private async perform(c: Change, req: ChangeRequest): Promise<void> {
    switch (c.kind) {
      case 'route':
        await this.exec('ip', routeArgs('add', c));
        return;
      case 'iptables':
        await this.exec(c.binary, iptArgs('-A', c));
        return;
      case 'sysctl':
        writeFileSync(join(this.procSys, c.key), `${c.value}\n`);
        return;
      case 'file':
        // A symlink (systemd-resolved's stub) is replaced by a plain file, and put back on undo.
        if (c.previous.type === 'symlink') unlinkSync(c.path);
        writeFileSync(c.path, req.kind === 'file' ? req.content : '', { mode: 0o644 });
        return;
    }
  }

  private async undo(c: Change): Promise<void> {
    switch (c.kind) {
      case 'route':
        await this.exec('ip', routeArgs('del', c));
        return;
      case 'iptables':
        await this.exec(c.binary, iptArgs('-D', c));
        return;
      default:
        this.undoSync(c);
    }
  }

  private undoSync(c: Change): void {
    switch (c.kind) {
      case 'route':
        return this.execSync('ip', routeArgs('del', c));
      case 'iptables':
        return this.execSync(c.binary, iptArgs('-D', c));
      case 'sysctl':
        writeFileSync(join(this.procSys, c.key), `${c.previous}\n`);
        return;
      case 'file':
        restoreFile(c.path, c.previous);
    }
  }

  private async persist(): Promise<void> {
    if (this.list.length === 0) await removeFile(this.file);
    else await writeJsonAtomic(this.file, { version: 1, pid: process.pid, changes: this.list });
  }

  private hook(): void {
    if (this.hooked) return;
    this.hooked = true;
    process.on('exit', this.exitHook);
  }

  private unhook(): void {
    if (!this.hooked) return;
    this.hooked = false;
    process.off('exit', this.exitHook);
  }
}

/** One-line text of a change, for logs. */
export function describe(c: ChangeRequest | Change): string {
  switch (c.kind) {
    case 'route':
      return `ip ${routeArgs('add', c).join(' ')}`;
    case 'iptables':
      return `${c.binary} ${iptArgs('-A', c).slice(2).join(' ')}`;
    case 'sysctl':
      return `sysctl ${c.key.replaceAll('/', '.')}=${c.value}`;
    case 'file':
      return `replace ${c.path}`;
  }
}
