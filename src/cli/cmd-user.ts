/**
 * `polytun user add|list|del|disable|enable`: the users of a server's store
 * from the command line (SQLite users.db in the data dir, or --store
 * postgres://…). A running server on the same store follows the changes
 * within a second (SQLite: data_version polling; PostgreSQL: NOTIFY).
 *
 * `add` prints the new user's links once, built from DIR/links.json (where
 * the server last listened); they are not shown again on server restarts
 * (`polytun link --user NAME` prints them on request). The data dir must
 * exist: a mistyped one is an error naming it.
 *
 * `del` and `disable` stop new sessions at once; a session already open goes
 * on until it ends (only the running server can cut it: the admin API's
 * `DELETE /api/users/ID` kicks by default, `POST /api/users/ID/kick`).
 */
import type { Command } from 'commander';
import { parseBitRate } from '../arq/cc-choice.js';
import { ConfigError } from '../core/errors.js';
import { nullLogger } from '../core/logger.js';
import { decodeKey, encodeKey } from '../secure/keys.js';
import type { User, UserStore } from '../store/index.js';
import { allUsers, endpointsOf, openUsers, writeLinks } from './data-dir-users.js';
import { absPath } from './flags.js';
import type { CliIo } from './io.js';

interface CommonOpts {
  dataDir?: string;
  store?: string;
}

/** --udp-max-rate: a bit rate (50mbit) as whole bytes per second. */
function udpRate(text: string): number {
  const r = parseBitRate(text);
  if (typeof r === 'string') throw new ConfigError('--udp-max-rate', r);
  return Math.round(r);
}

interface AddOpts extends CommonOpts {
  token?: boolean;
  publicKey?: string;
  wssPath?: boolean;
  quota?: string;
  expires?: string;
  dst?: string;
  udpMaxRate?: string;
  disabled?: boolean;
  qr?: boolean;
}

function common(c: Command): Command {
  return c
    .option('--data-dir <dir>', "the server's data dir (must exist)")
    .option('--store <url>', "the server's user store (default: the one the server recorded in DATA_DIR/links.json, else SQLite users.db there)");
}

/** Runs `fn` on the store of the data dir; closes it after. */
async function withStore<T>(opts: CommonOpts, write: boolean, fn: (store: UserStore, dir: string, serverKey: string, recorded: string | undefined) => Promise<T>): Promise<T> {
  if (opts.dataDir === undefined) throw new ConfigError('--data-dir', "is required: the server's data dir");
  const dir = absPath(opts.dataDir) as string;
  // links.json (if any) says which store the server uses; --store wins.
  const recorded = await endpointsOf(dir, undefined, undefined).then(
    (r) => r,
    () => undefined, // no links.json yet: the SQLite default, and add prints the secret without links
  );
  const { dataDir, store } = await openUsers(dir, opts.store ?? recorded?.store ?? '', write, nullLogger);
  try {
    return await fn(store, dataDir.dir, dataDir.serverPublicKey, recorded?.store);
  } finally {
    await store.close();
  }
}

async function findUser(store: UserStore, name: string): Promise<User> {
  const u = await store.getUser(name);
  if (u === undefined) throw new ConfigError('user', `no user '${name}'`);
  return u;
}

/** "1.5 GiB"-style sizes: a plain number of bytes or with a K/M/G/T suffix (powers of 1024). */
function parseBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(text.trim());
  if (m === null) throw new ConfigError('--quota', `expected bytes, e.g. 500M or 20G, got ${JSON.stringify(text)}`);
  const unit = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[(m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(m[1]) * unit);
}

function parseTime(text: string): number {
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new ConfigError('--expires', `expected a date/time such as 2027-01-31 or 2027-01-31T12:00:00Z, got ${JSON.stringify(text)}`);
  return t;
}

function row(u: User): string[] {
  const iso = (t: number | null): string => (t === null ? '-' : new Date(t).toISOString().slice(0, 19).replace('T', ' '));
  const udpCap = u.udpMaxRate === null ? '-' : `${Math.round((u.udpMaxRate * 8) / 1e4) / 100}mbit`;
  return [u.name, u.kind, u.enabled ? 'yes' : 'no', u.quotaBytes === null ? '-' : String(u.quotaBytes), String(u.bytesUp + u.bytesDown), iso(u.expiresAt), udpCap, u.wssPath ?? '-', iso(u.createdAt)];
}

/** Adds `polytun user …` to `program`. */
export function registerUserCommand(program: Command, io: CliIo): Command {
  const user = program.command('user').description("manage a server's users (its SQLite users.db or --store): add, list, del, disable, enable");

  common(user.command('add <name>').description("add a user and print its links (once: later, polytun link --user NAME)"))
    .option('--token', 'a token user (selected on the shared ws/wss token path by its bearer value) instead of a key user')
    .option('--public-key <key>', 'a key user whose private key stays with its client: only this public key is stored, and no link is printed')
    .option('--no-wss-path', 'no ws/wss URL path of its own (a key user then has no ws/wss links)')
    .option('--quota <bytes>', 'traffic quota, up + down (e.g. 20G); default unlimited')
    .option('--expires <time>', 'refuse the user from this date/time on (ISO 8601)')
    .option('--dst <host:port>', "fixed destination of all the user's traffic")
    .option('--udp-max-rate <rate>', "the highest fixed rate (--cc fixed:RATE) this user's udp clients may make the server send at, e.g. 50mbit; default: the server's --udp-max-rate alone")
    .option('--disabled', 'create it disabled')
    .option('--qr', 'print QR codes too (default: only when stdout is a terminal)')
    .option('--no-qr', 'never print QR codes')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const opts = cmd.opts<AddOpts>();
      if (opts.token === true && opts.publicKey !== undefined) throw new ConfigError('--public-key', 'only for key users (not with --token)');
      const { generateWssPath } = await import('../store/index.js');
      await withStore(opts, true, async (store, dir, serverKey) => {
        const u = await store.createUser({
          name,
          credential: opts.token === true ? { kind: 'token' } : opts.publicKey !== undefined ? { kind: 'key', publicKey: decodeKey(opts.publicKey, '--public-key') } : { kind: 'key' },
          wssPath: opts.wssPath === false ? null : generateWssPath(),
          ...(opts.quota === undefined ? {} : { quotaBytes: parseBytes(opts.quota) }),
          ...(opts.expires === undefined ? {} : { expiresAt: parseTime(opts.expires) }),
          ...(opts.dst === undefined ? {} : { dst: opts.dst }),
          ...(opts.udpMaxRate === undefined ? {} : { udpMaxRate: udpRate(opts.udpMaxRate) }),
          ...(opts.disabled === true ? { enabled: false } : {}),
        });
        io.stderr.write(`polytun: added ${u.kind} user '${u.name}' (id ${u.id}, public key ${encodeKey(u.publicKey)})\n`);
        if (u.secret === null) {
          io.stderr.write('polytun: only its public key is stored: its client puts its own private key before the \'@\' of a link of this server\n');
          return;
        }
        let endpoints;
        try {
          endpoints = (await endpointsOf(dir, undefined, undefined)).endpoints;
        } catch (err) {
          io.stderr.write(`polytun: no links yet (${(err as Error).message}); print them later with: polytun link --data-dir ${dir} --user ${u.name}\n`);
          return;
        }
        writeLinks(io, u, endpoints, serverKey, opts.qr ?? io.stdout.isTTY === true);
        io.stderr.write('polytun: these links are shown once (they are secrets); polytun link --user NAME prints them again\n');
      });
    });

  common(user.command('list').description('list the users (no secrets)'))
    .option('--json', 'one JSON object per user')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.opts<CommonOpts & { json?: boolean }>();
      await withStore(opts, false, async (store) => {
        const users = await allUsers(store, false);
        if (opts.json === true) {
          for (const u of users) io.stdout.write(`${JSON.stringify({ ...u, publicKey: encodeKey(u.publicKey) })}\n`);
          return;
        }
        const rows = [['NAME', 'KIND', 'ENABLED', 'QUOTA', 'TRAFFIC', 'EXPIRES', 'UDP CAP', 'WSS PATH', 'CREATED'], ...users.map(row)];
        const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
        for (const r of rows) io.stdout.write(`${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()}\n`);
      });
    });

  common(user.command('del <name>').description('delete a user: no new sessions; a live one goes on until it ends (the admin API can kick it)')).action(async (name: string, _o: unknown, cmd: Command) => {
    await withStore(cmd.opts<CommonOpts>(), true, async (store) => {
      const u = await findUser(store, name);
      await store.deleteUser(u.id);
      io.stderr.write(`polytun: deleted user '${u.name}'; a session it has open goes on until it ends (kick it with the admin API, or restart the server)\n`);
    });
  });

  for (const [verb, enabled] of [['disable', false], ['enable', true]] as const) {
    common(user.command(`${verb} <name>`).description(enabled ? 'accept the user again' : 'refuse new sessions of the user (a live one goes on)')).action(async (name: string, _o: unknown, cmd: Command) => {
      await withStore(cmd.opts<CommonOpts>(), true, async (store) => {
        const u = await findUser(store, name);
        await store.updateUser(u.id, { enabled });
        io.stderr.write(`polytun: ${verb}d user '${u.name}'\n`);
      });
    });
  }
  return user;
}
