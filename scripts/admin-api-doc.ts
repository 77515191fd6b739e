/**
 * Writes docs/admin-api.json, the admin API's OpenAPI document, from the
 * TypeBox route schemas (src/admin/openapi.ts). Run after changing the API:
 *   node --import tsx scripts/admin-api-doc.ts
 * test/unit/admin/openapi.test.ts fails while the committed file is stale.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminOpenApi } from '../src/admin/openapi.js';

const file = join(import.meta.dirname, '../docs/admin-api.json');
writeFileSync(file, `${JSON.stringify(adminOpenApi(), null, 2)}\n`);
console.log(`wrote ${file}`);
