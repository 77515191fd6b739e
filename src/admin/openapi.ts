/**
 * The admin API's OpenAPI 3.1 document, built from the same TypeBox schemas
 * the routes validate with (TypeBox schemas are JSON Schema), so the
 * reference cannot drift from what the server accepts. Served at
 * `GET /api/openapi.json` and committed as docs/admin-api.json
 * (`node --import tsx scripts/admin-api-doc.ts` rewrites it; a unit test
 * fails when it is stale, or when a route is missing from it).
 */
import { LoginSchema } from './web-auth.js';
import { CreateUserSchema, DeleteQuerySchema, HistoryQuerySchema, ListQuerySchema, PatchUserSchema, PolicySchema, SessionsQuerySchema } from './api-schemas.js';

type Json = Record<string, unknown>;

/** A TypeBox schema as plain JSON Schema (TypeBox's own symbol keys and `[Kind]` markers are not enumerable JSON). */
function plain(schema: unknown): Json {
  return JSON.parse(JSON.stringify(schema)) as Json;
}

/** Query parameters from a TypeBox object schema. */
function queryParams(schema: unknown): Json[] {
  const s = plain(schema) as { properties: Record<string, Json>; required?: string[] };
  return Object.entries(s.properties).map(([name, p]) => ({ name, in: 'query', required: s.required?.includes(name) ?? false, schema: p }));
}

const idParam = { name: 'id', in: 'path', required: true, description: 'user id, or user name', schema: { type: 'string' } };
const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json, description: string): Json => ({ description, content: { 'application/json': { schema } } });
const errors: Json = {
  400: { $ref: '#/components/responses/BadRequest' },
  401: { $ref: '#/components/responses/Unauthorized' },
};
const notFound: Json = { 404: { $ref: '#/components/responses/NotFound' } };
const forbidden: Json = { description: 'a cookie request without the CSRF header, or from another origin', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
/** Errors of a route that changes something: a cookie request may also be refused for CSRF. */
const changeErrors: Json = { ...errors, 403: forbidden };
const nullable = (type: string): Json => ({ type: [type, 'null'] });

const links = { type: 'array', items: { type: 'string', description: 'polytun:// link' } };
const secretReply = {
  secret: { ...nullable('string'), description: 'the private key or token, shown in this reply only; null when only the public key is stored' },
  links: { ...links, description: "one link per endpoint the user can use (a key user without a wssPath has no ws/wss link); empty without a secret" },
  linksError: { type: 'string', description: 'present when the links could not be built (the change itself was made)' },
};

/** A traffic history reply (404 when the server keeps no history). */
const history = (extra: Record<string, Json>): Json => ({
  type: 'object',
  properties: {
    ...extra,
    from: { type: 'integer' },
    to: { type: 'integer' },
    resolution: { enum: [60, 3600], description: 'bucket width, seconds' },
    points: {
      type: 'array',
      items: { type: 'object', properties: { at: { type: 'integer', description: 'bucket start, ms since the epoch' }, up: { type: 'integer' }, down: { type: 'integer' } }, required: ['at', 'up', 'down'] },
    },
  },
  required: ['from', 'to', 'resolution', 'points'],
});

/** The OpenAPI document of the admin API. */
export function adminOpenApi(): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'polytun admin API',
      // The API's version, not the package's: it changes when the API does.
      version: '1',
      description:
        'JSON over HTTP(S) on the --admin listener. Every route needs `Authorization: Bearer <admin token>` (DATA_DIR/admin.token). ' +
        'Changes go through the user store and take effect on the running gateway at once. Errors are `{ error, message, field? }`. ' +
        'The web dashboard at `/` logs in with the same token (POST /api/login) and then uses a session cookie; a cookie request that changes anything ' +
        '(POST, PATCH, DELETE) must also carry `X-Polytun-CSRF: <csrf from the login>` (403 otherwise).',
    },
    security: [{ bearer: [] }, { cookie: [] }],
    paths: {
      '/api/users': {
        post: {
          summary: 'Create a user',
          requestBody: { required: true, content: { 'application/json': { schema: plain(CreateUserSchema) } } },
          responses: {
            201: json({ type: 'object', properties: { user: ref('User'), ...secretReply }, required: ['user', 'secret', 'links'] }, 'created; the secret and links are in this reply only'),
            409: { $ref: '#/components/responses/Conflict' },
            ...changeErrors,
          },
        },
        get: {
          summary: 'List users (no secrets)',
          parameters: queryParams(ListQuerySchema),
          responses: {
            200: json({ type: 'object', properties: { users: { type: 'array', items: ref('User') }, total: { type: 'integer' }, next: { ...nullable('string'), description: "the `after` of the next page; null on the last" } } }, 'a page of users'),
            ...errors,
          },
        },
      },
      '/api/users/{id}': {
        parameters: [idParam],
        get: { summary: 'One user (no secret)', responses: { 200: json(ref('User'), 'the user'), ...errors, ...notFound } },
        patch: {
          summary: 'Change a user (only the fields given)',
          requestBody: { required: true, content: { 'application/json': { schema: plain(PatchUserSchema) } } },
          responses: { 200: json({ type: 'object', properties: { user: ref('User'), ...secretReply }, required: ['user'] }, 'changed; secret and links only after rekey or token'), 409: { $ref: '#/components/responses/Conflict' }, ...changeErrors, ...notFound },
        },
        delete: {
          summary: 'Delete a user; its live sessions are closed too unless kick=false',
          parameters: queryParams(DeleteQuerySchema),
          responses: {
            200: json(
              {
                type: 'object',
                properties: {
                  deleted: { const: true },
                  id: { type: 'string' },
                  kicked: { type: 'integer', description: 'live sessions closed' },
                  liveSessions: { type: 'integer', description: 'live sessions left running (kick=false): they go on until they end' },
                },
                required: ['deleted', 'id', 'kicked', 'liveSessions'],
              },
              'deleted',
            ),
            ...changeErrors,
            ...notFound,
          },
        },
      },
      '/api/users/{id}/kick': {
        parameters: [idParam],
        post: { summary: "Close the user's live sessions", responses: { 200: json({ type: 'object', properties: { id: { type: 'string' }, kicked: { type: 'integer' } } }, 'how many were closed'), ...changeErrors, ...notFound } },
      },
      '/api/users/{id}/traffic': {
        parameters: [idParam],
        get: {
          summary: "The user's traffic against its quota",
          responses: {
            200: json(
              {
                type: 'object',
                properties: {
                  id: { type: 'string' },
                  name: { type: 'string' },
                  bytesUp: { type: 'integer' },
                  bytesDown: { type: 'integer' },
                  totalBytes: { type: 'integer' },
                  quotaBytes: nullable('integer'),
                  remainingBytes: nullable('integer'),
                  live: { type: 'object', properties: { sessions: { type: 'integer' }, bytesSent: { type: 'integer' }, bytesReceived: { type: 'integer' } } },
                },
              },
              'stored counters (flushed every gateway.trafficFlushMs) and the live sessions',
            ),
            ...errors,
            ...notFound,
          },
        },
      },
      '/api/users/{id}/traffic/history': {
        parameters: [idParam],
        get: {
          summary: "The user's traffic over time, summed over every server sharing the store",
          parameters: queryParams(HistoryQuerySchema),
          responses: { 200: json(history({ id: { type: 'string' } }), 'the points; buckets without traffic are absent'), ...errors, ...notFound },
        },
      },
      '/api/traffic/history': {
        get: {
          summary: "Every user's traffic over time, summed: the fleet's on a shared PostgreSQL",
          parameters: queryParams(HistoryQuerySchema),
          responses: { 200: json(history({}), 'the points; buckets without traffic are absent'), ...errors, ...notFound },
        },
      },
      '/api/users/{id}/links': {
        parameters: [idParam],
        get: { summary: "The user's links (secrets!)", responses: { 200: json({ type: 'object', properties: { id: { type: 'string' }, kind: { enum: ['key', 'token'] }, hasSecret: { type: 'boolean' }, links } }, 'the links'), ...errors, ...notFound } },
      },
      '/api/sessions': {
        get: { summary: 'Live sessions', parameters: queryParams(SessionsQuerySchema), responses: { 200: json({ type: 'object', properties: { sessions: { type: 'array', items: ref('Session') } } }, 'the sessions'), ...errors, ...notFound } },
      },
      '/api/sessions/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, description: 'session id (hex)', schema: { type: 'string' } }],
        delete: { summary: 'Close one session', responses: { 200: json({ type: 'object', properties: { kicked: { const: true }, id: { type: 'string' } } }, 'closed'), ...changeErrors, ...notFound } },
      },
      '/api/status': {
        get: {
          summary: 'The gateway',
          responses: {
            200: json(
              {
                type: 'object',
                properties: {
                  version: { type: 'string' },
                  startedAt: { type: 'integer' },
                  draining: { type: 'boolean' },
                  sessions: { type: 'integer' },
                  users: { type: 'integer' },
                  store: { enum: ['sqlite', 'postgres'] },
                  listeners: { type: 'array', items: { type: 'object', properties: { carrier: { enum: ['tcp', 'tls', 'ws', 'wss'] }, address: { type: 'string' }, port: { type: 'integer' } } } },
                  counters: { type: 'object', additionalProperties: { type: 'integer' } },
                },
              },
              'status',
            ),
            ...errors,
          },
        },
      },
      '/api/login': {
        post: {
          summary: 'Dashboard login: trades the admin token for a session cookie (5 wrong tokens per client address, then 5 a minute)',
          security: [],
          requestBody: { required: true, content: { 'application/json': { schema: plain(LoginSchema) } } },
          responses: {
            200: json({ type: 'object', properties: { csrf: { type: 'string', description: 'what X-Polytun-CSRF must carry' } }, required: ['csrf'] }, 'logged in; Set-Cookie: polytun_admin (HttpOnly, SameSite=Strict, Secure on https)'),
            400: { $ref: '#/components/responses/BadRequest' },
            401: json(ref('Error'), 'wrong admin token'),
            403: json(ref('Error'), 'cross-origin request'),
            429: json(ref('Error'), 'too many wrong tokens from this address; Retry-After says when to try again'),
          },
        },
      },
      '/api/logout': {
        post: { summary: 'Dashboard logout: ends the cookie session', responses: { 200: json({ type: 'object', properties: { loggedOut: { type: 'boolean', description: 'false for a bearer request (no session to end)' } } }, 'cookie cleared'), ...errors, 403: forbidden } },
      },
      '/api/session': {
        get: {
          summary: "How this request is authenticated, and the cookie session's CSRF token (the page after a reload)",
          security: [],
          responses: { 200: json({ type: 'object', properties: { via: { enum: ['bearer', 'cookie', null], description: 'null: not logged in' }, csrf: nullable('string') } }, 'the session') },
        },
      },
      '/api/events': {
        get: {
          summary: 'The live overview: Server-Sent Events, one snapshot a second (at most 16 streams open)',
          responses: {
            200: { description: 'text/event-stream; each `data:` line is a LiveSnapshot', content: { 'text/event-stream': { schema: ref('LiveSnapshot') } } },
            ...errors,
            503: json(ref('Error'), 'too many streams open'),
          },
        },
      },
      '/': { get: { summary: 'The web dashboard (HTML; 503 when not built)', security: [], responses: { 200: { description: 'the page', content: { 'text/html': {} } } } } },
      '/assets/{file}': {
        parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
        get: { summary: "The web dashboard's scripts, styles and images", security: [], responses: { 200: { description: 'the file' }, ...notFound } },
      },
      '/api/openapi.json': { get: { summary: 'This document', responses: { 200: json({ type: 'object' }, 'OpenAPI 3.1'), ...errors } } },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'the admin token (DATA_DIR/admin.token)' },
        cookie: { type: 'apiKey', in: 'cookie', name: 'polytun_admin', description: 'the web dashboard session (POST /api/login); changes also need X-Polytun-CSRF' },
      },
      schemas: {
        User: {
          type: 'object',
          description: 'A user as the API shows it: never its secret. Times are ms since the epoch.',
          properties: {
            id: { type: 'string' },
            name: { type: 'string' },
            kind: { enum: ['key', 'token'] },
            publicKey: { type: 'string', description: 'X25519 public key, base64url' },
            wssPath: nullable('string'),
            dst: nullable('string'),
            policy: plain(PolicySchema),
            quotaBytes: nullable('integer'),
            expiresAt: nullable('integer'),
            enabled: { type: 'boolean' },
            mtt: { type: 'boolean', description: 'mtt compatibility mode' },
            udpMaxRate: { ...nullable('integer'), description: "bytes per second: the highest fixed rate this user's udp clients may make the server send at; null: the server's udp.maxRate alone" },
            createdAt: { type: 'integer' },
            updatedAt: { type: 'integer' },
            bytesUp: { type: 'integer' },
            bytesDown: { type: 'integer' },
            provisioning: { type: 'boolean', description: 'has a provisioning password' },
          },
        },
        Session: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            userId: nullable('string'),
            userName: nullable('string'),
            remote: { type: 'string' },
            startedAt: { type: 'integer' },
            state: { type: 'string' },
            streams: { type: 'integer' },
            paths: { type: 'integer' },
            rttMs: nullable('number'),
            bytesSent: { type: 'integer' },
            bytesReceived: { type: 'integer' },
            carrier: { type: 'string', description: "the first path's carrier" },
            pathList: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  carrier: { type: 'string' },
                  remote: { type: 'string' },
                  role: { type: 'string' },
                  state: { type: 'string' },
                  rttMs: nullable('number'),
                  rateBytesPerSec: { type: 'number', description: 'estimated delivery rate' },
                  bytesSent: { type: 'integer' },
                  bytesReceived: { type: 'integer' },
                },
              },
            },
          },
        },
        LiveSnapshot: {
          type: 'object',
          description: 'The server’s view: in = from clients, out = to clients. Rates are bytes per second over the last second.',
          properties: {
            at: { type: 'integer' },
            sessions: { type: 'integer' },
            usersOnline: { type: 'integer' },
            rateIn: { type: 'integer' },
            rateOut: { type: 'integer' },
            bytesIn: { type: 'integer', description: 'bytes of the live sessions' },
            bytesOut: { type: 'integer' },
            draining: { type: 'boolean' },
            listeners: {
              type: 'array',
              items: { type: 'object', properties: { carrier: { type: 'string' }, address: { type: 'string' }, port: { type: 'integer' }, paths: { type: 'integer', description: "live paths on this listener's carrier" } } },
            },
            counters: { type: 'object', additionalProperties: { type: 'integer' } },
          },
        },
        Error: { type: 'object', properties: { error: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } }, required: ['error', 'message'] },
      },
      responses: {
        BadRequest: json(ref('Error'), 'invalid input; `field` names it'),
        Unauthorized: json(ref('Error'), 'missing or wrong admin token'),
        NotFound: json(ref('Error'), 'no such user or session'),
        Conflict: json(ref('Error'), 'another user holds this name, key or wssPath; `field` names it'),
      },
    },
  };
}
