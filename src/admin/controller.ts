/**
 * A controller HTTP server that answers as mos-tls-tunnel's `mtt-mu-server`
 * controller (`-c host:port`) does, byte for byte, so panels written for it
 * drive polytun unchanged. Wire format and decoding: mtt-command.ts.
 *
 * | opt | mtt                                     | here                                                     |
 * |-----|-----------------------------------------|----------------------------------------------------------|
 * | 1   | path → dst; a known path is overwritten | one user per path (token credential, wssPath = path, named `mtt:/path`) |
 * | 2   | delete paths; unknown ones ignored      | delete the users holding these paths; unknown ignored    |
 * | 3   | delete every user                       | delete every user the controller created (`mtt:` names)  |
 * | 9   | ping: current_users                     | the same count: paths added through here since start     |
 *
 * Replies: `{"res":1}`, `{"res":1,"current_users":N}` (ping only, N > 0),
 * `{"res":2,"err_string":"invalid opt"}`, `{"res":2,"err_string":"empty args"}`.
 * No reply body at all (an empty 200), as mtt, for: a method other than
 * POST, a body that does not unmarshal (bad JSON, `"opt":"1"`, `"opt":3.0`),
 * and a body of 2 MiB or more; past the 2 MiB, like Go's net/http, up to
 * 256 KiB more are drained to keep the connection, else it is closed.
 *
 * Restarts: mtt keeps its users in memory, and its README tells panels that
 * a ping answering 0 means "restarted, push your users again". polytun
 * keeps the users in its store (mtt-clients keep working across a
 * restart), but the ping count is mtt's: the paths this controller was
 * given since the process started, minus those deleted. So a fresh polytun
 * answers 0, the panel pushes its users (the adds overwrite what is
 * stored), and from then on the count matches the panel's. Users an admin
 * made are never counted. A path the panel deleted while polytun was down
 * stays in the store until deleted again (through here or the admin API).
 *
 * Commands run one at a time, in arrival order. Changes never cut live
 * connections (mtt semantics). There is no authentication (mtt has none):
 * bind it to loopback.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { nullLogger, type Logger } from '../core/logger.js';
import { boundHttpServer } from '../carriers/preauth.js';
import type { UserStore } from '../store/types.js';
import { addPaths, deletePaths, resetControllerUsers } from './mtt-apply.js';
import { Opt, Res, Undecodable, decodeCommand, encodeResult, type MuResult } from './mtt-command.js';

/** mtt's maxControlBodySize. */
export const MTT_MAX_BODY = 2 * 1024 * 1024;
/** Go net/http's maxPostHandlerReadBytes: what it drains of an unread body to keep the connection. */
export const GO_POST_HANDLER_DRAIN = 256 * 1024;

/** Options of {@link MttController}. */
export interface MttControllerInit {
  readonly store: UserStore;
  /** @default nullLogger */
  readonly logger?: Logger;
  /** A body of this many bytes or more gets no reply. @default MTT_MAX_BODY (2 MiB) */
  readonly maxBodyBytes?: number;
  /** Past the cap, this many more bytes are drained before the connection is closed instead. @default GO_POST_HANDLER_DRAIN (256 KiB) */
  readonly maxDrainBytes?: number;
}

/** What one command produced: a reply, or (mtt's empty 200) none. */
export type Outcome = MuResult | undefined;

/** The controller: `execute` runs one command; `handle` is the node:http listener. */
export class MttController {
  private readonly log: Logger;
  private readonly maxBody: number;
  private readonly maxDrain: number;
  private queue: Promise<unknown> = Promise.resolve();
  private server: Server | undefined;
  /** mtt's own table, path → dst as given: what ping counts. */
  private readonly paths = new Map<string, string>();

  constructor(private readonly init: MttControllerInit) {
    this.log = init.logger ?? nullLogger;
    this.maxBody = init.maxBodyBytes ?? MTT_MAX_BODY;
    this.maxDrain = init.maxDrainBytes ?? GO_POST_HANDLER_DRAIN;
  }

  /**
   * Decodes and runs one command; undefined when mtt would answer nothing.
   * Commands run one at a time, in arrival order, so a reset never
   * interleaves with an add. Never rejects.
   */
  execute(body: string): Promise<Outcome> {
    const run = (): Promise<Outcome> => this.run(body);
    const p = this.queue.then(run, run);
    this.queue = p;
    return p;
  }

  private async run(body: string): Promise<Outcome> {
    let cmd;
    try {
      cmd = decodeCommand(body);
    } catch (err) {
      if (!(err instanceof Undecodable)) throw err;
      this.log.warn({ bytes: body.length, reason: err.message }, 'mtt controller: command body does not unmarshal; no reply (as mtt)');
      return undefined;
    }
    const { opt, args } = cmd;
    if ((opt === Opt.add || opt === Opt.del) && args.length === 0) return { res: Res.err, err_string: 'empty args' };
    if (opt !== Opt.add && opt !== Opt.del && opt !== Opt.reset && opt !== Opt.ping) {
      this.log.warn({ opt }, 'mtt controller: invalid opt');
      return { res: Res.err, err_string: 'invalid opt' };
    }
    // omitempty: a count of 0 is not on the wire, so it is not in the result either.
    if (opt === Opt.ping) return this.paths.size === 0 ? { res: Res.ok } : { res: Res.ok, current_users: this.paths.size };
    // mtt's table changes first and whatever the store does: the reply and the count are mtt's.
    if (opt === Opt.add) for (const a of args) this.paths.set(a.path, a.dst);
    else if (opt === Opt.del) for (const a of args) this.paths.delete(a.path);
    else this.paths.clear();
    try {
      // Paths are what selects a user: they stay out of the log.
      if (opt === Opt.add) {
        const out = await addPaths(this.init.store, args);
        if (out.badPath + out.badDst > 0) this.log.warn({ entries: args.length, ...out }, 'mtt controller: some paths cannot be served (path not storable, or dst not host:port)');
      } else if (opt === Opt.del) await deletePaths(this.init.store, args);
      else await resetControllerUsers(this.init.store);
      this.log.info({ opt, args: args.length, users: this.paths.size }, 'mtt controller command applied');
      return { res: Res.ok };
    } catch (err) {
      this.log.error({ opt, code: (err as { code?: unknown }).code, message: (err as Error).message }, 'mtt controller command failed in the user store');
      return { res: Res.err, err_string: 'internal error (see the server log)' };
    }
  }

  /** The node:http request listener. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    req.on('error', (err: Error) => this.log.debug({ err: err.message }, 'mtt controller request error'));
    if (req.method !== 'POST') {
      // mtt's handler returns without writing: Go sends an empty 200.
      this.log.warn({ method: req.method }, 'mtt controller: not a POST; no reply (as mtt)');
      req.resume();
      empty(res);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size < this.maxBody) chunks.push(c);
      else if (chunks.length > 0) chunks.length = 0; // no reply coming: stop holding it
      if (size >= this.maxBody + this.maxDrain) {
        // Go gives up draining here: the empty 200 says Connection: close, and the rest is cut.
        done = true;
        this.log.warn({ bytes: size }, 'mtt controller: body of 2 MiB or more; no reply (as mtt), connection closed');
        res.setHeader('connection', 'close');
        empty(res, () => req.socket.destroy());
      }
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      if (size >= this.maxBody) {
        this.log.warn({ bytes: size }, 'mtt controller: body of 2 MiB or more; no reply (as mtt)');
        empty(res);
        return;
      }
      this.execute(Buffer.concat(chunks, size).toString('utf8')).then(
        (r) => (r === undefined ? empty(res) : reply(res, r)),
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
  const body = encodeResult(r);
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
}

/** What Go sends when the handler wrote nothing: 200 with an empty body. */
function empty(res: ServerResponse, then?: () => void): void {
  res.writeHead(200, { 'content-length': 0 }).end(then);
}
