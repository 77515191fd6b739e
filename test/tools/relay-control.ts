/**
 * The relay's control port: a line-based TCP endpoint so a lab test can cut
 * or reshape the links of a relay running in another network namespace
 * (`nc`-friendly). One command per line, one JSON reply per line:
 *
 *   cut [reset|close]                   → {"ok":true,"cut":3}
 *   blackhole on|off                    → {"ok":true}
 *   refuse on|off                       → {"ok":true}             (tcp only)
 *   cutafter BYTES|off [reset|close]    → {"ok":true}             (tcp only)
 *   set up|down|both.KEY VALUE          → {"ok":true,"up":{…},"down":{…}}
 *   get                                 → {"ok":true,"up":{…},"down":{…}}
 *   stats                               → {"ok":true,"stats":{…}}
 *   help                                → {"ok":true,"help":"…"}
 *   quit                                → closes the control connection
 *   errors                              → {"ok":false,"code":"ERR_CONFIG","error":"…"}
 *
 * KEY is an impairment field (delayMs, jitterMs, rateBps, and for udp
 * lossRate, reorderRate, duplicateRate); rateBps also takes `40mbit`, `5MB`.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { ClosedError, ConfigError, PolytunError, toError } from '../../src/core/errors.js';
import { nullLogger, type Logger } from '../../src/core/logger.js';
import { TcpRelay } from './relay-tcp.js';
import type { UdpRelay } from './relay-udp.js';
import type { CutMode, HostPort } from './relay-shared.js';
import { parseRate } from './relay-shared.js';

/** Either kind of relay. */
export type AnyRelay = TcpRelay | UdpRelay;

const HELP =
  'cut [reset|close] | blackhole on|off | refuse on|off | cutafter BYTES|off [reset|close] | set up|down|both.KEY VALUE | get | stats | help';
/** A control line longer than this is refused (and the connection closed). */
const MAX_LINE = 4096;

function onOff(word: string | undefined, cmd: string): boolean {
  if (word === 'on') return true;
  if (word === 'off') return false;
  throw new ConfigError(cmd, `expected on|off, got "${word ?? ''}"`);
}

function cutMode(word: string | undefined, cmd: string): CutMode {
  if (word === undefined || word === 'reset') return 'reset';
  if (word === 'close') return 'close';
  throw new ConfigError(cmd, `expected reset|close, got "${word}"`);
}

function tcpOnly(relay: AnyRelay, cmd: string): TcpRelay {
  if (relay instanceof TcpRelay) return relay;
  throw new ConfigError(cmd, 'only a tcp relay supports this');
}

function settings(relay: AnyRelay): Record<string, unknown> {
  return { ok: true, up: relay.impairment('up'), down: relay.impairment('down') };
}

/**
 * Runs one control command against a relay and returns the reply object.
 * Throws ConfigError for an unknown command or a bad argument.
 */
export function runControlCommand(relay: AnyRelay, line: string): Record<string, unknown> {
  const [cmd = '', ...args] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'cut':
      return { ok: true, cut: relay instanceof TcpRelay ? relay.cutAll({ mode: cutMode(args[0], cmd) }) : relay.cutAll() };
    case 'blackhole':
      relay.blackhole(onOff(args[0], cmd));
      return { ok: true };
    case 'refuse':
      tcpOnly(relay, cmd).refuse(onOff(args[0], cmd));
      return { ok: true };
    case 'cutafter': {
      const tcp = tcpOnly(relay, cmd);
      if (args[0] === 'off') tcp.cutAfterBytes(null);
      else tcp.cutAfterBytes(Number(args[0]), { mode: cutMode(args[1], cmd) });
      return { ok: true };
    }
    case 'set': {
      const [path = '', raw = ''] = args;
      const [dir, key] = path.split('.');
      if ((dir !== 'up' && dir !== 'down' && dir !== 'both') || key === undefined || key === '') {
        throw new ConfigError(cmd, `expected up|down|both.KEY, got "${path}"`);
      }
      const value = key === 'rateBps' ? parseRate(raw, path) : Number(raw);
      if (raw === '' || !Number.isFinite(value)) throw new ConfigError(path, `expected a number, got "${raw}"`);
      relay.set(dir, { [key]: value });
      return settings(relay);
    }
    case 'get':
      return settings(relay);
    case 'stats':
      return { ok: true, stats: relay.stats };
    case 'help':
      return { ok: true, help: HELP };
    default:
      throw new ConfigError('control', `unknown command "${cmd}" (${HELP})`);
  }
}

/** Serves `runControlCommand` on a TCP port, one JSON reply per line. */
export class ControlServer {
  private server: Server | null = null;
  private bound: HostPort | null = null;
  private readonly conns = new Set<Socket>();
  private closing: Promise<void> | null = null;

  constructor(
    private readonly relay: AnyRelay,
    private readonly listenAt: HostPort,
    private readonly logger: Logger = nullLogger,
  ) {}

  /** Starts listening. */
  async start(): Promise<void> {
    const server = createServer((s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenAt.port, this.listenAt.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.logger.error({ err }, 'relay control: server error'));
    const a = server.address() as AddressInfo;
    this.bound = { host: a.address, port: a.port };
    this.server = server;
  }

  /** The bound address. Throws before start(). */
  get address(): HostPort {
    if (this.bound === null) throw new ClosedError('ControlServer (not started)');
    return { ...this.bound };
  }

  /** Stops listening and drops control connections; resolves when closed. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const s of this.conns) s.destroy();
      if (this.server === null) return resolve();
      this.server.close(() => resolve());
    });
    return this.closing;
  }

  private onConnection(s: Socket): void {
    this.conns.add(s);
    s.on('close', () => this.conns.delete(s));
    s.on('error', (err) => this.logger.debug({ err }, 'relay control: connection error'));
    s.setEncoding('utf8');
    let pending = '';
    let done = false;
    s.on('data', (text: string) => {
      if (done) return;
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line === 'quit') {
          done = true;
          s.end();
          return;
        }
        if (line !== '') s.write(`${JSON.stringify(this.execute(line))}\n`);
      }
      if (pending.length > MAX_LINE) {
        done = true;
        s.end(`${JSON.stringify({ ok: false, code: 'ERR_LIMIT', error: `control line over ${MAX_LINE} bytes` })}\n`);
      }
    });
  }

  private execute(line: string): Record<string, unknown> {
    try {
      return runControlCommand(this.relay, line);
    } catch (err) {
      const e = toError(err);
      this.logger.debug({ err: e, line }, 'relay control: command failed');
      return { ok: false, code: e instanceof PolytunError ? e.code : 'ERR_INTERNAL', error: e.message };
    }
  }
}
