/**
 * The dashboard's files (built by vite from web/ into dist/web/admin/),
 * served at `/` and `/assets/<file>` of the admin listener with a strict
 * Content-Security-Policy: no inline script or style, nothing from another
 * origin, no framing.
 *
 *   dist/web/admin/
 *   ├─ index.html          GET /              Cache-Control: no-store
 *   └─ assets/<name>-<hash>.<ext>  GET /assets/…  immutable (the hash changes with the content)
 *
 * The files are read once when the API is built and kept in memory (with a
 * gzip copy of the text ones): a handful of files, tens of kilobytes.
 * Without a build (running from src/ before `npm run build`) `/` says so.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** The dashboard's Content-Security-Policy. */
export const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Where `npm run build` puts the server's dashboard, next to the compiled admin module. */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../web/admin/', import.meta.url));
/** Where it puts the client's dashboard and setup wizard (served by src/ui/server.ts). */
export const CLIENT_WEB_ROOT = fileURLToPath(new URL('../web/client/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.svg', '.json']);

interface WebFile {
  readonly body: Buffer;
  readonly gzip: Buffer | undefined;
  readonly type: string;
}

function load(file: string): WebFile {
  const ext = extname(file);
  const body = readFileSync(file);
  return { body, gzip: COMPRESSIBLE.has(ext) && body.length > 512 ? gzipSync(body) : undefined, type: TYPES[ext] ?? 'application/octet-stream' };
}

/** The headers every dashboard page and asset carries. */
export function pageHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cross-origin-resource-policy', 'same-origin');
}

function send(req: FastifyRequest, reply: FastifyReply, f: WebFile): FastifyReply {
  reply.header('content-type', f.type).header('vary', 'accept-encoding');
  const gz = f.gzip !== undefined && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  if (gz) reply.header('content-encoding', 'gzip');
  return reply.send(gz ? f.gzip : f.body);
}

/** Registers `GET /` and `GET /assets/:file` (both public: the page itself holds no secret). */
export function useWebPages(app: FastifyInstance, webRoot: string = DEFAULT_WEB_ROOT): void {
  const indexFile = join(webRoot, 'index.html');
  const index = existsSync(indexFile) ? load(indexFile) : undefined;
  const assets = new Map<string, WebFile>();
  const dir = join(webRoot, 'assets');
  if (existsSync(dir)) for (const name of readdirSync(dir)) assets.set(name, load(join(dir, name)));

  app.get('/', async (req, reply) => {
    pageHeaders(reply).header('cache-control', 'no-store');
    if (index === undefined) return reply.code(503).type('text/plain; charset=utf-8').send('the web dashboard is not built (npm run build)\n');
    return send(req, reply, index);
  });

  app.get('/assets/:file', async (req: FastifyRequest<{ Params: { file: string } }>, reply) => {
    pageHeaders(reply);
    const f = assets.get(req.params.file);
    if (f === undefined) return reply.code(404).send({ error: 'not_found', message: 'no such file' });
    reply.header('cache-control', 'public, max-age=31536000, immutable');
    return send(req, reply, f);
  });
}
