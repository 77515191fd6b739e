/**
 * The setup wizard's routes (state-changing ones need the CSRF header, like
 * every POST; see guard.ts):
 *
 *   POST /api/wizard/link        { link }   → { summary }   decoded, secrets masked
 *   POST /api/wizard/provision   { url } or { host, port?, user, password, fp?, insecureHttp? }
 *                                           → { file, user, links, summaries, config: { link, backupServers? } }
 *   GET  /api/wizard/interfaces             → { interfaces: [{ name, internal, addresses, mtu?, bindHint? }] }
 *   POST /api/wizard/check       { config } → { ok, items: [{ id, title, result, detail, fix? }] }   (checks.ts)
 *   POST /api/wizard/apply       { config, start? } → { file, started, state?, command }
 *   POST /api/wizard/start       {}       → { file, started: true, state }   (polytun ui: run the config file as it is)
 *   GET  /api/wizard/state                  → { configFile, exists, tunnel? }
 *
 * `config` is the client's YAML config as JSON (link, socks, forwards,
 * paths, …), checked by the real schema: a bad one is 400 `invalid_config`
 * with every issue (`config.socks: …`). apply writes it atomically, mode
 * 600, and starts the tunnel in this process when the host can
 * (`polytun ui`); a running `polytun client` only writes it and answers the
 * command that restarts it.
 */
import { access, readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { parse as parseYaml } from 'yaml';
import { AuthError, ConfigError, PolytunError, toError } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import type { Logger } from '../core/logger.js';
import { CertificateError, DialError } from '../carriers/errors.js';
import { loadConfig } from '../config/load.js';
import { ProvisionError, provisionClient } from '../config/provision-client.js';
import { runChecks, type ChecksInit, type Dialer } from './checks.js';
import type { TunnelStarter } from './types.js';
import { checkClientConfig, linkSummary, listInterfaces, writeClientConfig } from './wizard.js';

/** Options of the wizard's routes. */
export interface WizardInit {
  /** Where apply writes the config. */
  readonly configFile: string;
  /** Where provisioned configs are saved. @default provision-client's default file */
  readonly provisionFile?: (user: string, host: string, port: number) => string;
  /** Handshake deadline of each check, ms. @default 5000 */
  readonly checkTimeoutMs?: number;
  /** @default checks.ts realDialer */
  readonly dial?: Dialer;
  /** @default first-hop.ts firstHop */
  readonly firstHop?: ChecksInit['firstHop'];
  /** Each direction of each endpoint's speed test, ms; 0 = none. @default 2000 */
  readonly speedBudgetMs?: number;
  /** The running tunnel's state, for GET /api/wizard/state on a running client. */
  readonly running?: () => boolean;
}

const LinkSchema = Type.Object({ link: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });
const ProvisionSchema = Type.Union([
  Type.Object({ url: Type.String({ minLength: 1, maxLength: 2048 }) }, { additionalProperties: false }),
  Type.Object(
    {
      host: Type.String({ minLength: 1, maxLength: 255 }),
      port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
      user: Type.String({ minLength: 1, maxLength: 255 }),
      password: Type.String({ minLength: 1, maxLength: 1024 }),
      /** The server certificate's SHA-256 (base64url), for a self-signed server. */
      fp: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      /** Plain http (the password crosses the network in clear). @default false */
      insecureHttp: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
]);
const ConfigBodySchema = Type.Object({ config: Type.Unknown(), start: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
type ConfigBody = Static<typeof ConfigBodySchema>;
type ProvisionBody = Static<typeof ProvisionSchema>;

function provisionUrl(b: ProvisionBody): string {
  if ('url' in b) return b.url;
  const u = new URL(`${b.insecureHttp === true ? 'http' : 'https'}://x`);
  u.hostname = b.host.includes(':') && !b.host.startsWith('[') ? `[${b.host}]` : b.host;
  if (b.port !== undefined) u.port = String(b.port);
  u.username = encodeURIComponent(b.user);
  u.password = encodeURIComponent(b.password);
  if (b.fp !== undefined) u.searchParams.set('fp', b.fp);
  return u.toString();
}

/** A provisioning failure as a reply that says what to fix (never the password). */
function provisionFailure(err: unknown): { status: number; error: string; message: string } {
  if (err instanceof ConfigError) return { status: 400, error: 'invalid', message: `${err.message.replace(/^--provision: /, '')}` };
  if (err instanceof CertificateError) return { status: 502, error: 'provision_failed', message: `${err.message}: the server's certificate is not the one expected; give its SHA-256 in fp (base64url), as in its tls/wss links` };
  if (err instanceof AuthError) return { status: 400, error: 'provision_refused', message: 'the server refused the user name or password: check both (they are the user\'s provisioning password, set by the server\'s admin)' };
  if (err instanceof ProvisionError) return { status: 502, error: 'provision_failed', message: `${err.message}${err.status === 404 ? ' (is provisioning on? the server needs its provisioning API enabled)' : ''}` };
  if (err instanceof DialError) return { status: 502, error: 'unreachable', message: `${err.message}: check the host and port, and that the server's provisioning API listens there` };
  if (err instanceof PolytunError) return { status: 502, error: 'provision_failed', message: err.message };
  return { status: 502, error: 'provision_failed', message: toError(err).message };
}

/** Adds the wizard's routes to `app`. */
export function registerWizardRoutes(app: FastifyInstance, init: WizardInit & { starter?: TunnelStarter; logger: Logger }): void {
  const log = init.logger;
  let checking = false;

  const invalid = (reply: FastifyReply, issues: readonly { where: string; message: string }[]): FastifyReply =>
    reply.code(400).send({ error: 'invalid_config', message: issues.map((i) => `${i.where}: ${i.message}`).join('\n'), issues });

  app.post('/api/wizard/link', { schema: { body: LinkSchema } }, async (req: FastifyRequest<{ Body: Static<typeof LinkSchema> }>, reply) => {
    try {
      return { summary: linkSummary(req.body.link, 'link') };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return reply.code(400).send({ error: 'invalid', field: 'body.link', message: `${err.message} — paste the whole polytun://… link the server printed (polytun link, or the admin page)` });
    }
  });

  app.post('/api/wizard/provision', { schema: { body: ProvisionSchema } }, async (req: FastifyRequest<{ Body: ProvisionBody }>, reply) => {
    let url: string;
    try {
      url = provisionUrl(req.body);
    } catch {
      return reply.code(400).send({ error: 'invalid', field: 'body.host', message: 'not a valid host name or address' });
    }
    try {
      const target = new URL(url);
      const save = init.provisionFile?.(decodeURIComponent(target.username), target.hostname.replace(/^\[|\]$/g, ''), Number(target.port || (target.protocol === 'http:' ? 80 : 443)));
      const r = await provisionClient(url, { ...(save !== undefined ? { save } : {}), logger: log });
      const saved = parseYaml(await readFile(r.file, 'utf8')) as { link: string; backupServers?: string[] };
      const links = [saved.link, ...(saved.backupServers ?? [])];
      return { file: r.file, user: r.user, links, summaries: links.map((l, i) => linkSummary(l, `links[${i}]`)), config: saved };
    } catch (err) {
      const f = provisionFailure(err);
      log.info({ error: f.error, message: f.message }, 'setup wizard: provisioning failed');
      return reply.code(f.status).send({ error: f.error, message: f.message });
    }
  });

  app.get('/api/wizard/interfaces', async () => ({ interfaces: listInterfaces() }));

  app.post('/api/wizard/check', { schema: { body: ConfigBodySchema } }, async (req: FastifyRequest<{ Body: ConfigBody }>, reply) => {
    const r = checkClientConfig(req.body.config);
    if (!r.ok) return invalid(reply, r.issues);
    if (checking) return reply.code(409).send({ error: 'busy', message: 'a check is already running: wait for its result' });
    checking = true;
    try {
      const items = await runChecks(r.config, { ...(init.checkTimeoutMs !== undefined ? { timeoutMs: init.checkTimeoutMs } : {}), ...(init.dial ? { dial: init.dial } : {}), ...(init.firstHop ? { firstHop: init.firstHop } : {}), ...(init.speedBudgetMs !== undefined ? { speedBudgetMs: init.speedBudgetMs } : {}) });
      return { ok: items.every((i) => i.result !== 'fail'), items };
    } finally {
      checking = false;
    }
  });

  app.post('/api/wizard/apply', { schema: { body: ConfigBodySchema } }, async (req: FastifyRequest<{ Body: ConfigBody }>, reply) => {
    const r = checkClientConfig(req.body.config);
    if (!r.ok) return invalid(reply, r.issues);
    const file = init.configFile;
    try {
      await writeClientConfig(file, req.body.config as object);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? toError(err).message;
      return reply.code(500).send({ error: 'write_failed', message: `cannot write ${file}: ${code} — check that its folder is writable by this user` });
    }
    log.info({ file, server: formatHostPort(r.config.link) }, 'setup wizard: config written');
    const command = `polytun client --config ${file}`;
    if (init.starter === undefined || req.body.start === false) {
      return { file, started: false, command, message: init.starter === undefined ? `written; restart the client to use it: ${command}` : `written; start it with: ${command}` };
    }
    await init.starter.start(r.config, file);
    return { file, started: true, state: init.starter.state(), command };
  });

  app.post('/api/wizard/start', async (_req, reply) => {
    const starter = init.starter;
    if (starter === undefined) return reply.code(404).send({ error: 'not_found', message: 'this client already runs its config: restart it to start another' });
    let config: Awaited<ReturnType<typeof loadConfig<'client'>>>;
    try {
      config = await loadConfig(init.configFile, 'client');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return reply.code(400).send({ error: 'invalid_config', message: `${err.message} — fix the file, or write a new one with POST /api/wizard/apply` });
    }
    await starter.start(config, init.configFile);
    return { file: init.configFile, started: true, state: starter.state() };
  });

  app.get('/api/wizard/state', async () => {
    const exists = await access(init.configFile).then(() => true, () => false);
    const tunnel = init.starter?.state() ?? (init.running?.() === true ? { state: 'running' as const } : { state: 'none' as const });
    return { configFile: init.configFile, exists, tunnel };
  });
}
