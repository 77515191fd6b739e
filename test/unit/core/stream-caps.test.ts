import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { NO_CAPABILITIES, capabilitiesOf, declareCapabilities } from '../../../src/core/stream-caps.js';

describe('stream capabilities', () => {
  it('a stream nobody described has none; a declaration is found, and a later one replaces it', () => {
    const s = new PassThrough();
    assert.equal(capabilitiesOf(s), NO_CAPABILITIES);
    assert.deepEqual(Object.keys(NO_CAPABILITIES), []);
    assert.ok(Object.isFrozen(NO_CAPABILITIES));
    const tcp = { buffersFreeOnWriteCallback: true };
    assert.equal(declareCapabilities(s, tcp), s);
    assert.equal(capabilitiesOf(s), tcp);
    const tls = { ...tcp, tlsBinding: () => undefined };
    declareCapabilities(s, tls);
    assert.equal(capabilitiesOf(s), tls);
    assert.equal(capabilitiesOf(new PassThrough()), NO_CAPABILITIES, 'per stream, not per class');
  });
});
