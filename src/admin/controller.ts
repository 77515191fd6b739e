/**
 * A controller HTTP server compatible with mos-tls-tunnel's `mtt-mu-server`
 * (its `-c host:port` controller), so existing panels and scripts drive
 * polytun unchanged. Wire format: mtt-command.ts.
 *
 * | opt | mtt                                   | here (users in the store)                               |
 * |-----|---------------------------------------|---------------------------------------------------------|
 * | 1   | path → dst; a known path is overwritten | one user per path (token credential, wssPath = path); a known path gets the new dst |
 * | 2   | delete paths; unknown ones ignored    | delete the users holding these paths; unknown ignored   |
 * | 3   | delete every user                     | `store.resetAll()` (admin-created users included)       |
 * | 9   | ping: current_users                   | `store.count()`                                         |
 *
 * Like mtt, any path is the controller, only POST does anything (other
 * methods get an empty 200), and a body of 2 MiB or more is refused — mtt
 * reads through a 2 MiB LimitReader and gives up when it fills. Where mtt
 * answers a refused, oversized or malformed request with an empty body, this
 * one answers `res: 2` with the reason: a client that parses the reply sees
 * a failure either way. Changes never cut live sessions (mtt semantics).
 * There is no authentication (mtt has none): bind it to loopback.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { nullLogger, type Logger } from '../core/logger.js';
import { boundHttpServer } from '../carriers/preauth.js';
import type { UserStore } from '../store/types.js';
import { applyCommand } from './mtt-apply.js';
import { Opt, Res, decodeCommand, type MuResult } from './mtt-command.js';
import { AdminInputError } from './types.js';

/** mtt's maxControlBodySize. */
export const MTT_MAX_BODY = 2 * 1024 * 1024;

/** Options of {@link MttController}. */
export interface MttControllerInit {
  readonly store: UserStore;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** A body of this many bytes or more is refused. @default MTT_MAX_BODY (2 MiB) */
  readonly maxBodyBytes?: number;
  /** Past this many bytes of one refused body the connection is cut instead of drained. @default 4 × maxBodyBytes */
  readonly maxDrainBytes?: number;
}

/** The controller: `execute` runs one command; `handle` is the node:http listener. */
export class MttController {
  private readonly log: Logger;
  private readonly maxBody: number;
  private readonly maxDrain: number;
  private queue: Promise<unknown> = Promise.resolve();
  private server: Server | undefined;

  constructor(private readonly init: MttControllerInit) {
    this.log = init.logger ?? nullLogger;
    this.maxBody = init.maxBodyBytes ?? MTT_MAX_BODY;
    this.maxDrain = init.maxDrainBytes ?? 4 * this.maxBody;
  }

  /**
   * Decodes and runs one command. Commands run one at a time, in arrival
   * order, so a reset never interleaves with an add. Never rejects.
   */
  execute(body: string): Promise<MuResult> {
    const run = (): Promise<MuResult> => this.run(body);
    const p = this.queue.then(run, run);
    this.queue = p;
    return p;
  }

  private async run(body: string): Promise<MuResult> {
    let opt = 0;
    try {
      const cmd = decodeCommand(body);
      opt = cmd.opt;
      if (cmd.opt === Opt.add || cmd.opt === Opt.del) await applyCommand(this.init.store, cmd.opt, cmd.args);
      else if (cmd.opt === Opt.reset) await this.init.store.resetAll();
      const users = await this.init.store.count();
      // Paths are what selects a user: they stay out of the log.
      if (opt !== Opt.ping) this.log.info({ opt, args: 'args' in cmd ? cmd.args.length : 0, users }, 'mtt controller command applied');
      return { res: Res.ok, err_string: '', current_users: users };
    } catch (err) {
      const known = err instanceof AdminInputError || (err as { code?: unknown }).code === 'ERR_STORE_INVALID' || (err as { code?: unknown }).code === 'ERR_STORE_CONFLICT';
      if (!known) this.log.error({ opt, code: (err as { code?: unknown }).code, message: (err as Error).message }, 'mtt controller command failed');
      return { res: Res.err, err_string: known ? (err as Error).message : 'internal error (see the server log)', current_users: await this.countOrZero() };
    }
  }

  private async countOrZero(): Promise<number> {
    try {
      return await this.init.store.count();
    } catch {
      return 0; // the store is what failed; the reply already says res 2
    }
  }

  /** The node:http request listener. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    req.on('error', (err: Error) => this.log.debug({ err: err.message }, 'mtt controller request error'));
    if (req.method !== 'POST') {
      // mtt's handler returns without writing: Go sends an empty 200.
      req.resume();
      res.writeHead(200, { 'content-length': 0 }).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size < this.maxBody) chunks.push(c);
      else if (chunks.length > 0) chunks.length = 0; // refused: stop holding it, keep draining
      if (size > this.maxDrain) req.destroy(); // a sender that never stops is cut off
    });
    req.on('end', () => {
      if (size >= this.maxBody) {
        this.log.warn({ bytes: size }, 'mtt controller body refused: 2 MiB or more');
        reply(res, { res: Res.err, err_string: 'body is larger than 2m', current_users: 0 });
        return;
      }
      this.execute(Buffer.concat(chunks, size).toString('utf8')).then(
        (r) => reply(res, r),
        (err: unknown) => res.destroy(err as Error), // execute never rejects; this only guards the invariant
      );
    });
  };

  /** Starts listening. Use a loopback `host` unless the network is trusted. */
  async listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    const server = createServer(this.handle);
    boundHttpServer(server, 'mtt controller', this.log);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  /** Stops listening and closes idle connections. Idempotent. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    await this.queue;
  }
}

/** Writes a reply as Go's net/http would: no content type set, so it sniffs text/plain. */
function reply(res: ServerResponse, r: MuResult): void {
  const body = JSON.stringify({ res: r.res, err_string: r.err_string, current_users: r.current_users });
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
}
