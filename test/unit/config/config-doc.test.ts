/**
 * docs/config.md is generated from the config schema (scripts/gen-config-doc.ts):
 * this fails when a key, a description or a default changed and the committed
 * reference was not regenerated.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CONFIG_DOC_PATH, renderConfigDoc } from '../../../scripts/gen-config-doc.js';
import { DEFAULTS } from '../../../src/config/schema.js';

describe('docs/config.md', () => {
  const generated = renderConfigDoc();

  it('is what scripts/gen-config-doc.ts generates from the schema today (run it with node --import tsx to update)', () => {
    assert.equal(readFileSync(CONFIG_DOC_PATH, 'utf8'), generated);
  });

  it('lists every key with the default the validator applies', () => {
    const row = (key: string): string => generated.split('\n').find((l) => l.startsWith(`| \`${key}\` |`)) ?? `no row for ${key}`;
    assert.match(row('limits.graceMs'), new RegExp(`\\| \`${DEFAULTS.limits.graceMs}\` \\|`));
    assert.match(row('socks'), /\| `127\.0\.0\.1:1080` \|/);
    assert.match(row('reverse.ports'), /\| `1024-65535` \|/);
    assert.match(row('listen'), /\| required \|/);
    assert.match(row('vpn.enabled'), /VPN mode on/);
    assert.match(row('gateway.wsTokenPath'), /or `false` \(off\)/);
  });
});
