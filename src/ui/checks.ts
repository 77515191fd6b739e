/**
 * The setup wizard's self-checks: can this machine reach the server the way
 * the config says, and what to fix when it cannot. Every item is measured or
 * says that it was not — no figure is ever made up.
 *
 *   reach  one per endpoint (the link, each backup server, each --path): a real
 *          dial and handshake, with a deadline; the session is closed at once
 *   udp    the udp endpoints' results, or 'not_offered' when the config has none
 *   mtu    the first hop's MTU toward the server (first-hop.ts), an upper bound of the
 *          path MTU: 'warn' when udp.datagramSize does not fit through it already,
 *          else 'not_measured' (the hops beyond it are not probed)
 *   nat    this end's address of a path beside where the server sees it from (nat.ts)
 *   speed  one per endpoint that answered, one after the other (they would share the uplink):
 *          a download then an upload through that endpoint's session for a short budget
 *          (client/speed-test.ts); 'not_offered' from a server older than speed tests
 *
 * Each item: { id, title, result: pass | warn | fail | not_offered | not_measured, detail, fix? }.
 */
import { AuthError, NotOfferedError, TimeoutError, toError } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import { CertificateError, DialError } from '../carriers/errors.js';
import { observedAddresses } from '../client/observed-address.js';
import { speedTest, type SpeedResult } from '../client/speed-test.js';
import { clientInitForLink, pathsFromConfig } from '../config/dial-link.js';
import type { ClientConfig } from '../config/schema.js';
import { RefusedError } from '../paths/refusal.js';
import { SessionClient, type SessionClientInit } from '../paths/session-client.js';
import type { Session } from '../session/session.js';
import { firstHop, type FirstHop } from './first-hop.js';
import { natItem, type NatSample } from './nat.js';
import type { CheckItem } from './types.js';

export type { CheckItem, CheckResult } from './types.js';

/** A session a dial opened, for the speed test; close() ends it. (A fake dialer may give none.) */
export interface Dialed {
  readonly session?: Session;
  close(): void;
}

/** Opens a session as `init` says; rejects with why it could not. */
export type Dialer = (init: SessionClientInit, signal: AbortSignal) => Promise<Dialed | void>;

/** The real dialer: a SessionClient that tries once (no retries). */
export const realDialer: Dialer = async (init, signal) => {
  const client = new SessionClient({ ...init, maxRetries: 0, refusedRetryMs: 0 });
  try {
    const session = await client.connect(signal);
    return { session, close: () => client.close() };
  } catch (err) {
    client.close();
    throw err;
  }
};

/** Options of {@link runChecks}. */
export interface ChecksInit {
  /** Deadline of each handshake, ms. @default 5000 */
  readonly timeoutMs?: number;
  /** @default realDialer */
  readonly dial?: Dialer;
  /** Time, ms (durations). @default performance.now */
  readonly now?: () => number;
  /** @default first-hop.ts firstHop */
  readonly firstHop?: (host: string, port: number) => Promise<FirstHop | undefined>;
  /** How long each direction of each speed test runs, ms; 0 = no speed test. @default 2000 */
  readonly speedBudgetMs?: number;
}

interface Target {
  id: string;
  /** What the endpoint is, for the speed item: "the link", "backup server 1", "path SPEC". */
  what: string;
  title: string;
  carrier: string;
  where: string;
  init: SessionClientInit;
}

function targetsOf(cfg: ClientConfig, timeoutMs: number): Target[] {
  const base = { handshakeTimeoutMs: timeoutMs, cipher: cfg.records.cipher, tlsBound: cfg.records.tlsBound };
  const out: Target[] = [];
  const server = (l: ClientConfig['link']): string => formatHostPort({ host: l.host, port: l.port });
  out.push({ id: 'reach:link', what: 'the link', title: `server reachable over ${cfg.link.carrier} (the link)`, carrier: cfg.link.carrier, where: server(cfg.link), init: clientInitForLink(cfg.link, base) });
  cfg.backupServers.forEach((b, i) =>
    out.push({ id: `reach:backup${i}`, what: `backup server ${i + 1}`, title: `backup server ${i + 1} reachable over ${b.carrier}`, carrier: b.carrier, where: server(b), init: clientInitForLink(b, base) }),
  );
  const specs = pathsFromConfig(cfg.link, cfg.paths);
  specs.forEach((p, i) => {
    const spec = cfg.paths[i] as ClientConfig['paths'][number];
    out.push({
      id: `reach:path${i}`,
      what: `path ${spec.spec}`,
      title: `path ${spec.spec} reachable`,
      carrier: spec.scheme,
      where: formatHostPort(p.endpoint),
      init: { ...clientInitForLink(cfg.link, base), carrier: p.carrier, endpoint: p.endpoint },
    });
  });
  return out;
}

/** Why a dial failed, and what to fix, in words. */
export function explain(err: unknown, t: { carrier: string; where: string }, timeoutMs: number): { detail: string; fix: string } {
  const e = toError(err);
  const port = t.where.slice(t.where.lastIndexOf(':') + 1);
  const udp = t.carrier === 'udp';
  if (err instanceof DialError) {
    switch (err.errno) {
      case 'ECONNREFUSED':
        return { detail: 'the connection was refused', fix: `nothing listens on ${t.where}${udp ? '/udp' : ''}: check that the server runs with --listen ${t.carrier}://…:${port}, and the port in the link` };
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return { detail: 'the host name does not resolve', fix: 'check the host in the link, and this machine\'s DNS' };
      case 'ENETUNREACH':
      case 'EHOSTUNREACH':
        return { detail: 'no route to it', fix: 'this machine has no working route there: check its network connection (and the path\'s bind= interface)' };
      default:
        return { detail: e.message, fix: `check the server's address and port, and that ${port}/${udp ? 'udp' : 'tcp'} is open on its firewall` };
    }
  }
  if (err instanceof CertificateError) return { detail: e.message, fix: 'the server\'s TLS certificate does not match the link (fp= pin or host name): get a fresh link from the server' };
  if (err instanceof RefusedError) return { detail: e.message, fix: 'the server knows this user but will not let it in: ask its admin (the user may be disabled, expired or over quota)' };
  if (err instanceof AuthError) return { detail: e.message, fix: 'the server did not accept this link\'s keys: get a fresh link from the server' };
  if (err instanceof TimeoutError || /timed out|timeout/i.test(e.message)) {
    return udp
      ? { detail: `no answer over udp within ${timeoutMs / 1000} s`, fix: `UDP to ${t.where} is blocked on the way, or the server does not listen on udp://…:${port}: open ${port}/udp on the server's firewall (links over tcp, tls or ws do not need UDP)` }
      : { detail: `no handshake within ${timeoutMs / 1000} s`, fix: `a firewall drops ${port}/tcp, or the server dropped the handshake (a link for another server: wrong pk=, or a deleted user): check the firewall, then get a fresh link` };
  }
  return { detail: e.message, fix: 'check the link and that the server runs' };
}

/** Runs the checks of `cfg` (handshakes in parallel). Never rejects. */
export async function runChecks(cfg: ClientConfig, init: ChecksInit = {}): Promise<CheckItem[]> {
  const timeoutMs = init.timeoutMs ?? 5000;
  const dial = init.dial ?? realDialer;
  const now = init.now ?? (() => performance.now());
  const targets = targetsOf(cfg, timeoutMs);
  const open: { t: Target; dialed: Dialed | undefined }[] = [];
  let speed: CheckItem[];
  let reach: CheckItem[];
  const nat: NatSample[] = [];
  try {
    reach = await Promise.all(
      targets.map(async (t): Promise<CheckItem> => {
        const ac = new AbortController();
        const timer = setTimeout(() => ac.abort(new TimeoutError(`handshake with ${t.where} timed out`)), timeoutMs + 1000);
        const start = now();
        try {
          const dialed = await dial(t.init, ac.signal);
          const ms = Math.round(now() - start);
          open.push({ t, dialed: dialed ?? undefined });
          return { id: t.id, title: t.title, carrier: t.carrier, result: 'pass', detail: `${t.where}: handshake done in ${ms} ms`, ms };
        } catch (err) {
          const x = explain(ac.signal.aborted ? ac.signal.reason : err, t, timeoutMs);
          return { id: t.id, title: t.title, carrier: t.carrier, result: 'fail', detail: `${t.where}: ${x.detail}`, fix: x.fix };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    // In the config's order, one after the other: tests side by side would share (and split) the uplink.
    open.sort((a, b) => targets.indexOf(a.t) - targets.indexOf(b.t));
    for (const o of open) {
      const s = o.dialed?.session;
      const local = s?.stats.paths[0]?.local;
      if (s === undefined || local === undefined) continue;
      try {
        const seen = (await observedAddresses(s))[0];
        nat.push(seen === undefined ? { carrier: o.t.carrier, local, error: 'the server could not tell where it sees us from' } : { carrier: o.t.carrier, local, observed: seen });
      } catch (err) {
        nat.push({ carrier: o.t.carrier, local, error: err instanceof NotOfferedError ? err.message : `the server did not say where it sees us from: ${toError(err).message}` });
      }
    }
    speed = [];
    for (const o of open) speed.push(await speedItem(o.t, o.dialed?.session, init.speedBudgetMs ?? 2000));
  } finally {
    for (const o of open) o.dialed?.close();
  }
  if (speed.length === 0) speed.push({ id: 'speed', title: 'speed per path', result: 'not_measured', detail: 'not measured: no server answered the handshake' });
  const udp = reach.filter((r) => r.carrier === 'udp');
  const udpItem: CheckItem =
    udp.length === 0
      ? { id: 'udp', title: 'UDP to the server', result: 'not_offered', detail: 'the config has no udp:// endpoint, so UDP was not tried', fix: 'for the udp carrier, the server adds --listen udp://0.0.0.0:PORT and hands out a link (or --path udp://HOST:PORT) for it' }
      : udp.some((r) => r.result === 'pass')
        ? { id: 'udp', title: 'UDP to the server', result: 'pass', detail: 'a udp handshake went through: UDP is not blocked' }
        : { id: 'udp', title: 'UDP to the server', result: 'fail', detail: 'no udp handshake went through: UDP looks blocked (or the server does not listen on udp)', fix: udp[0]?.fix ?? 'open the udp port on the server\'s firewall' };
  return [
    ...reach,
    udpItem,
    natItem(nat),
    await mtuItem(cfg, init.firstHop ?? firstHop),
    ...speed,
  ];
}

const mbit = (r: SpeedResult): string => `${((r.bytesPerSec * 8) / 1e6).toFixed(r.bytesPerSec * 8 < 1e7 ? 2 : 1)} Mbit/s`;

/** The speed test of one endpoint's session: a download, then an upload. */
async function speedItem(t: Target, session: Session | undefined, budgetMs: number): Promise<CheckItem> {
  const base = { id: t.id.replace(/^reach:/, 'speed:'), title: `speed over ${t.carrier} (${t.what})`, carrier: t.carrier } as const;
  if (budgetMs <= 0) return { ...base, result: 'not_measured', detail: 'not measured: the speed test is off' };
  if (session === undefined) return { ...base, result: 'not_measured', detail: 'not measured: the dial left no session to measure' };
  try {
    const down = await speedTest(session, { direction: 'down', budgetMs });
    const up = await speedTest(session, { direction: 'up', budgetMs });
    const moved = (down.bytes + up.bytes) / 1e6;
    return {
      ...base,
      result: 'pass',
      detail: `${t.where}: ↓ ${mbit(down)}, ↑ ${mbit(up)} (through the session with its encryption, about ${budgetMs / 1000} s each way, ${moved.toFixed(1)} MB moved)`,
    };
  } catch (err) {
    if (err instanceof NotOfferedError) return { ...base, result: 'not_offered', detail: `${t.where}: not measured: ${err.message}` };
    return { ...base, result: 'fail', detail: `${t.where}: the speed test broke off: ${toError(err).message}`, fix: 'the connection does not hold under load: try again, then check the link\'s quality (or try another carrier)' };
  }
}

/** IPv4 + UDP headers, IPv6 + UDP headers. */
const UDP_OVERHEAD = { IPv4: 28, IPv6: 48 } as const;

/** The MTU item: what the first hop toward the link's server allows, against udp.datagramSize. */
async function mtuItem(cfg: ClientConfig, hopOf: (host: string, port: number) => Promise<FirstHop | undefined>): Promise<CheckItem> {
  const size = cfg.udp.datagramSize;
  const base = { id: 'mtu', title: 'path MTU' } as const;
  const hop = await hopOf(cfg.link.host, cfg.link.port);
  if (hop === undefined) {
    return { ...base, result: 'not_measured', detail: `not measured: the interface toward ${formatHostPort(cfg.link)} or its MTU could not be found; polytun does not probe the path MTU (udp paths send datagrams of at most ${size} bytes, udp.datagramSize)` };
  }
  const overhead = UDP_OVERHEAD[hop.family];
  const udpUsed = [cfg.link, ...cfg.backupServers].some((l) => l.carrier === 'udp') || cfg.paths.some((p) => p.scheme === 'udp');
  const seen = `the first hop toward ${formatHostPort(cfg.link)} is ${hop.iface} with MTU ${hop.mtu} (an upper bound: the hops beyond it were not probed)`;
  if (udpUsed && size + overhead > hop.mtu) {
    return { ...base, result: 'warn', detail: `${seen}; udp datagrams of ${size} bytes plus ${overhead} bytes of ${hop.family}/UDP headers do not fit and are fragmented`, fix: `set udp.datagramSize to ${hop.mtu - overhead} or less` };
  }
  return { ...base, result: 'not_measured', detail: `path MTU not measured: ${seen}${udpUsed ? `; udp datagrams of ${size} bytes fit through it` : ''}` };
}
