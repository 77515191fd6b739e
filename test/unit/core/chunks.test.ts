import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ChunkList } from '../../../src/core/chunks.js';

describe('ChunkList', () => {
  it('read, readSegments, contiguous and skip agree with one concatenated buffer', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }), fc.array(fc.tuple(fc.nat(3), fc.nat(60)), { maxLength: 12 }), (chunks, ops) => {
        const list = new ChunkList();
        const pushed = chunks.map((c) => Buffer.from(c));
        for (const c of pushed) list.push(c);
        let model = Buffer.concat(chunks.map((c) => Buffer.from(c)));
        for (const [op, rawN] of ops) {
          const n = Math.min(rawN, model.length);
          if (op === 0) assert.deepEqual(list.read(n), model.subarray(0, n));
          else if (op === 1) {
            const segs = list.readSegments(n);
            assert.deepEqual(Buffer.concat(segs), model.subarray(0, n));
            assert.ok(segs.every((s) => s.length > 0));
          } else if (op === 2) {
            const c = list.contiguous(n);
            // contiguous ⇒ read returns a view into a pushed chunk (no copy)
            const got = list.read(n);
            assert.deepEqual(got, model.subarray(0, n));
            if (c && n > 0) assert.ok(pushed.some((ch) => ch.buffer === got.buffer), 'contiguous read must be a view');
          } else list.skip(n);
          model = model.subarray(n);
          assert.equal(list.length, model.length);
        }
      }),
    );
  });
});
