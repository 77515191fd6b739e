/**
 * `polytun demo`: a working tunnel on this machine with nothing to set up.
 * Starts a real `polytun server` and `polytun client` (child processes of
 * this program), a small local web page as the target, and prints the curl
 * line that goes through the tunnel. `--check` does that request itself and
 * exits (0 = the tunnel works).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { PolytunError } from '../core/errors.js';
import { Socks5Reply } from '../client/socks5-codec.js';
import type { CliIo } from './io.js';

class DemoError extends PolytunError {
  constructor(message: string) {
    super('ERR_DEMO', message);
  }
}

const BIN = fileURLToPath(new URL('../../bin/polytun.js', import.meta.url));

async function freePort(preferred: number): Promise<number> {
  for (const port of [preferred, 0]) {
    const srv = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(port, '127.0.0.1', () => resolve());
      });
      const got = (srv.address() as net.AddressInfo).port;
      await new Promise((r) => srv.close(r));
      return got;
    } catch {
      // preferred port taken: ask the kernel for one
    }
  }
  throw new DemoError('no free local port');
}

function startChild(args: string[], io: CliIo, label: string): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = (line: string): void => void io.stderr.write(`[${label}] ${line}\n`);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', prefix);
  return child;
}

/** One HTTP GET through a SOCKS5 proxy, done by hand (no curl needed for --check). */
async function getViaSocks(socksPort: number, port: number): Promise<string> {
  const sock = net.connect(socksPort, '127.0.0.1');
  await once(sock, 'connect');
  sock.write(Buffer.from([5, 1, 0]));
  const reader = sock[Symbol.asyncIterator]();
  let buf = Buffer.alloc(0);
  const need = async (n: number): Promise<void> => {
    while (buf.length < n) {
      const r = (await reader.next()) as IteratorResult<Buffer>;
      if (r.done) throw new DemoError('the SOCKS5 front closed the connection');
      buf = Buffer.concat([buf, r.value]);
    }
  };
  await need(2);
  buf = buf.subarray(2);
  const req = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]);
  sock.write(req);
  await need(10);
  if (buf[1] !== Socks5Reply.succeeded) throw new DemoError(`SOCKS5 reply ${buf[1]} (the server refused the target)`);
  buf = buf.subarray(10);
  sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  for (;;) {
    const r = (await reader.next()) as IteratorResult<Buffer>;
    if (r.done) break;
    buf = Buffer.concat([buf, r.value]);
  }
  return buf.toString();
}

export function registerDemoCommand(program: Command, io: CliIo): void {
  program
    .command('demo')
    .description('run a server, a client and a test page on this machine and print the curl line that goes through the tunnel')
    .option('--socks <port>', 'SOCKS5 port of the demo client (another free port if taken)', '1080')
    .option('--check', 'make one request through the tunnel, print the answer and exit (0 = works)')
    .action(async (opts: { socks: string; check?: boolean }) => {
      const page = http.createServer((_req, res) => {
        res.setHeader('content-type', 'text/plain');
        res.end('hello through polytun\n');
      });
      page.listen(0, '127.0.0.1');
      await once(page, 'listening');
      const pagePort = (page.address() as net.AddressInfo).port;
      // A fresh data dir each run: the server prints a user's link only when it creates the user,
      // so a dir left by an earlier demo would give no link (and nothing of it is worth keeping).
      const dataDir = mkdtempSync(join(tmpdir(), 'polytun-demo-'));
      const children: ChildProcess[] = [];
      const stopAll = async (): Promise<void> => {
        const exits = children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => once(c, 'exit'));
        for (const c of children) c.kill('SIGTERM');
        page.close();
        await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000).unref())]);
        rmSync(dataDir, { recursive: true, force: true });
      };
      try {
        // The demo target is on loopback, which the default policy refuses: allow it explicitly.
        // Port 0: the server holds its port before the SOCKS port is picked, so the two cannot be the same
        // (a port probed free and released could be handed out twice).
        const server = startChild(['server', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dataDir, '--allow', '127.0.0.1'], io, 'server');
        children.push(server);
        const [link] = (await once(createInterface({ input: server.stdout as NodeJS.ReadableStream }), 'line')) as [string];
        if (!link.startsWith('polytun://')) throw new DemoError(`server printed no link (got: ${link})`);
        const socksPort = await freePort(Number(opts.socks));
        const client = startChild(['client', link, '--socks', `127.0.0.1:${socksPort}`, '--no-status'], io, 'client');
        children.push(client);
        // Wait until the SOCKS5 front accepts connections.
        for (let i = 0; ; i++) {
          const ok = await new Promise<boolean>((resolve) => {
            const s = net.connect(socksPort, '127.0.0.1', () => {
              s.destroy();
              resolve(true);
            });
            s.on('error', () => resolve(false));
          });
          if (ok) break;
          if (i > 100 || client.exitCode !== null) throw new DemoError('the demo client did not start (see its log above)');
          await new Promise((r) => setTimeout(r, 100));
        }
        if (opts.check) {
          const answer = await getViaSocks(socksPort, pagePort);
          io.stdout.write(answer.slice(answer.indexOf('\r\n\r\n') + 4));
          if (!answer.includes('hello through polytun')) throw new DemoError('unexpected answer through the tunnel');
          return;
        }
        io.stdout.write(
          [
            '',
            'polytun demo is running: a server and a client on this machine, joined by an encrypted session.',
            `  link:  ${link}`,
            '  try:',
            `    curl --socks5-hostname 127.0.0.1:${socksPort} http://127.0.0.1:${pagePort}/`,
            'Press Ctrl-C to stop.',
            '',
          ].join('\n'),
        );
        await new Promise<void>((resolve) => {
          process.once('SIGINT', () => resolve());
          process.once('SIGTERM', () => resolve());
        });
      } finally {
        await stopAll();
      }
    });
}
