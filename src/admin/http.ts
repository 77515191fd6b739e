/**
 * What the fastify-based APIs (admin, provisioning) share: TypeBox schemas
 * checked by TypeBox's own compiler, and one mapping from errors to replies.
 *
 * TypeBox rather than fastify's default Ajv setup because Ajv there removes
 * unknown properties silently and coerces body types ("5" → 5): a typo in
 * `quotaBytes` must be a 400 naming the field, not a quietly ignored change.
 * Query strings are still converted (they are text by nature).
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { ClosedError, ConfigError, PolytunError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { StoreError } from '../store/types.js';
import { AdminInputError } from './types.js';

/** Installs the TypeBox validator on `app`: failures become {@link AdminInputError} naming the field. */
export function useTypeBox(app: FastifyInstance): void {
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const checker = TypeCompiler.Compile(schema as TSchema);
    const part = httpPart ?? 'input';
    return (data: unknown) => {
      const value = part === 'body' ? data : Value.Convert(schema as TSchema, data);
      if (checker.Check(value)) return { value };
      const first = checker.Errors(value).First();
      const field = `${part}${(first?.path ?? '').replace(/\//g, '.')}`;
      return { error: new AdminInputError(field, (first?.message ?? 'invalid').toLowerCase()) };
    };
  });
}

/** A reply the error mapper decided on. */
export interface ErrorReply {
  readonly status: number;
  /** Stable short code: invalid, unauthorized, not_found, conflict, too_large, … */
  readonly error: string;
  readonly message: string;
  readonly field?: string;
}

const STORE_STATUS: Record<StoreError['code'], [number, string]> = {
  ERR_STORE_INVALID: [400, 'invalid'],
  ERR_STORE_CONFLICT: [409, 'conflict'],
  ERR_STORE_NOT_FOUND: [404, 'not_found'],
  ERR_STORE_BACKEND: [503, 'unavailable'],
};

/** Maps any error thrown in a handler (or by fastify before it) to a reply. Unknown errors are 500 with no detail. */
export function errorReply(err: unknown): ErrorReply {
  if (err instanceof AdminInputError) return { status: 400, error: 'invalid', message: err.message, field: err.field };
  if (err instanceof StoreError) {
    const [status, error] = STORE_STATUS[err.code];
    // Backend messages stay in the log (they may name hosts or SQL), except the read-only reason, which is the admin's to act on.
    const readOnly = err.message.startsWith('the user store is read-only: ');
    const base = { status, error, message: status !== 503 || readOnly ? err.message : 'the user store is unavailable' };
    return err.field === undefined ? base : { ...base, field: err.field };
  }
  if (err instanceof ClosedError) return { status: 503, error: 'unavailable', message: 'shutting down' };
  if (err instanceof ConfigError) {
    // A request field that failed a config-layer check (a key) is the client's fault; anything else
    // (a link that cannot be built from the gateway's endpoints) is the server's, and says why.
    if (err.where.startsWith('body.')) return { status: 400, error: 'invalid', message: err.message, field: err.where };
    return { status: 500, error: 'misconfigured', message: err.message };
  }
  const fe = err as Partial<FastifyError>;
  if (!(err instanceof PolytunError) && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, error: 'too_large', message: 'request body is too large' };
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return { status: 415, error: 'unsupported_media_type', message: 'send application/json' };
    if (fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return { status: 400, error: 'invalid', message: 'body: empty JSON body', field: 'body' };
    if (fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) return { status: 400, error: 'invalid', message: 'body: not valid JSON', field: 'body' };
    return { status: fe.statusCode, error: 'bad_request', message: fe.message ?? 'bad request' };
  }
  return { status: 500, error: 'internal', message: 'internal error' };
}

/**
 * Installs the error handler: every error goes through {@link errorReply};
 * 5xx are logged (message and code only: requests may carry secrets).
 * `shape` turns the mapped error into the body this API speaks.
 */
export function useErrorReplies(app: FastifyInstance, log: Logger, shape: (e: ErrorReply) => object = defaultShape): void {
  app.setErrorHandler((err: unknown, req, reply: FastifyReply) => {
    const e = errorReply(err);
    if (e.status >= 500) {
      const x = err as { code?: unknown; message?: unknown };
      log.error({ method: req.method, route: req.routeOptions.url, code: x.code, message: x.message }, 'management API request failed');
    }
    return reply.code(e.status).send(shape(e));
  });
}

/** `{ error, message, field? }` */
export function defaultShape(e: ErrorReply): object {
  return e.field === undefined ? { error: e.error, message: e.message } : { error: e.error, message: e.message, field: e.field };
}
