/**
 * relay-cli as a child process (the way labs run it in a namespace): ready
 * line, data through, control port commands, SIGTERM → exit 0; plus the
 * flag parsers in-process.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseCliArgs } from '../../tools/relay-cli.js';
import { parseHostPort, parseRate } from '../../tools/relay.js';
import { connectClient, receivedBytes, sendUdp, seqPacket, startEcho, startUdp, waitFor } from './relay-helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface RelayProcess {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
}

/** Starts relay-cli and resolves once it printed its ready line (or rejects when it exits first). */
async function spawnRelay(args: string[]): Promise<RelayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/tools/relay-cli.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (err += t));
  const lines: string[] = [];
  const exited = once(child, 'exit');
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const ready = new Promise<void>((resolve) =>
    rl.on('line', (line) => {
      lines.push(line);
      if (line.startsWith('relay listening ')) resolve();
    }),
  );
  await Promise.race([ready, exited.then(([code]) => assert.fail(`relay-cli exited (${String(code)}) before ready: ${err}`))]);
  return { child, lines, stderr: () => err };
}

function portOf(lines: string[], re: RegExp): number {
  const m = lines.map((l) => re.exec(l)).find((x) => x !== null);
  assert.ok(m, `no line matches ${re}: ${lines.join(' | ')}`);
  return Number(m[1]);
}

/** Sends one control line and returns the parsed JSON reply. */
async function control(port: number, line: string): Promise<Record<string, unknown>> {
  const s = connect({ host: '127.0.0.1', port });
  s.setEncoding('utf8');
  s.write(`${line}\n`);
  let buf = '';
  for await (const chunk of s) {
    buf += chunk as string;
    if (buf.includes('\n')) break;
  }
  s.destroy();
  return JSON.parse(buf.slice(0, buf.indexOf('\n'))) as Record<string, unknown>;
}

async function stop(p: RelayProcess): Promise<number | null> {
  const exited = once(p.child, 'exit');
  p.child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  return code;
}

describe('relay-cli', () => {
  it('tcp: ready line, data through, control port cut/set/stats, SIGTERM exits 0', async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const p = await spawnRelay(['--proto', 'tcp', '--listen', '127.0.0.1:0', '--target', `127.0.0.1:${echo.port}`, '--delay', '5', '--control', '127.0.0.1:0']);
    const port = portOf(p.lines, new RegExp(`^relay listening 127\\.0\\.0\\.1:(\\d+) -> 127\\.0\\.0\\.1:${echo.port}$`));
    const ctl = portOf(p.lines, /^relay control 127\.0\.0\.1:(\d+)$/);

    const c = await connectClient(port);
    cleanups.push(async () => {
      c.socket.destroy();
    });
    c.socket.write('hello');
    await waitFor(() => receivedBytes(c) === 5, 'echo through the relay');
    assert.equal(Buffer.concat(c.received).toString(), 'hello');

    const stats = (await control(ctl, 'stats')).stats as { bytesUp: number; live: number };
    assert.equal(stats.bytesUp, 5);
    assert.equal(stats.live, 1);
    const set = await control(ctl, 'set up.rateBps 40mbit');
    assert.deepEqual(set.up, { delayMs: 5, jitterMs: 0, rateBps: 5_000_000 });
    assert.equal((await control(ctl, 'set up.lossRate 0.1')).code, 'ERR_CONFIG', 'tcp has no loss');
    assert.equal((await control(ctl, 'bogus')).ok, false);

    assert.deepEqual(await control(ctl, 'cut reset'), { ok: true, cut: 1 });
    await waitFor(() => c.closed, 'client cut');
    assert.equal(c.errorCode, 'ECONNRESET');

    assert.equal(await stop(p), 0, p.stderr());
  });

  it('udp: forwards, blackhole via control, SIGTERM exits 0', async () => {
    const echo = await startUdp({ echo: true });
    cleanups.push(() => echo.close());
    const args = ['--proto', 'udp', '--listen', '127.0.0.1:0', '--target', `127.0.0.1:${echo.port}`, '--loss', '0', '--dup', '0', '--seed', '3'];
    const p = await spawnRelay([...args, '--control', '127.0.0.1:0']);
    const port = portOf(p.lines, /^relay listening 127\.0\.0\.1:(\d+) -> /);
    const ctl = portOf(p.lines, /^relay control 127\.0\.0\.1:(\d+)$/);
    const c = await startUdp();
    cleanups.push(() => c.close());
    await sendUdp(c.socket, seqPacket(1), port);
    await waitFor(() => c.packets.length === 1, 'udp echo through the relay');

    assert.deepEqual(await control(ctl, 'blackhole on'), { ok: true });
    await sendUdp(c.socket, seqPacket(2), port);
    const droppedBlackhole = async (): Promise<number> =>
      ((await control(ctl, 'stats')).stats as { up: { droppedBlackhole: number } }).up.droppedBlackhole;
    // The relay is another process: poll its counters until the packet is accounted for.
    for (const end = Date.now() + 30_000; Date.now() < end && (await droppedBlackhole()) === 0; ) await sleep(10);
    assert.equal(await droppedBlackhole(), 1);
    assert.equal(echo.packets.length, 1, 'nothing crossed the blackhole');
    assert.equal(c.packets.length, 1);
    assert.equal(await stop(p), 0, p.stderr());
  });

  it('bad flags exit 2 with the usage', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/tools/relay-cli.ts', '--proto', 'sctp'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 2);
    assert.match(err, /--proto: expected tcp or udp/);
    assert.match(err, /usage: relay-cli/);
  });

  it('parses flags, rates and addresses', () => {
    const o = parseCliArgs(['--proto', 'udp', '--listen', '[::1]:0', '--target', '127.0.0.1:53', '--rate', '5MB', '--loss', '0.01', '--seed', '9']);
    assert.deepEqual(o, {
      proto: 'udp',
      listen: { host: '::1', port: 0 },
      target: { host: '127.0.0.1', port: 53 },
      impairment: { rateBps: 5_000_000, lossRate: 0.01 },
      seed: 9,
    });
    assert.throws(() => parseCliArgs(['--proto', 'tcp', '--listen', 'x:1', '--target', 'y:2', '--loss', '0.1']), { code: 'ERR_CONFIG' });
    assert.throws(() => parseCliArgs(['--proto', 'tcp', '--listen', 'x:1']), /--target/);
    assert.throws(() => parseCliArgs(['--nope']), { code: 'ERR_CONFIG' });
    assert.equal(parseRate('40mbit', 'r'), 5_000_000);
    assert.equal(parseRate('1MiB', 'r'), 1024 * 1024);
    assert.equal(parseRate('1500', 'r'), 1500);
    assert.throws(() => parseRate('fast', 'r'), { code: 'ERR_CONFIG' });
    assert.deepEqual(parseHostPort('localhost:8080', 'a'), { host: 'localhost', port: 8080 });
    assert.throws(() => parseHostPort('localhost', 'a'), { code: 'ERR_CONFIG' });
    assert.throws(() => parseHostPort('h:70000', 'a'), { code: 'ERR_CONFIG' });
  });
});
