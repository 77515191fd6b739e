/**
 * The admin API reference (docs/admin-api.json, GET /api/openapi.json) is
 * generated from the route schemas: it must match what is committed, and
 * document exactly the routes the API serves.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildAdminApi } from '../../../src/admin/api.js';
import { adminOpenApi } from '../../../src/admin/openapi.js';
import { CreateUserSchema } from '../../../src/admin/api-schemas.js';
import { FakeGateway, tempStore } from './helpers.js';

const TOKEN = 'openapi-test-token-0123456789';
const ROOT = join(import.meta.dirname, '../../..');

describe('admin API OpenAPI document', () => {
  it('docs/admin-api.json is current (else run: node --import tsx scripts/admin-api-doc.ts)', () => {
    const committed = JSON.parse(readFileSync(join(ROOT, 'docs/admin-api.json'), 'utf8')) as unknown;
    assert.deepEqual(committed, adminOpenApi());
  });

  it('documents exactly the routes the API serves, with the schemas it validates with', async (t) => {
    const { store } = await tempStore(t);
    const app = buildAdminApi({ store, gateway: new FakeGateway(), adminToken: TOKEN });
    await app.ready();
    t.after(() => app.close());
    const doc = adminOpenApi() as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).filter((k) => k !== 'parameters').map((m) => ({ method: m.toUpperCase(), url: path.replace(/\{(\w+)\}/g, ':$1') })));
    for (const r of documented) assert.ok(app.hasRoute(r as Parameters<typeof app.hasRoute>[0]), `documented but not served: ${r.method} ${r.url}`);
    // As many routes served as documented: none is missing from the document.
    const served = [...app.printRoutes({ commonPrefix: false }).matchAll(/\(([A-Z, ]+)\)/g)].flatMap((m) => (m[1] ?? '').split(', '));
    assert.equal(served.length, documented.length, app.printRoutes({ commonPrefix: false }));
    const post = doc.paths['/api/users']?.post as { requestBody: { content: { 'application/json': { schema: unknown } } } };
    assert.deepEqual(post.requestBody.content['application/json'].schema, JSON.parse(JSON.stringify(CreateUserSchema)));
    // Served too, behind the admin token.
    const r = await app.inject({ method: 'GET', url: '/api/openapi.json', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.deepEqual([r.statusCode, r.json()], [200, adminOpenApi()]);
  });
});
