/**
 * Command-line wrapper of the impairment relay, for namespace labs:
 *
 *   ip netns exec NS node --import tsx test/tools/relay-cli.ts \
 *     --proto tcp --listen 10.0.0.1:443 --target 10.0.1.2:443 --delay 40 --rate 20mbit \
 *     --control 10.0.0.1:9000
 *
 * Impairment flags apply to both directions (so --delay 40 adds 80 ms to a
 * round trip); use the control port's `set up.delayMs …` for one direction.
 * Prints `relay control HOST:PORT` (when --control is given) and then, last,
 * `relay listening HOST:PORT -> HOST:PORT` once ready; tests wait for that
 * line. SIGTERM/SIGINT close everything and exit 0. Bad flags exit 2,
 * a failure to start exits 1.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, toError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/logger.js';
import { ControlServer, type AnyRelay } from './relay-control.js';
import type { HostPort, PacketImpairment } from './relay-shared.js';
import { formatHostPort, parseHostPort, parseRate } from './relay-shared.js';
import { TcpRelay } from './relay-tcp.js';
import { UdpRelay } from './relay-udp.js';

const USAGE =
  'usage: relay-cli --proto tcp|udp --listen HOST:PORT --target HOST:PORT [--delay MS] [--jitter MS] ' +
  '[--rate 40mbit|5MB] [--loss P] [--reorder P] [--dup P] [--seed N] [--control HOST:PORT] [--idle-timeout MS]';

/** What the command line asks for. */
export interface RelayCliOptions {
  proto: 'tcp' | 'udp';
  listen: HostPort;
  target: HostPort;
  /** Applied to both directions. */
  impairment: Partial<PacketImpairment>;
  seed?: number;
  control?: HostPort;
  idleTimeoutMs?: number;
}

function num(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw new ConfigError(flag, `expected a number ≥ 0, got "${raw}"`);
  return n;
}

/** Parses argv (without node and script). Throws ConfigError on bad or missing flags. */
export function parseCliArgs(argv: string[]): RelayCliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: Object.fromEntries(
        ['proto', 'listen', 'target', 'delay', 'jitter', 'rate', 'loss', 'reorder', 'dup', 'seed', 'control', 'idle-timeout'].map((k) => [
          k,
          { type: 'string' as const },
        ]),
      ),
    }));
  } catch (err) {
    throw new ConfigError('argv', toError(err).message);
  }
  const { proto, listen, target } = values;
  if (proto !== 'tcp' && proto !== 'udp') throw new ConfigError('--proto', `expected tcp or udp, got "${proto ?? ''}"`);
  if (listen === undefined) throw new ConfigError('--listen', 'required');
  if (target === undefined) throw new ConfigError('--target', 'required');
  const imp: Partial<PacketImpairment> = {};
  const put = (key: keyof PacketImpairment, v: number | undefined): void => {
    if (v !== undefined) imp[key] = v;
  };
  put('delayMs', num(values.delay, '--delay'));
  put('jitterMs', num(values.jitter, '--jitter'));
  put('rateBps', values.rate === undefined ? undefined : parseRate(values.rate, '--rate'));
  put('lossRate', num(values.loss, '--loss'));
  put('reorderRate', num(values.reorder, '--reorder'));
  put('duplicateRate', num(values.dup, '--dup'));
  if (proto === 'tcp' && (imp.lossRate || imp.reorderRate || imp.duplicateRate)) {
    throw new ConfigError('--proto', '--loss, --reorder and --dup need --proto udp');
  }
  const opts: RelayCliOptions = {
    proto,
    listen: parseHostPort(listen, '--listen'),
    target: parseHostPort(target, '--target'),
    impairment: imp,
  };
  const seed = num(values.seed, '--seed');
  if (seed !== undefined) opts.seed = seed;
  if (values.control !== undefined) opts.control = parseHostPort(values.control, '--control');
  const idle = num(values['idle-timeout'], '--idle-timeout');
  if (idle !== undefined) opts.idleTimeoutMs = idle;
  return opts;
}

/** Warnings and errors to stderr as JSON lines; debug and info are dropped. */
const stderrLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'warn', msg, ...errFields(obj) })}\n`),
  error: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'error', msg, ...errFields(obj) })}\n`),
  child: () => stderrLogger,
};

function errFields(obj: object): object {
  const { err, ...rest } = obj as { err?: unknown };
  return err === undefined ? rest : { ...rest, err: toError(err).message };
}

function makeRelay(o: RelayCliOptions): AnyRelay {
  const seed = o.seed === undefined ? {} : { seed: o.seed };
  if (o.proto === 'udp') {
    const idle = o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.idleTimeoutMs };
    return new UdpRelay({ listen: o.listen, target: o.target, up: o.impairment, down: o.impairment, logger: stderrLogger, ...seed, ...idle });
  }
  const { delayMs, jitterMs, rateBps } = o.impairment;
  const imp = Object.fromEntries(Object.entries({ delayMs, jitterMs, rateBps }).filter(([, v]) => v !== undefined));
  return new TcpRelay({ listen: o.listen, target: o.target, up: imp, down: imp, logger: stderrLogger, ...seed });
}

async function main(): Promise<void> {
  let opts: RelayCliOptions;
  try {
    opts = parseCliArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`relay-cli: ${toError(err).message}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const relay = makeRelay(opts);
  const control = opts.control === undefined ? null : new ControlServer(relay, opts.control, stderrLogger);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // If some handle were still open after close(), say so instead of hanging the lab.
    setTimeout(() => {
      process.stderr.write('relay-cli: handles still open 5 s after close; forcing exit\n');
      process.exit(1);
    }, 5000).unref();
    Promise.all([control?.close(), relay.close()]).then(
      () => {
        process.exitCode = 0;
      },
      (err: unknown) => {
        process.stderr.write(`relay-cli: close failed: ${toError(err).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await relay.start();
    if (control !== null) {
      await control.start();
      process.stdout.write(`relay control ${formatHostPort(control.address)}\n`);
    }
  } catch (err) {
    process.stderr.write(`relay-cli: cannot start: ${toError(err).message}\n`);
    process.exit(1);
  }
  process.stdout.write(`relay listening ${formatHostPort(relay.address)} -> ${formatHostPort(opts.target)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`relay-cli: ${toError(err).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
