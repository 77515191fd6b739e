/**
 * Small file helpers for secrets and state kept on disk: every write goes to
 * a fsynced temporary file (mode 0600) first, then is renamed or hard-linked
 * into place and the directory is fsynced, so a crash never leaves a
 * half-written file.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from './errors.js';

/** The errno code of a Node fs error (`ENOENT`, …), if any. */
export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** The file's text, or undefined when it does not exist; other failures are ConfigErrors naming the file. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
  }
}

/** fsync a directory so a rename or link in it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // Some filesystems cannot fsync a directory; the rename is still atomic there.
    if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'EPERM') throw err;
  } finally {
    await fh.close();
  }
}

/**
 * Writes `data` to a new temporary file beside `file` (mode 0600, fsynced)
 * and returns its path. A failed write (a full disk, an I/O error) removes
 * the partial file before it rethrows.
 */
async function writeTemp(file: string, data: string): Promise<string> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  return tmp;
}

/** Replaces `file` atomically with `data` (mode 0600). */
export async function writeAtomic(file: string, data: string): Promise<void> {
  const tmp = await writeTemp(file, data);
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp);
    throw err;
  }
  await syncDir(dirname(file));
}

/**
 * Creates `file` with `data` (mode 0600) atomically and only if it does not
 * exist; returns false if it already did. A complete temporary file is
 * hard-linked into place, so two processes starting at once agree on one.
 */
export async function createExclusive(file: string, data: string): Promise<boolean> {
  const tmp = await writeTemp(file, data);
  try {
    await link(tmp, file);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp);
  }
  await syncDir(dirname(file));
  return true;
}
