/**
 * A tiny filesystem for full-disk tests: a size-limited tmpfs mounted on a
 * fresh folder (needs root; CI is root). `fill()` takes every free block with
 * a ballast file, so the next write fails with ENOSPC; `free()` gives it back.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallDisk {
  /** The mount point (mode 0700). */
  readonly dir: string;
  /** Fills the disk: the next write of any data fails with ENOSPC. */
  fill(): void;
  /** Removes the ballast. */
  free(): void;
  /** Unmounts and removes the folder. Idempotent. */
  remove(): void;
}

/** Why a small disk cannot be made here, or undefined when it can. */
export function smallDiskUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mounts a small tmpfs)';
  return undefined;
}

/** Mounts a tmpfs of `kib` KiB. @throws when mount fails (check {@link smallDiskUnavailableReason} first) */
export function mountSmallDisk(kib = 256): SmallDisk {
  const dir = mkdtempSync(join(tmpdir(), 'polytun-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k,mode=0700`, 'tmpfs', dir]);
  const ballast = join(dir, '.ballast');
  let mounted = true;
  return {
    dir,
    fill() {
      // One write larger than the disk: the kernel stores what fits, then ENOSPC.
      try {
        writeFileSync(ballast, Buffer.alloc((kib + 64) * 1024));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    },
    free() {
      unlinkSync(ballast);
    },
    remove() {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
