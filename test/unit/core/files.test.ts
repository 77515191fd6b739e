import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createExclusive, writeAtomic } from '../../../src/core/files.js';
import { writeJsonAtomic } from '../../../src/tun/state-file.js';
import { mountSmallDisk, smallDiskUnavailableReason, type SmallDisk } from '../../helpers/small-disk.js';

const dir = mkdtempSync(join(tmpdir(), 'polytun-files-'));
const disks: SmallDisk[] = [];
after(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const d of disks) d.remove();
});

describe('atomic files', () => {
  it('writeAtomic replaces, createExclusive creates once', async () => {
    const f = join(dir, 'a');
    await writeAtomic(f, 'one');
    await writeAtomic(f, 'two');
    assert.equal(readFileSync(f, 'utf8'), 'two');
    assert.equal(await createExclusive(join(dir, 'b'), 'first'), true);
    assert.equal(await createExclusive(join(dir, 'b'), 'second'), false);
    assert.equal(readFileSync(join(dir, 'b'), 'utf8'), 'first');
    assert.deepEqual(readdirSync(dir).sort(), ['a', 'b'], 'no temporary files left');
  });

  const skip = smallDiskUnavailableReason();
  if (skip) console.log(`# full-disk tests skipped: ${skip}`);
  it('on a full disk: every writer fails with ENOSPC, keeps the old content and leaves no temporary file', { skip }, async () => {
    const disk = mountSmallDisk(128);
    disks.push(disk);
    const kept = join(disk.dir, 'kept');
    const json = join(disk.dir, 'state', 'leases.json');
    await writeAtomic(kept, 'old content');
    await writeJsonAtomic(json, { old: true });
    disk.fill();
    const big = 'x'.repeat(8192); // more than the few bytes a full tmpfs may still take
    await assert.rejects(writeAtomic(kept, big), { code: 'ENOSPC' });
    await assert.rejects(createExclusive(join(disk.dir, 'new'), big), { code: 'ENOSPC' });
    await assert.rejects(writeJsonAtomic(json, { new: big }), { code: 'ENOSPC' });
    assert.equal(readFileSync(kept, 'utf8'), 'old content');
    assert.deepEqual(JSON.parse(readFileSync(json, 'utf8')), { old: true });
    assert.deepEqual(readdirSync(disk.dir).sort(), ['.ballast', 'kept', 'state'], 'no temporary or partial files');
    assert.deepEqual(readdirSync(join(disk.dir, 'state')), ['leases.json']);
    // Space again: the same writes go through.
    disk.free();
    await writeAtomic(kept, big);
    assert.equal(await createExclusive(join(disk.dir, 'new'), big), true);
    await writeJsonAtomic(json, { new: true });
    assert.equal(readFileSync(kept, 'utf8'), big);
    assert.deepEqual(JSON.parse(readFileSync(json, 'utf8')), { new: true });
  });
});
