/**
 * Small JSON state files (VPN leases, the record of system changes) written
 * atomically by core/files.ts: a temporary file beside the target, fsynced,
 * then renamed over it, so a crash or a full disk leaves the old or the new
 * content, never half of one.
 */
import { unlinkSync } from 'node:fs';
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { errnoCode, writeAtomic } from '../core/files.js';

/** Writes `value` as JSON to `file` atomically (mode 0600), creating the folder (0700) if needed. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeAtomic(file, `${JSON.stringify(value, null, 1)}\n`);
}

/** Parses a JSON file; undefined when it does not exist. @throws ConfigError when unreadable or not JSON */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ConfigError(file, 'is not valid JSON (delete it to start afresh)');
  }
}

/** Removes a file; a missing one is fine. */
export async function removeFile(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

/** Synchronous removeFile. */
export function removeFileSync(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
